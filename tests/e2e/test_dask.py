"""The Dask runner (``--runner DaskRunner``) against a ``dask.distributed`` cluster of two
worker processes: the same bytes and the same counters as the local FnApiRunner.

Beam's Dask runner lacks three things a Beam graph may rely on, so our graph avoids them
(``beam/mask.py``, ``beam/runner.py``): a ParDo's tagged outputs all reach every consumer (our
DoFns emit ``(tag, value)`` pairs, split by ``select_tagged``); a side input is computed on
its own, recomputing everything upstream (totals reach each file through a GroupByKey, and
``CombineGlobally`` is replaced by a grouped version on Dask); only the last transform's
ancestors run (``join_sinks``). It has no metrics: counters are kept per worker process and
collected after the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")

from corpus_pipeline import resources  # noqa: E402
from tests.e2e.conftest import IN_PROCESS, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def dask_address():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file but the manifests (their times differ)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", "run.json")
    }


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def dask_flags(address: str) -> list[str]:
    return ["--runner", "DaskRunner", "--dask_client_address", address]


@pytest.mark.soak  # make test keeps the mask graph on Dask (every format, Megatron included)
def test_run_on_dask_matches_fnapi(dask_address, tmp_path):
    args = [
        "run",
        "--books",
        resources.SAMPLE_BOOKS_DIR,
        "--preset",
        "phase1",
        "--dupe-factor",
        "1",
        "--format",
        "hdf5,tfrecord",
        "--pack",
        "--doc-shards",
        "2",
        "--shards",
        "2",
    ]
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert run_cli(*args, "--output", local, "--workers", "2") == 0
    assert run_cli(*args, "--output", dask, *dask_flags(dask_address)) == 0
    assert digests(dask) == digests(local)
    assert any(k.startswith("packed/") for k in digests(dask))
    for ds in ("unpacked", "packed"):
        got, want = manifest(dask / ds), manifest(local / ds)
        assert got["shards"] == want["shards"], ds
        assert got["counters"] == want["counters"], ds
        assert got["statistics"] == want["statistics"], ds
    assert manifest(dask / "docs")["shards"] == manifest(local / "docs")["shards"]


def test_mask_on_dask_matches_fnapi(dask_address, tmp_path):
    """Many documents (negatives from other documents), every format (the Megatron dataset
    is a second output of the encoding step)."""
    args = [
        "mask",
        "--input",
        resources.SAMPLE_GOOGLE_TEXT,
        "--preset",
        "phase1",
        "--dupe-factor",
        "3",
        "--format",
        "all",
        "--shards",
        "3",
    ]
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert run_cli(*args, "--output", local, *IN_PROCESS) == 0
    assert run_cli(*args, "--output", dask, *dask_flags(dask_address)) == 0
    assert digests(dask) == digests(local)
    got, want = manifest(dask), manifest(local)
    assert got["megatron"] == want["megatron"] is not None
    assert got["counters"] == want["counters"]
    assert got["statistics"] == want["statistics"]
    assert got["totals"] == want["totals"]
