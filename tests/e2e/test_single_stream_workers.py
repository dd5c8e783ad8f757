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
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.testing.multistream import read_dump_bytes


def extract(dump: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "corpus_pipeline", "extract"]
    cmd += ["--input", str(dump), "--output", str(out)]
    cmd += ["--pages-per-chunk", "20", "--format", "jsonl", "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("level", "workers"), [(9, (1, 2)), (1, (1, 2, 3))])
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
