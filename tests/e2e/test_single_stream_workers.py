"""A single-stream dump read by 2 worker processes gives the bytes 1 worker gives.

With 2 workers the dump is read in 2 shares (``beam/extract.py``, ``ReadShare``): each worker
decompresses the whole stream and cleans its own chunks of pages as it reads. The shards, the
document counts and every counter (pages read, redirects, bytes) must not depend on that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from corpus_pipeline import resources


def extract(out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "corpus_pipeline", "extract"]
    cmd += ["--input", str(resources.SAMPLE_WIKI_DUMP), "--output", str(out)]
    cmd += ["--pages-per-chunk", "20", "--format", "jsonl", "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_one_and_two_workers_give_identical_shards(tmp_path: Path) -> None:
    one = extract(tmp_path / "one", 1)
    two = extract(tmp_path / "two", 2)
    names = sorted(p.name for p in (tmp_path / "one").glob("wiki_*.jsonl"))
    assert len(names) == 4
    assert names == sorted(p.name for p in (tmp_path / "two").glob("wiki_*.jsonl"))
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert one["counters"] == two["counters"]
    assert one["counters"]["extract/read:pages"] == 206
    assert one["counters"]["extract/read:units"] == 1
    assert one["shards"] == two["shards"]
