"""`corpus-pipeline pack` and `mask --pack` end to end."""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest

from corpus_pipeline.formats import registry
from corpus_pipeline.formats.manifest import read_manifest, without_timestamps
from corpus_pipeline.records import Pack
from tests.e2e.conftest import IN_PROCESS, WIKI_MASK, run_cli


@pytest.fixture(scope="module")
def wiki_packed(tmp_path_factory, wiki_masked):
    out = tmp_path_factory.mktemp("wiki_packed")
    assert (
        run_cli(
            "pack", "--input", wiki_masked, "--output", out, "--max-per-pack", "3", "--workers", "2"
        )
        == 0
    )
    return out


def _multiset(records):
    return Counter(i.key() for i in registry.instances_of(records))


def test_unpacking_gives_back_exactly_the_input_in_every_format(wiki_masked, wiki_packed):
    src = read_manifest(str(wiki_masked))
    dst = read_manifest(str(wiki_packed))
    assert dst["kind"] == "packed" and dst["formats"] == src["formats"]
    expected = _multiset(registry.iter_dataset(str(wiki_masked), src, "hdf5"))
    for fmt in dst["formats"]:
        packs = list(registry.iter_dataset(str(wiki_packed), dst, fmt))
        assert all(isinstance(p, Pack) and 1 <= len(p.instances) <= 3 for p in packs)
        assert all(p.length <= 128 for p in packs)
        assert all(sum(len(i.masked_lm_positions) for i in p.instances) <= 20 + 2 for p in packs)
        assert _multiset(packs) == expected, fmt
        assert len(packs) == dst["totals"]["records"]


def test_packing_report(wiki_packed):
    m = read_manifest(str(wiki_packed))
    pk = m["packing"]
    assert pk["instances"] == m["totals"]["instances"]
    assert pk["packs"] == m["totals"]["records"] < pk["instances"]
    assert pk["efficiency"] > 0.99 > pk["efficiency_unpacked"]
    assert pk["speedup"] == pytest.approx(pk["instances"] / pk["packs"])


def test_mlperf_packed_hdf5_schema(wiki_packed):
    m = read_manifest(str(wiki_packed))
    path = wiki_packed / m["shards"][0]["files"]["hdf5"][0]["path"]
    with h5py.File(path, "r") as f:
        assert "input_mask" not in f
        lens = f["packed_input_len"][:]
        ids = f["input_ids"][:]
        for k in (
            "input_ids",
            "masked_lm_positions",
            "masked_lm_ids",
            "packed_input_len",
            "packed_masked_lm_len",
        ):
            assert h5py.check_vlen_dtype(f[k].dtype) == np.int16, k
    assert all(len(i) == int(n.sum()) for i, n in zip(ids, lens, strict=True))


def test_pack_is_byte_identical_across_worker_counts(tmp_path, wiki_masked, wiki_packed):
    """2 worker processes (``wiki_packed``) and this process's runner (no worker process)."""
    out = tmp_path / "one"
    assert run_cli("pack", "--input", wiki_masked, "--output", out, *IN_PROCESS) == 0
    a = without_timestamps(read_manifest(str(wiki_packed)))
    b = without_timestamps(read_manifest(str(out)))
    assert a["shards"] == b["shards"]


def test_mask_with_pack_flag_writes_packed_shards(tmp_path, wiki_docs, wiki_packed):
    out = tmp_path / "direct"
    rc = run_cli(
        *WIKI_MASK,
        "--input",
        wiki_docs,
        "--output",
        out,
        "--pack",
        "--format",
        "tfrecord",
        *IN_PROCESS,
    )
    assert rc == 0
    m = read_manifest(str(out))
    assert m["kind"] == "packed" and m["max_per_pack"] == 3
    assert not list(out.glob("hdf5/*"))
    # Same instances and the same per-shard packing as mask-then-pack.
    other = read_manifest(str(wiki_packed))
    assert [s["files"]["tfrecord"] for s in m["shards"]] == [
        s["files"]["tfrecord"] for s in other["shards"]
    ]


def test_pack_refuses_packed_input(tmp_path, wiki_packed, capsys):
    rc = run_cli("pack", "--input", wiki_packed, "--output", tmp_path / "x")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "already packed" in err[0]


def test_max_per_pack_one_is_identity(tmp_path, wiki_masked):
    out = tmp_path / "k1"
    assert (
        run_cli(
            "pack",
            "--input",
            wiki_masked,
            "--output",
            out,
            "--max-per-pack",
            "1",
            "--format",
            "mmap",
            *IN_PROCESS,
        )
        == 0
    )
    m = read_manifest(str(out))
    assert m["totals"]["records"] == m["totals"]["instances"]
