"""End-to-end fixtures: run the real CLI (real Beam pipelines) once per session."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.cli import main

#: Beam flags for a run whose subject is not worker processes or parallelism: FnApiRunner
#: runs the pipeline in this process (``in_memory``) instead of starting worker processes,
#: each of which costs a second of CPU to start. The bytes are the same: the tests that
#: compare worker counts (``test_extract_cli.py``, ``test_mask_cli.py``, ``test_pack_cli.py``,
#: ``test_validation_split.py``) compare a run in worker processes (``--workers 2``) with
#: one in this process, and ``test_pipeline.py`` compares runners.
IN_PROCESS = ("--direct_running_mode", "in_memory")


#: How ``wiki_docs`` extracts the excerpt, less ``--output`` and ``--workers``.
WIKI_EXTRACT = ("extract", "--input", resources.SAMPLE_WIKI_DUMP, "--shards", "2")
#: How ``wiki_masked`` masks, less ``--input``, ``--output``, ``--format`` and ``--workers``:
#: a test that runs the same masking gets the same instances.
WIKI_MASK = ("mask", "--preset", "phase1", "--dupe-factor", "5", "--seed", "12345", "--shards", "3")


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


def shared_output(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name``, made by ``make(folder)`` once per test session.

    Under pytest-xdist every worker process has its own session fixtures: the folder is kept
    in the session's base folder, which the workers share, and a lock lets the first worker
    that needs it make it while the others wait. Tests only read it (copy it to change it).
    """
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # .../pytest-N, this session's, above each worker's popen-gwK
    root = base / "shared"
    root.mkdir(exist_ok=True)
    out = root / name
    with open(root / f"{name}.lock", "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").exists():
            shutil.rmtree(out, ignore_errors=True)  # a worker that failed making it
            make(out)
            (root / f"{name}.done").touch()
    return out


@pytest.fixture(scope="session")
def wiki_docs(tmp_path_factory):
    """The bundled Wikipedia excerpt extracted into 2 text shards (2 workers)."""

    def make(out: Path) -> None:
        rc = run_cli(*WIKI_EXTRACT, "--output", out, "--workers", "2")
        assert rc == 0

    return shared_output(tmp_path_factory, "wiki_docs", make)


@pytest.fixture(scope="session")
def wiki_masked(tmp_path_factory, wiki_docs):
    """Phase-1 masking of the excerpt, dupe factor 5, every format, 2 workers."""

    def make(out: Path) -> None:
        rc = run_cli(
            *WIKI_MASK, "--input", wiki_docs, "--output", out, "--format", "all", "--workers", "2"
        )
        assert rc == 0

    return shared_output(tmp_path_factory, "wiki_masked", make)
