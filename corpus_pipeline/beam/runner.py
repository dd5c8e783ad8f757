"""Running a verb's Beam pipeline: runner choice, progress and the counter summary.

Local default: FnApiRunner with ``direct_running_mode=multi_processing`` and one worker per
core. DirectRunner would first try to download Prism (no network here) and
``multi_threading`` loses records (README, "Commands"), so neither is used unless the
user asks for it explicitly. Any Beam flag (``--runner``, ``--project``, ...) passes through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from tqdm import tqdm

from corpus_pipeline.beam.worker import LOG_ENV
from corpus_pipeline.errors import UserError

NAMESPACE = "corpus_pipeline"


def _has_flag(args: Sequence[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in args)


#: Runners whose workers run on this machine, in processes started by the launcher.
_LOCAL_RUNNERS = ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def is_local_runner(beam_args: Sequence[str] = ()) -> bool:
    """True when the workers share this machine's file system and temp folder.

    That is our default (no ``--runner``: FnApiRunner's local worker processes), Beam's direct
    runners, and any runner with ``--environment_type LOOPBACK`` (workers in the launcher).
    Anything else (Dataflow, Flink, Spark, Dask, a portable runner with an EXTERNAL or DOCKER
    environment) may run its workers elsewhere: nothing launcher-local (a temp file, a path in
    this checkout or its site-packages) may be sent to them.
    """
    if not _has_flag(beam_args, "--runner"):
        return True
    opts = PipelineOptions(list(beam_args))
    runner = opts.view_as(StandardOptions).runner or ""
    if runner.rsplit(".", 1)[-1] in _LOCAL_RUNNERS:
        return True
    return (opts.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"


def _flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` (the last one given), else None."""
    value = None
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            value = a[len(name) + 1 :]
        elif a == name and i + 1 < len(args):
            value = args[i + 1]
    return value


def _is_loopback(address: str) -> bool:
    """True when ``address`` (``tcp://host:port``, ``host:port``, ``embed``) is this machine."""
    if address == "embed":
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname())


def remote_workers(beam_args: Sequence[str] = ()) -> str | None:
    """Why the runner's workers cannot see this machine's files, or None when they can.

    They can under a local runner (:func:`is_local_runner`), DaskRunner on this machine (no
    ``--dask_client_address``: Beam starts a LocalCluster; or a loopback address), and a
    portable runner whose job service is in this process or on this machine and starts its
    workers as local processes (``--environment_type PROCESS``). Anything else (Dataflow,
    Flink, Spark, a DOCKER or EXTERNAL environment, a remote Dask scheduler) may run its
    workers on machines that share only the object store with the launcher.

    Returns:
        The runner as the user named it (``DataflowRunner``, ``PortableRunner
        --environment_type EXTERNAL``, ``DaskRunner --dask_client_address ...``), or None.
    """
    if is_local_runner(beam_args):
        return None
    runner = (_flag_value(beam_args, "--runner") or "").rsplit(".", 1)[-1]
    if runner == "DaskRunner":
        address = _flag_value(beam_args, "--dask_client_address")
        if _flag_value(beam_args, "--dask_scheduler_file") is None and (
            address is None or _is_loopback(address)
        ):
            return None
        return f"--runner DaskRunner --dask_client_address {address or '(scheduler file)'}"
    env = (_flag_value(beam_args, "--environment_type") or "DOCKER").upper()
    endpoint = _flag_value(beam_args, "--job_endpoint")
    if runner == "PortableRunner" and env == "PROCESS" and _is_loopback(endpoint or "embed"):
        return None
    if runner in ("PortableRunner", "FlinkRunner", "SparkRunner"):
        return f"--runner {runner} --environment_type {env}"
    return f"--runner {runner}"


def is_dask_runner(beam_args: Sequence[str] = ()) -> bool:
    """True when ``--runner`` names Beam's DaskRunner."""
    if not _has_flag(beam_args, "--runner"):
        return False
    runner = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner or ""
    return runner.rsplit(".", 1)[-1] == "DaskRunner"


