"""End-to-end throughput and peak memory of `corpus-pipeline run`.

Inputs are multistream dumps built from the bundled excerpt (pages replicated with new ids,
one bz2 stream per 100 pages, plus the index), at 1x and Nx (default 10x). Each run is the
whole pipeline (extract -> split -> encode -> mask dupe 5 -> pack -> every format). Printed:
dump MB/s (uncompressed XML) and instances/s with 1 and 2 workers, and the peak RSS of the
whole process tree (launcher + Beam workers) at 1x and Nx. Shard counts grow with the input
(memory is bounded by shard size by design, not by a fixed number of shards).

    python bench/pipeline.py [--copies 10]
"""

from __future__ import annotations

import argparse
import bz2
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, child_env, cli, print_table, run_measured  # noqa: E402

from corpus_pipeline.resources import SAMPLE_WIKI_DUMP  # noqa: E402
from corpus_pipeline.testing.multistream import build_multistream  # noqa: E402


def dump_for(copies: int) -> tuple[Path, float]:
    d = CACHE / f"pipeline-ms-{copies}x"
    if not d.exists() or not list(d.glob("*multistream.xml.bz2")):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        build_multistream(SAMPLE_WIKI_DUMP, d, copies=copies, pages_per_stream=100)
    dump = next(d.glob("*multistream.xml.bz2"))
    xml_mb = len(bz2.decompress(dump.read_bytes())) / 2**20
    return dump, xml_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10)
    args = ap.parse_args()
    CACHE.mkdir(exist_ok=True)
    rows = []
    results = {}
    for copies, workers in ((1, 1), (1, 2), (args.copies, 1), (args.copies, 2)):
        dump, xml_mb = dump_for(copies)
        shards = str(4 * copies)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            out = Path(tmp) / "out"
            r = run_measured(
                cli(
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
                    "--shards",
                    shards,
                    "--doc-shards",
                    shards,
                    "--workers",
                    str(workers),
                ),
                env=child_env(),
            )
            m = json.loads((out / "unpacked" / "manifest.json").read_text())
            inst = m["totals"]["instances"]
        results[(copies, workers)] = r
        rows.append(
            [
                f"{copies}x",
                workers,
                f"{xml_mb:.1f}",
                inst,
                f"{r.wall:.1f}",
                f"{r.cpu:.1f}",
                f"{xml_mb / r.wall:.2f}",
                f"{inst / r.wall:,.0f}",
                f"{r.tree_rss_mb:.0f}",
                f"{r.max_proc_rss_mb:.0f}",
            ]
        )
    print_table(
        [
            "input",
            "workers",
            "XML MB",
            "instances",
            "wall s",
            "cpu s",
            "XML MB/s",
            "inst/s",
            "tree peak MB",
            "max proc MB",
        ],
        rows,
    )
    n = args.copies
    speedup = results[(n, 1)].wall / results[(n, 2)].wall
    mem = results[(n, 2)].tree_rss_mb / results[(1, 2)].tree_rss_mb
    print(
        f"ratio: 2 workers / 1 worker at {n}x: {speedup:.2f}x faster; "
        f"peak RSS {n}x / 1x (2 workers, process tree): {mem:.2f} [target <= 1.2]"
    )


if __name__ == "__main__":
    main()
