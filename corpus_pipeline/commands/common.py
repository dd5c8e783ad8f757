"""Flags shared by the verbs that are not config fields (inputs, workers, --overwrite)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterable, Sequence

from corpus_pipeline import fsio
from corpus_pipeline.config import default_workers
from corpus_pipeline.errors import UserError

#: Set (to "1") by ``-q``: progress bars stay off (``beam/progress.py`` reads it too).
QUIET_ENV = "CORPUS_PIPELINE_QUIET"

#: Inputs smaller than this (bytes on disk) run in one process: starting a worker process
#: costs about a CPU-second of imports, more than such an input takes to process.
IN_PROCESS_MAX_BYTES = 1 << 20


def add_beam_flags(p: argparse.ArgumentParser) -> None:
    """``--workers`` (the local runner's worker processes)."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default: one per core, "
        f"{default_workers()} here; 1, and inputs under {IN_PROCESS_MAX_BYTES >> 20} MiB, "
        "run in this process). Other flags (--runner DataflowRunner, --project, ...) go to Apache "
        "Beam",
    )


def add_text_dir_flag(p: argparse.ArgumentParser) -> None:
    """``--text-dir``: folders of plain ``.txt`` documents (``sources/text.py``)."""
    p.add_argument(
        "--text-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of plain .txt files: blank lines separate documents (or one file = "
        "one document with --doc-per-file); repeatable",
    )


def add_overwrite_flag(p: argparse._ActionsContainer) -> None:
    """``--overwrite``: empty an output folder that holds another dataset (see ``outdir.py``)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what --output holds (a dataset of another configuration, an unfinished "
        "run); refused for folders corpus-pipeline did not write",
    )


def add_space_check_flag(p: argparse._ActionsContainer) -> None:
    """``--no-space-check``: run even when the output estimate exceeds the free space."""
    p.add_argument(
        "--no-space-check",
        action="store_true",
        help="run even when the estimated output is larger than the free disk space",
    )


def progress_disabled() -> bool | None:
    """tqdm's ``disable``: True under ``-q``; None shows a bar when stderr is a terminal."""
    return True if os.environ.get(QUIET_ENV) else None


def positive(name: str, value: int) -> int:
    """Check a flag is >= 1."""
    if value < 1:
        raise UserError(f"{name} must be >= 1 (got {value})")
    return value


def _size(path: str) -> int:
    """Bytes under ``path`` (a file, or the files of a folder); remote paths count as large."""
    if fsio.is_remote(path):
        return IN_PROCESS_MAX_BYTES
    if os.path.isdir(path):
        total = 0
        for root, _, names in os.walk(path):
            for n in names:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(root, n))
        return total
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def check_paths_reach_workers(beam_args: Sequence[str], paths: Iterable[tuple[str, str]]) -> None:
    """Refuse a local path when the runner's workers run on other machines.

    Args:
        beam_args: The pass-through Beam flags (``--runner`` ...).
        paths: ``(flag, path)`` of every input and output the workers open.

    Raises:
        UserError: A path is local but the runner's workers cannot see this machine's disk
            (``beam/options.remote_workers``).
    """
    local = [(flag, path) for flag, path in paths if not fsio.is_remote(path)]
    if not local or not any(a.startswith("--runner") for a in beam_args):
        return
    from corpus_pipeline.beam.options import remote_workers

    runner = remote_workers(beam_args)
    if runner is not None:
        flag, path = local[0]
        raise UserError(
            f"{flag} {path}: a local path, but {runner} runs its workers on other machines, "
            "which cannot see this machine's disk; give an object-store path (gs://..., "
            "s3://...)"
        )


def runner_args(
    workers: int | None,
    beam_args: Sequence[str],
    inputs: Iterable[str],
    paths: Iterable[tuple[str, str]] = (),
) -> tuple[int, list[str]]:
    """The worker count and Beam flags of a run.

    With no ``--runner`` and no Beam worker flags, one worker (``--workers 1``, or no
    ``--workers`` and an input smaller than :data:`IN_PROCESS_MAX_BYTES`) runs in this
    process (Beam's ``in_memory`` mode): the output is the same on any worker count, and a
    worker process would cost more to start than the work it does.

    Args:
        workers: ``--workers``, or None.
        beam_args: The pass-through Beam flags.
        inputs: The input paths (their size decides the in-process mode).
        paths: ``(flag, path)`` of every input and the output, checked by
            :func:`check_paths_reach_workers`.

    Raises:
        UserError: ``--workers`` below 1, or a local path with a runner whose workers
            cannot see it.
    """
    check_paths_reach_workers(beam_args, paths)
    args = list(beam_args)
    chosen = ("--runner", "--direct_running_mode", "--direct_num_workers")
    if any(a == c or a.startswith(c + "=") for a in args for c in chosen):
        return (default_workers() if workers is None else positive("--workers", workers)), args
    if workers is not None:
        n = positive("--workers", workers)
    elif sum(_size(p) for p in inputs) < IN_PROCESS_MAX_BYTES:
        n = 1
    else:
        n = default_workers()
    if n == 1:
        # One worker: this process is it. A worker process would only add its start-up and
        # the copying of every element between it and the runner (7-13% of a --workers 1
        # run's CPU on the excerpt x3 to x10). Beam's construction-time type check of our
        # own graph costs ~0.2 CPU-s per run.
        return 1, [*args, "--direct_running_mode=in_memory", "--no_pipeline_type_check"]
    return n, args