def make_options(workers: int, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """PipelineOptions from pass-through Beam flags, with our local defaults filled in."""
    args = list(beam_args)
    opts = PipelineOptions(args)
    if not _has_flag(args, "--runner"):
        direct = opts.view_as(DirectOptions)
        if not _has_flag(args, "--direct_running_mode"):
            direct.direct_running_mode = "multi_processing"
        if not _has_flag(args, "--direct_num_workers"):
            direct.direct_num_workers = workers
    if not _has_flag(args, "--default_sdk_harness_log_level"):
        # Worker processes log every bundle at INFO; our summary says what matters.
        opts.view_as(WorkerOptions).default_sdk_harness_log_level = "WARNING"
    return opts


_BEAM_WORKER = "-m apache_beam.runners.worker.sdk_worker_main"
_OUR_WORKER = "-m corpus_pipeline.beam.worker"


def _quiet_workers(proto: Any) -> None:
    """Point the pipeline's subprocess environments at :mod:`corpus_pipeline.beam.worker`."""
    from apache_beam.portability import python_urns

    for env in proto.components.environments.values():
        if env.urn != python_urns.SUBPROCESS_SDK:
            continue
        command = env.payload.decode("utf-8")
        if command.endswith(_BEAM_WORKER):
            # exec: the worker replaces the shell Beam starts it with, so a killed worker
            # is not also reported by the shell ("Killed") on the terminal.
            python = command[: -len(_BEAM_WORKER)]
            env.payload = f"exec {python}{_OUR_WORKER}".encode()


def make_runner(beam_args: Sequence[str] = (), options: PipelineOptions | None = None) -> Any:
    """The runner: FnApiRunner unless ``--runner`` names another.

    Its ``multi_processing`` workers run Beam's SDK harness through
    :mod:`corpus_pipeline.beam.worker`, which keeps their INFO logging off the terminal.
    """
    if _has_flag(beam_args, "--runner"):
        if is_dask_runner(beam_args):
            # Beam knows it only by its full name (apache_beam.runners.dask.dask_runner).
            from apache_beam.runners.dask.dask_runner import DaskRunner

            return DaskRunner()
        return None  # PipelineOptions carries the runner name
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    class LocalRunner(FnApiRunner):  # type: ignore[misc]
        def run_via_runner_api(self, pipeline_proto: Any, options: Any) -> Any:
            _quiet_workers(pipeline_proto)
            return super().run_via_runner_api(pipeline_proto, options)

    # Without the options in the provision info, FnApiRunner's worker processes start with
    # empty pipeline options, and their Beam FileSystems miss flags such as --s3_endpoint_url
    # (real runners hand the options to their workers the same way).
    return LocalRunner(provision_info=_provision_info(options))


def _provision_info(options: PipelineOptions | None) -> Any:
    if options is None:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.job import utils as job_utils
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo

    given = options.get_all_options(drop_default=True, retain_unknown_options=True)
    # Encoded as Beam's portable runner encodes them: ints as strings (BEAM-5509: a Struct
    # holds numbers as doubles, and a worker's flag parser refuses "2.0" for an int flag).
    struct = job_utils.dict_to_struct(
        {
            f"beam:option:{k}:v1": str(v) if type(v) is int else v
            for k, v in given.items()
            if isinstance(v, (str, int, float, bool, list))
        }
    )
    return ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(
            retrieval_token="unused-retrieval-token", pipeline_options=struct
        )
    )


#: False while :func:`run_pipeline` builds and runs a pipeline for a non-local runner.
_LOCAL_RUN = True


class Progress:
    """Cross-process progress: workers append ticks to a file, the launcher shows a tqdm bar.

    Works for local runners (workers share the file system). The file is a launcher temp
    path, so it is never sent to other runners' workers: while :func:`run_pipeline` builds
    and runs a pipeline for a non-local runner (:func:`is_local_runner`), a Progress pickles
    as ``Progress(None)``, whose ``tick`` is a no-op (use the runner's own UI there).

    ``scale`` weighs this view's ticks: the steps of one bar tick in their own units (bytes
    read, files encoded, shards written) and :meth:`scaled` turns each into its share of the
    bar's total, so the bar ends at its total whatever the step sizes.
    """

    def __init__(self, path: str | None, scale: float = 1.0) -> None:
        self.path = path
        self.scale = scale

    def __reduce__(self) -> tuple[Any, ...]:
        return (Progress, (self.path if _LOCAL_RUN else None, self.scale))

    def scaled(self, factor: float) -> Progress:
        """The same bar, each tick of the returned view worth ``factor`` of this one's."""
        return Progress(self.path, self.scale * factor)

    def tick(self, n: float = 1) -> None:
        """Record ``n`` finished work units (one short append; atomic for small writes)."""
        if not n or not self.path or not os.path.isdir(os.path.dirname(self.path)):
            return
        with contextlib.suppress(OSError), open(self.path, "a", encoding="ascii") as f:
            f.write(f"{n * self.scale!r}\n")


