"""A single-stream dump read by 2 or 3 worker processes gives the bytes 1 worker gives.

With N workers the dump is read in N shares (``beam/extract_read.py``, ``ReadShare``): a bz2 dump
is split by blocks, each worker decompressing and cleaning only the pages that start in its
part of the file. The shards, the document counts and every counter (pages read, redirects,
bytes) must not depend on that, whether the dump has 900 kB blocks (the bundled excerpt: 7
blocks) or 100 kB ones (61 blocks).
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.testing.multistream import read_dump_bytes
from tests.e2e.conftest import IN_PROCESS, run_cli


def extract(dump: Path, out: Path, workers: int) -> dict:
    """``extract`` in this process; 1 worker is the reference, read as one share in the
    runner's own process (``in_memory``), more are real worker processes."""
    args = ["extract", "--input", dump, "--output", out, "--pages-per-chunk", "20"]
    args += ["--format", "jsonl"]
    args += [*IN_PROCESS] if workers == 1 else ["--workers", str(workers)]
    assert run_cli(*args) == 0
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


# 2 workers on the 7-block excerpt; 3 (an odd split of 61 blocks) on the 100 kB-block copy.
@pytest.mark.parametrize(("level", "workers"), [(9, (1, 2)), (1, (1, 3))])
def test_one_and_more_workers_give_identical_shards(
    tmp_path: Path, level: int, workers: tuple[int, ...]
) -> None:
    dump = tmp_path / "enwiki-excerpt.xml.bz2"
    dump.write_bytes(bz2.compress(read_dump_bytes(resources.SAMPLE_WIKI_DUMP), level))
    runs = {n: extract(dump, tmp_path / f"w{n}", n) for n in workers}
    one = runs[1]
    names = sorted(p.name for p in (tmp_path / "w1").glob("wiki_*.jsonl"))
    assert len(names) == 4
    for n in workers[1:]:
        assert names == sorted(p.name for p in (tmp_path / f"w{n}").glob("wiki_*.jsonl"))
        for name in names:
            assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / f"w{n}" / name).read_bytes()
        assert one["counters"] == runs[n]["counters"]
        assert one["shards"] == runs[n]["shards"]
    assert one["counters"]["extract/read:pages"] == 206
    assert one["counters"]["extract/read:units"] == 1
