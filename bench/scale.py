"""Scale run: ~1 GB of Wikipedia XML through `corpus-pipeline run` on this machine.

The input is the bundled enwiki excerpt replicated (pages get new ids and titles) into a
multistream dump of about ``--target-mb`` MB of uncompressed XML (one bz2 stream per 100
pages, plus its index), cached in ``.bench/``. One run of the whole pipeline (extract ->
sentences -> WordPiece -> mask phase1, dupe 5 -> pack -> HDF5 + TFRecord + mmap, packed and
unpacked) with ``--workers`` workers. Printed: wall and CPU time, XML MB/s, documents/s and
instances/s, the process tree's peak RSS and the largest single process's, the output's disk
footprint per part and the peak of the output directory during the run (spills included).

Baselines are not re-run here (they take hours at this size; the per-stage scripts run them
on the excerpt in the same process). Instead the last lines set the measured rate next to
figures other users published for the tools we replace, with their sources.

    python bench/scale.py [--target-mb 1024] [--workers 2]
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, child_env, cli, print_table, run_measured  # noqa: E402

from corpus_pipeline.resources import SAMPLE_WIKI_DUMP  # noqa: E402
from corpus_pipeline.testing.multistream import build_multistream  # noqa: E402

MB = 2**20


def excerpt_xml_mb() -> float:
    return len(bz2.decompress(SAMPLE_WIKI_DUMP.read_bytes())) / MB


def scaled_dump(copies: int) -> Path:
    """The cached multistream dump of ``copies`` copies of the excerpt."""
    d = CACHE / f"scale-ms-{copies}x"
    found = sorted(d.glob("*multistream.xml.bz2")) if d.exists() else []
    if found:
        return found[0]
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    print(f"building a {copies}x multistream dump in {d} (bz2 -9, once) ...", flush=True)
    dump, _ = build_multistream(
        SAMPLE_WIKI_DUMP, d, copies=copies, pages_per_stream=100, processes=os.cpu_count() or 1
    )
    return dump


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):  # renamed or removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class DiskPeak:
    """Largest size of a directory tree, sampled every ``interval`` seconds."""

    def __init__(self, root: Path, interval: float = 2.0) -> None:
        self.root, self.interval, self.peak = root, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_bytes(self.root))
            self._stop.wait(self.interval)

    def __enter__(self) -> DiskPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_bytes(self.root))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-mb", type=float, default=1024.0, help="uncompressed XML size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="keep the output here instead of a temp dir")
    args = ap.parse_args()
    CACHE.mkdir(exist_ok=True)

    copies = max(1, math.ceil(args.target_mb / excerpt_xml_mb()))
    dump = scaled_dump(copies)
    xml_mb = copies * excerpt_xml_mb()
    dump_mb = dump.stat().st_size / MB
    print(f"input: {dump.name}: {xml_mb:,.0f} MB XML ({dump_mb:,.0f} MB bz2), {copies} copies")

    tmp = None if args.keep else tempfile.mkdtemp(dir=CACHE, prefix="scale-")
    out = args.keep or Path(str(tmp)) / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        cmd = cli(
            "run",
            "--input",
            str(dump),
            "--output",
            str(out),
            "--preset",
            "phase1",
            "--dupe-factor",
            "5",
            "--format",
            "all",
            "--pack",
            "--workers",
            str(args.workers),
        )
        with DiskPeak(out) as disk:
            r = run_measured(cmd, env=child_env(), interval=0.5)
        unpacked = json.loads((out / "unpacked" / "manifest.json").read_text())
        docs = json.loads((out / "docs" / "manifest.json").read_text())
        n_inst = unpacked["totals"]["instances"]
        n_docs = int(docs["documents"])
        parts = {p.name: tree_bytes(p) / MB for p in sorted(out.iterdir()) if p.is_dir()}
        total_mb = tree_bytes(out) / MB
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    print_table(
        ["workers", "XML MB", "documents", "instances", "wall s", "cpu s", "XML MB/s"]
        + ["docs/s", "inst/s", "tree peak MB", "max proc MB"],
        [
            [
                args.workers,
                round(xml_mb),
                n_docs,
                n_inst,
                round(r.wall, 1),
                round(r.cpu, 1),
                round(xml_mb / r.wall, 2),
                round(n_docs / r.wall, 1),
                round(n_inst / r.wall),
                round(r.tree_rss_mb),
                round(r.max_proc_rss_mb),
            ]
        ],
    )
    print(
        "disk written (MB): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in parts.items())
        + f"; total {total_mb:,.0f}; peak during the run {disk.peak / MB:,.0f}"
    )
    per_gb_h = 1024 / xml_mb * r.wall / 3600
    print(
        f"at this rate 1 GB of XML takes {per_gb_h:.2f} h on {args.workers} workers "
        f"({xml_mb / r.cpu:.2f} XML MB per CPU-second)"
    )
    print(
        "published figures for the tools replaced (other machines, for scale only):\n"
        "  wikiextractor, English Wikipedia 2015 (~50 GB XML), --no-templates: 500 min on 1 "
        "process, ~80 min on 8 (WikiExtractor/wikiextractor PR #27)\n"
        "  Google create_pretraining_data.py, ~1 GB Chinese Wikipedia text: over 6 h, unfinished "
        "(google-research/bert issue #187); 650 MB in 40 files, S=64: over 24 h (issue #616); "
        "3.3 GB: 2 days, unfinished (issue #89)"
    )


if __name__ == "__main__":
    main()
