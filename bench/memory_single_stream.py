"""Memory of ``corpus-pipeline extract`` on single-stream dumps of growing size.

A single-stream ``.xml.bz2`` cannot be split, so every worker decompresses it and cleans its
own chunks of pages as it reads (``beam/extract_read.py``, ``ReadShare``). Peak memory must not
grow with the dump, and FnApiRunner keeps a bundle's outputs in memory: the documents of each
chunk are spilled and only references are emitted. This script checks that the peak stays
flat as the dump grows.

The input is the bundled enwiki excerpt replicated ``k`` times (copy ``k`` of a page gets a new
id and title, as in ``corpus_pipeline.testing.multistream``) into one bz2 stream, cached in
``.bench/``. Each size runs ``corpus-pipeline extract`` in a fresh process tree, watched from
``/proc``: printed are wall time, the peak RSS of the largest single process (``VmHWM``) and
of the whole tree, and the ratio of the largest size's peak to the smallest's (target: within
10 %, i.e. a ratio <= 1.10).

    python bench/memory_single_stream.py [--copies 1,4,16] [--workers 2]
"""

from __future__ import annotations

import argparse
import bz2
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, child_env, cli, print_table, run_measured  # noqa: E402

from corpus_pipeline.resources import SAMPLE_WIKI_DUMP  # noqa: E402
from corpus_pipeline.testing.multistream import (  # noqa: E402
    _page_copy,
    read_dump_bytes,
    split_dump,
)

MB = 2**20


def single_stream_dump(copies: int) -> tuple[Path, int]:
    """The cached single-stream ``.xml.bz2`` of ``copies`` copies of the excerpt; XML bytes."""
    header, pages, footer = split_dump(read_dump_bytes(SAMPLE_WIKI_DUMP))
    max_id = max(_page_copy(p, 0, 0)[1] for p in pages)
    stride = 10 ** len(str(max_id))
    path = CACHE / f"single-x{copies}-pages-articles.xml.bz2"
    size = len(header) + len(footer)
    parts = []
    for copy in range(copies):
        for raw in pages:
            xml = _page_copy(raw, copy, stride)[0]
            size += len(xml)
            if not path.exists():
                parts.append(xml)
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        print(f"building {path.name} ({size / MB:,.0f} MB XML, bz2 -9, once) ...", flush=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bz2.compress(header + b"".join(parts) + footer, 9))
        tmp.replace(path)
    return path, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", default="1,4,16", help="comma-separated sizes (default 1,4,16)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sizes = [int(c) for c in args.copies.split(",")]

    rows = []
    peaks = {}
    for copies in sizes:
        dump, xml_bytes = single_stream_dump(copies)
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix="memss-"))
        try:
            cmd = cli(
                "extract",
                "--input",
                str(dump),
                "--output",
                str(tmp / "docs"),
                "--workers",
                str(args.workers),
            )
            r = run_measured(cmd, env=child_env(), interval=0.1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        peaks[copies] = r.max_proc_rss_mb
        rows.append(
            [
                f"{copies}x",
                xml_bytes / MB,
                r.wall,
                r.max_proc_rss_mb,
                r.tree_rss_mb,
            ]
        )
        print(f"  {copies}x done: {r.wall:.1f} s, max proc {r.max_proc_rss_mb:.0f} MiB", flush=True)
    print()
    print_table(["size", "XML MB", "wall s", "max proc MiB", "tree MiB"], rows)
    lo, hi = min(sizes), max(sizes)
    ratio = peaks[hi] / peaks[lo]
    print(
        f"\nlargest process, {hi}x / {lo}x: {ratio:.2f} "
        f"({'within' if ratio <= 1.10 else 'OVER'} the 10 % target)"
    )


if __name__ == "__main__":
    main()