#: tqdm's line for a bar in percent of the planned work (``progress_bar(percent=True)``).
_PERCENT_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


@contextlib.contextmanager
def progress_bar(
    total: float | None, desc: str, unit: str = "unit", *, percent: bool = False
) -> Iterator[Progress]:
    """Show a tqdm bar fed by ``Progress.tick`` calls from any local worker process.

    Args:
        total: What the ticks add up to when the work is done (its ETA comes from it).
        desc: The bar's name (the verb).
        unit: What a tick counts; ``"B"`` shows bytes with binary prefixes.
        percent: Show only the percentage and ETA (``total`` is then 100: the steps tick
            their share through :meth:`Progress.scaled`).
    """
    tmp = tempfile.mkdtemp(prefix="corpus-pipeline-progress-")
    path = os.path.join(tmp, "ticks")
    Path(path).touch()
    stop = threading.Event()
    # -q sets CORPUS_PIPELINE_QUIET (commands/common.py): no bar; else only on a terminal.
    disable = True if os.environ.get("CORPUS_PIPELINE_QUIET") else None
    extra: dict[str, Any] = {}
    if percent:
        extra["bar_format"] = _PERCENT_FORMAT
    elif unit == "B":
        extra.update(unit_scale=True, unit_divisor=1024)
    bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, **extra)

    def poll() -> None:
        seen = 0.0
        while True:
            final = stop.is_set()  # read once more after the run ends, then stop
            try:
                with open(path, encoding="ascii") as f:
                    done = sum(float(x) for x in f.read().split())
            except (OSError, ValueError):
                done = seen
            if total and total < done <= total * (1 + 1e-9):
                done = total  # the float sum of shares that add up to the total
            if done > seen:
                step = done - seen
                bar.update(int(step) if step.is_integer() else step)  # "3/10", not "3.0/10"
                seen = done
            if final:
                break
            stop.wait(0.5)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield Progress(path)
    finally:
        stop.set()
        t.join(timeout=2)
        bar.close()
        with contextlib.suppress(OSError):
            os.remove(path)
            os.rmdir(tmp)


class BeamCounts:
    """The ``count(name, n)`` callback of the stage abstraction, backed by Beam counters.

    Counters are created lazily and cached per name (stages name their outcomes freely).
    Where no Beam metrics container runs the DoFn (the Dask runner has none: its counters
    would be lost), counts go to a per-process table instead, which :func:`run_pipeline`
    collects from every Dask worker after the run (:func:`take_process_counts`).
    """

    def __init__(self) -> None:
        self._counters: dict[str, Any] = {}

    def __call__(self, name: str, n: int = 1) -> None:
        from apache_beam.metrics.execution import MetricsEnvironment

        if MetricsEnvironment.current_container() is None:
            with _PROCESS_COUNTS_LOCK:
                _PROCESS_COUNTS[name] = _PROCESS_COUNTS.get(name, 0) + n
            return
        c = self._counters.get(name)
        if c is None:
            c = beam.metrics.Metrics.counter(NAMESPACE, name)
            self._counters[name] = c
        c.inc(n)


_PROCESS_COUNTS: dict[str, int] = {}
_PROCESS_COUNTS_LOCK = threading.Lock()


def take_process_counts() -> dict[str, int]:
    """This process's counts made outside a Beam metrics container, and reset them."""
    with _PROCESS_COUNTS_LOCK:
        out = dict(_PROCESS_COUNTS)
        _PROCESS_COUNTS.clear()
    return out


