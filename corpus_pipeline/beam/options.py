"""Choosing the runner and its options: our local defaults, where its workers run, and the
Dask runner's graph rewrites.

Local default: FnApiRunner with ``direct_running_mode=multi_processing`` and one worker per
core. DirectRunner would first try to download Prism (no network here) and
``multi_threading`` loses records (README, "Commands"), so neither is used unless the
user asks for it explicitly. Any Beam flag (``--runner``, ``--project``, ...) passes through.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)

from corpus_pipeline.beam.counters import take_process_counts


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


def in_one_process(pipeline: beam.Pipeline) -> bool:
    """True when ``pipeline`` runs on our default runner in this process, on one worker.

    That is the small-input mode of :func:`corpus_pipeline.commands.common.runner_args`
    (``--direct_running_mode=in_memory``, one worker): there is nothing to spread work over.
    """
    opts = pipeline.options
    if opts.view_as(StandardOptions).runner:
        return False
    direct = opts.view_as(DirectOptions)
    return direct.direct_running_mode == "in_memory" and (direct.direct_num_workers or 1) == 1


def spread(pcoll: Any, label: str) -> Any:
    """``pcoll`` redistributed over the workers (a Reshuffle), so the next step runs in parallel.

    In one process there is no other worker: the Reshuffle (a GroupByKey and five steps)
    would only add a stage, and its start-up cost, to a run. Output does not depend on it:
    no step depends on the order of elements.
    """
    if in_one_process(pcoll.pipeline):
        return pcoll
    return pcoll | label >> beam.Reshuffle()


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
