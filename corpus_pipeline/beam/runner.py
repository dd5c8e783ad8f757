"""Running a verb's Beam pipeline: build it on the chosen runner, wait for it, and turn a
failure into one error line.

A local worker's death interrupts the launcher (:class:`_WorkerWatch`), the Beam and gRPC
logs of a failed run go to a worker log instead of the terminal (:class:`_HeldLogs`), and
the counters come back by name. The runner and its options are chosen in
:mod:`corpus_pipeline.beam.options`, the progress bar lives in
:mod:`corpus_pipeline.beam.progress`, the counters in :mod:`corpus_pipeline.beam.counters`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam

from corpus_pipeline.beam import progress
from corpus_pipeline.beam.counters import query_counters
from corpus_pipeline.beam.options import (
    _dask_counts,
    combine_without_side_inputs,
    is_dask_runner,
    is_local_runner,
    join_sinks,
    make_options,
    make_runner,
)
from corpus_pipeline.beam.worker import LOG_ENV
from corpus_pipeline.errors import UserError

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
    opts = make_options(workers, beam_args)
    runner = make_runner(beam_args, opts)
    dask = is_dask_runner(beam_args)
    try:
        p = beam.Pipeline(runner=runner, options=opts) if runner else beam.Pipeline(options=opts)
    except ImportError as e:  # an option that needs what is not installed (--pickle_library=dill)
        raise UserError(f"{e}".rstrip(".")) from None
    progress._LOCAL_RUN = is_local_runner(beam_args)
    try:
        build(p)
        if dask:
            combine_without_side_inputs(p)
            join_sinks(p)
    except BaseException:
        progress._LOCAL_RUN = True
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
        if _interrupted(e):
            raise KeyboardInterrupt from None
        raise pipeline_error(e, log_path) from None
    finally:
        progress._LOCAL_RUN = True
        _WATCH.running = False
        if old_log is None:
            os.environ.pop(LOG_ENV, None)
        else:
            os.environ[LOG_ENV] = old_log
    if dask:
        return _dask_counts(result)
    return query_counters(result)


def _interrupted(e: BaseException) -> bool:
    """Ctrl-C in a run in this process: Beam wraps the KeyboardInterrupt raised in a step
    (``RuntimeError: KeyboardInterrupt [while running 'step']``). It is an interruption (the
    CLI's ``interrupted``, exit 130), not a failed step."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) or str(seen).startswith("KeyboardInterrupt"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