def _dask_counts(result: Any) -> dict[str, int]:
    """Our counters from every worker of the Dask cluster that ran ``result``."""
    counts: dict[str, int] = {}
    client = getattr(result, "client", None)
    if client is None:
        return counts
    try:
        for worker_counts in client.run(take_process_counts).values():
            for k, v in worker_counts.items():
                counts[k] = counts.get(k, 0) + v
    finally:
        client.close()  # the runner opens a client per run and never closes it
    return counts


def join_sinks(p: beam.Pipeline) -> None:
    """Make one last step depend on every leaf of ``p``.

    The Dask runner computes only the last transform applied and what it depends on; a
    graph with several sinks (shards, stats, manifests) would silently skip all but one.
    """
    from apache_beam.pipeline import PipelineVisitor

    class Leaves(PipelineVisitor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.made: list[Any] = []
            self.used: set[int] = set()

        def visit_transform(self, node: Any) -> None:
            self.made.extend(
                o for o in node.outputs.values() if isinstance(o, beam.pvalue.PCollection)
            )
            self.used.update(id(i) for i in node.inputs)
            self.used.update(id(si.pvalue) for si in node.side_inputs)

    v = Leaves()
    p.visit(v)
    leaves = [o for o in v.made if id(o) not in v.used]
    if leaves:
        _ = tuple(leaves) | "JoinSinks" >> beam.Flatten() | "Done" >> beam.FlatMap(_nothing)


def _nothing(_: Any) -> Iterator[Any]:
    return iter(())


class _CombineByGroup(beam.PTransform):  # type: ignore[misc]
    """``CombineGlobally(fn)`` with its default, by a GroupByKey on one key.

    Beam's version injects the default through a side input of the combined value, and the
    Dask runner computes a side input apart, recomputing everything upstream of it (every
    counter doubled, every shard written twice). A marker element makes the group exist
    even for an empty input.
    """

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def expand(self, pcoll: Any) -> Any:
        marker = pcoll.pipeline | "Marker" >> beam.Create([(None, (False, None))])
        keyed = pcoll | "Key" >> beam.Map(lambda v: (None, (True, v)))
        return (
            (keyed, marker)
            | "Merge" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Combine" >> beam.Map(_combine_group, self.fn)
        )


def _combine_group(element: tuple[None, Any], fn: Any) -> Any:
    fn.setup()
    values = [v for real, v in element[1] if real]
    out = fn.extract_output(fn.add_inputs(fn.create_accumulator(), values))
    fn.teardown()
    return out


def combine_without_side_inputs(p: beam.Pipeline) -> None:
    """Replace every ``CombineGlobally`` with defaults in ``p`` by :class:`_CombineByGroup`."""
    from apache_beam.pipeline import PTransformOverride

    class Override(PTransformOverride):  # type: ignore[misc]
        def matches(self, applied: Any) -> bool:
            t = applied.transform
            return isinstance(t, beam.CombineGlobally) and t.has_defaults and not t.as_view

        def get_replacement_transform_for_applied_ptransform(self, applied: Any) -> Any:
            t = applied.transform
            if t.args or t.kwargs:
                raise NotImplementedError("CombineGlobally with extra arguments")
            return _CombineByGroup(t.fn)

    p.replace_all([Override()])


# What FnApiRunner raises when a worker process vanishes (SIGKILL, the OOM killer): the data
# channel closes under the bundle, or the worker's subprocess reports its exit code.
_WORKER_DIED = ("Channel closed prematurely", "Worker subprocess exited with return code")


class _WorkerWatch:
    """Turns a local worker process's death into an interruption of the launcher.

    FnApiRunner starts each worker from a thread that raises when the process exits with an
    error, but nothing listens: a worker that dies before it connects (an import error, the
    OOM killer at start-up) leaves the launcher waiting for it forever. While a pipeline runs,
    the first such death is recorded, the other workers are stopped and the launcher gets a
    SIGINT, which :func:`run_pipeline` turns into one error line.
    """

    GRACE_S = 30.0  # how long the SIGINT has to end the run before the process exits itself

    def __init__(self) -> None:
        self.running = False
        self.failure: str | None = None
        self._lock = threading.Lock()

    def install(self) -> None:
        from apache_beam.runners.portability import local_job_service

        worker_cls = local_job_service.SubprocessSdkWorker
        original = worker_cls.run
        if getattr(original, "_watched", False):
            return
        watch = self

        def run(worker: Any) -> None:
            try:
                original(worker)
            except RuntimeError as e:  # "Worker subprocess exited with return code N"
                watch.died(str(e))

        run._watched = True  # type: ignore[attr-defined]
        worker_cls.run = run  # type: ignore[method-assign]

    def died(self, why: str) -> None:
        with self._lock:
            if not self.running or self.failure is not None:
                return
            self.failure = why
        for pid in descendants_of(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if threading.current_thread() is not threading.main_thread():
            threading.Thread(target=self._exit_if_still_running, daemon=True).start()
            os.kill(os.getpid(), signal.SIGINT)

    def _exit_if_still_running(self) -> None:
        """The last resort against a hang: Beam code on the main thread may swallow the
        SIGINT (it can arrive inside a gRPC wait that retries), and the launcher would then
        wait for the dead worker forever. The same error line, then exit 1; the lock and temp
        folder of a dead process are taken over by the next verb."""
        time.sleep(self.GRACE_S)
        if self.running:
            print(f"error: {_worker_died_error()}", file=sys.stderr, flush=True)
            os._exit(1)


_WATCH = _WorkerWatch()


def descendants_of(root: int) -> list[int]:
    """Every live process below ``root`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


class _HeldLogs(logging.Handler):
    """Holds the launcher's Beam and gRPC log records, and uncaught exceptions of its
    threads, while a pipeline runs.

    When a worker dies, Beam and gRPC report the broken channels from several threads (with
    tracebacks) before the failure reaches :func:`run_pipeline`; they say nothing the one
    error line does not. They are dropped then, and replayed for any other outcome.
    """

    NAMES = ("apache_beam", "grpc")

    def __init__(self, log_path: str | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.log_path = log_path
        self.records: list[logging.LogRecord] = []
        self._saved: list[tuple[logging.Logger, bool]] = []
        self._thread_errors: list[Any] = []
        self._excepthook = threading.excepthook

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _HeldLogs:
        for name in self.NAMES:
            log = logging.getLogger(name)
            self._saved.append((log, log.propagate))
            log.addHandler(self)
            log.propagate = False
        self._excepthook = threading.excepthook
        threading.excepthook = self._thread_errors.append
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        for log, propagate in self._saved:
            log.removeHandler(self)
            log.propagate = propagate
        threading.excepthook = self._excepthook
        records, self.records = self.records, []
        errors, self._thread_errors = self._thread_errors, []
        if exc is None and _WATCH.failure is None:
            for record in records:
                logging.getLogger(record.name).handle(record)
            for args in errors:
                self._excepthook(args)
            return
        # A failed run: what Beam and gRPC said goes to the worker log, not the terminal (the
        # failure becomes one error line that names the log).
        if self.log_path is None:
            return
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        with contextlib.suppress(OSError), open(self.log_path, "a", encoding="utf-8") as f:
            f.write("\n--- launcher ---\n")
            for record in records:
                f.write(fmt.format(record) + "\n")
            for args in errors:
                f.write(f"thread {getattr(args.thread, 'name', '?')}: {args.exc_value!r}\n")


def _worker_died_error() -> UserError:
    return UserError(
        "a Beam worker process died mid-run (killed by a signal, or by the system "
        "when out of memory: try fewer --workers or more --shards); run the "
        "same command again to resume (finished shards are kept)",
        exit_code=1,
    )


def run_pipeline(
    build: Callable[[beam.Pipeline], Any],
    workers: int,
    beam_args: Sequence[str] = (),
) -> dict[str, int]:
    """Build and run a pipeline, wait for it, and return our counters by name."""
    global _LOCAL_RUN
    opts = make_options(workers, beam_args)
    runner = make_runner(beam_args, opts)
    dask = is_dask_runner(beam_args)
    p = beam.Pipeline(runner=runner, options=opts) if runner else beam.Pipeline(options=opts)
    _LOCAL_RUN = is_local_runner(beam_args)
    try:
        build(p)
        if dask:
            combine_without_side_inputs(p)
            join_sinks(p)
    except BaseException:
        _LOCAL_RUN = True
        raise
    if runner is not None and not dask:
        _WATCH.install()
    _WATCH.running, _WATCH.failure = True, None
    # Local workers write their stderr here (corpus_pipeline.beam.worker), in the verb's
    # private temp folder: removed with it after a success, kept (moved) after a failure.
    log_path = os.path.join(tempfile.gettempdir(), f"workers-{os.getpid()}.log")
    old_log = os.environ.get(LOG_ENV)
    os.environ[LOG_ENV] = log_path
    try:
        with _HeldLogs(log_path):
            result = p.run()
            result.wait_until_finish()
    except KeyboardInterrupt:
        if _WATCH.failure is not None:
            raise _worker_died_error() from None
        raise
    except Exception as e:  # a worker's failure comes back wrapped, with its traceback as text
        raise pipeline_error(e, log_path) from None
    finally:
        _LOCAL_RUN = True
        _WATCH.running = False
        if old_log is None:
            os.environ.pop(LOG_ENV, None)
        else:
            os.environ[LOG_ENV] = old_log
    if dask:
        return _dask_counts(result)
    return query_counters(result)


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$", re.MULTILINE)


def pipeline_error(e: BaseException, log_path: str) -> UserError:
    """One error line for a failed pipeline; the tracebacks go to a log file it names."""
    text = str(e)
    if "No space left on device" in text or "ENOSPC" in text:
        where = re.search(r"(?:writing|to|file) '?(/[^\s':]+)", text)
        target = f" while writing {where.group(1)}" if where else ""
        return UserError(
            f"disk full{target}: free space or choose another --output, then re-run "
            "(finished shards are kept)",
            exit_code=1,
        )
    if _WATCH.failure is not None or any(m in text for m in _WORKER_DIED):
        return _worker_died_error()
    kept = _keep_log(log_path, e)
    log_note = f"; tracebacks in {kept}" if kept else ""
    # The innermost exception: the last "SomethingError: message" line of the text, without
    # the RuntimeError wrappers Beam adds around a worker's exception.
    matches = _EXCEPTION_LINE.findall(text)
    if matches:
        kind, message = matches[-1]
        while (m := _EXCEPTION_LINE.match(message)) is not None:
            kind, message = m.group(1), m.group(2)
    else:
        kind, message = type(e).__name__, (text.strip().splitlines() or [""])[0]
    step = re.search(r"\[while running '([^']+)'\]", text)
    message = re.sub(r"\s*\[while running '[^']+'\]", "", message)
    if kind.rsplit(".", 1)[-1] in ("UserError", "InputFormatError", "ChecksumError"):
        return UserError(message + log_note)
    at = f" in step {step.group(1)}" if step else ""
    return UserError(
        f"the pipeline failed{at}: {kind.rsplit('.', 1)[-1]}: {message[:300]}{log_note}",
        exit_code=1,
    )


def _keep_log(log_path: str, e: BaseException) -> str | None:
    """Move the run's worker log (plus the launcher's exception) out of the private temp
    folder, so it outlives the verb; returns its new path."""
    import shutil
    import traceback

    tmp = tempfile.gettempdir()
    base = os.path.dirname(tmp) if os.path.basename(tmp).startswith("corpus-pipeline-run-") else tmp
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = os.path.join(base, f"corpus-pipeline-failed-{stamp}-{os.getpid()}.log")
    try:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write("\n--- launcher exception ---\n")
            f.write("".join(traceback.format_exception(e)))
        shutil.move(log_path, kept)
    except OSError:
        return None
    return kept


def query_counters(result: Any) -> dict[str, int]:
    """Our namespace's counters from a PipelineResult (committed if the runner has them)."""
    counts: dict[str, int] = {}
    try:
        metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except (NotImplementedError, AttributeError):
        return counts
    for c in metrics.get("counters", []):
        value = c.committed if c.committed is not None else c.attempted
        counts[c.key.metric.name] = counts.get(c.key.metric.name, 0) + int(value or 0)
    return counts


def format_summary(title: str, counts: dict[str, int], elapsed: float | None = None) -> str:
    """A short, sorted summary of counters for the end of a run."""
    lines = [title + (f" ({elapsed:.1f} s)" if elapsed is not None else "")]
    width = max((len(k) for k in counts), default=0)
    for k in sorted(counts):
        lines.append(f"  {k:<{width}}  {counts[k]:>12,}")
    return "\n".join(lines)


class Timer:
    """Wall-clock timer for summaries."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
