"""Benchmark: where extraction spends its CPU, and cleaning per core against wikiextractor's.

In one process, on the pages of the bundled real enwiki excerpt (206 pages, 106 articles;
``--copies`` repeats the list), CPU seconds (``time.process_time``, best of ``--repeat``) of:

1. bz2 decompression of the dump, and our page reader (decompression included);
2. cleaning, ours (``clean_page``: the guards, wikiextractor's ``clean`` as
   ``sources/wikipedia_fastclean.py`` runs it, ``compact``, the scrub) against what
   wikiextractor's CLI worker does per page (``Extractor.extract`` with the CLI's options:
   its own ``clean`` and ``compact``, HTML-safe escaping, a JSON line), on the same pages, both
   in this process: their ratio is cleaning throughput per core; and ``clean_page`` with
   wikiextractor's own ``clean`` and ``Extractor`` put back for the run (the same text, which
   this checks), for the fast clean's own gain;
3. the share of our cleaning spent in each step (timed by wrapping them; the wrapped run is
   separate from the ones timed in 2).

The end-to-end comparison with wikiextractor's CLI (its three processes, start-up and writing
included) is ``bench/extract.py``. Usage: ``python bench/extract_stages.py [--copies 2]``.
"""

from __future__ import annotations

import argparse
import bz2
import io
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import wikiextractor.extract as wx

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources import (
    wikipedia_clean,
    wikipedia_fastclean,
    wikipedia_pages,
    wikipedia_plan,
)
from corpus_pipeline.sources.wikipedia_records import RawPage, is_redirect

CFG = ExtractConfig()


def _nothing(name: str, n: int = 1) -> None:
    del name, n


def cpu(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def read_pages() -> list[RawPage]:
    return [
        p
        for u in wikipedia_plan.plan_units(SAMPLE_WIKI_DUMP, CFG)
        for p in wikipedia_pages.read_pages(u, CFG, count=_nothing)
    ]


def ours(pages: list[RawPage]) -> None:
    for p in pages:
        wikipedia_clean.clean_page(p, CFG, count=_nothing)


def ours_with_wikiextractors_clean(pages: list[RawPage]) -> list[str | None]:
    """``clean_page`` with wikiextractor's own ``clean`` and ``Extractor`` (restored after)."""
    names = ("clean", "FastExtractor")
    saved = [getattr(wikipedia_clean, n) for n in names]
    for n, reference in zip(names, (wx.clean, wx.Extractor), strict=True):
        setattr(wikipedia_clean, n, reference)
    try:
        return texts(pages)
    finally:
        for n, fn in zip(names, saved, strict=True):
            setattr(wikipedia_clean, n, fn)


def texts(pages: list[RawPage]) -> list[str | None]:
    out = []
    for p in pages:
        a = wikipedia_clean.clean_page(p, CFG, count=_nothing)
        out.append(None if a is None else a.text)
    return out


def cli_worker(pages: list[RawPage]) -> None:
    """wikiextractor's CLI per page: articles only, no redirects, Extractor.extract to JSON."""
    out = io.StringIO()
    for p in pages:
        if p.ns != 0 or is_redirect(p):
            continue  # the CLI's reader skips them before any cleaning
        text = wikipedia_clean._xml_escape(p.text)  # the page as the CLI reads it: escaped
        wx.Extractor(str(p.id), str(p.revid or ""), "", p.title, [text], to_json=True).extract(
            out, html_safe=True
        )


def stage_shares(pages: list[RawPage]) -> dict[str, float]:
    """Seconds inside each wrapped step during one run of ours (nested steps overlap)."""
    spent: dict[str, float] = defaultdict(float)
    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name)
        saved.append((owner, name, fn))

        def timed(*a: Any, **k: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[label] += time.process_time() - t

        setattr(owner, name, timed)

    depth = [0]
    fast_cls: Any = wikipedia_fastclean.FastExtractor
    expand = fast_cls.expandTemplates

    def expand_top(self: Any, text: str) -> Any:  # recursive: time the outermost call only
        depth[0] += 1
        t = time.process_time()
        try:
            return expand(self, text)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                spent["expandTemplates"] += time.process_time() - t

    fast_cls.expandTemplates = expand_top
    for name in ("replaceExternalLinks", "unescape", "dropSpans", "dropNested"):
        wrap(wx, name, f"wikiextractor {name}")
    for name in ("_replace_internal_links", "_unescape", "_tag_names"):
        wrap(wikipedia_fastclean, name, f"fastclean {name}")
    for name in ("clean", "compact", "guard_markup", "guard_heading_lines", "_join_paragraphs"):
        label = {"clean": "fastclean clean", "compact": "wikiextractor compact"}.get(name, name)
        wrap(wikipedia_clean, name, label)
    try:
        t = time.process_time()
        ours(pages)
        spent["total clean_page"] = time.process_time() - t
    finally:
        fast_cls.expandTemplates = expand
        for owner, name, fn in saved:
            setattr(owner, name, fn)
    return dict(spent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="times the page list is cleaned")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args(argv)

    raw = SAMPLE_WIKI_DUMP.read_bytes()
    pages = read_pages() * args.copies
    articles = sum(1 for p in pages if p.ns == 0 and not is_redirect(p))
    t_bz2 = cpu(lambda: bz2.decompress(raw), args.repeat) * args.copies
    t_read = cpu(read_pages, args.repeat) * args.copies
    ours(pages[:50])  # warm the regex caches of both before timing
    cli_worker(pages[:50])
    t_ours = cpu(lambda: ours(pages), args.repeat)
    t_cli = cpu(lambda: cli_worker(pages), args.repeat)
    ours_with_wikiextractors_clean(pages[:50])
    t_ref = cpu(lambda: ours_with_wikiextractors_clean(pages), args.repeat)
    same = texts(pages) == ours_with_wikiextractors_clean(pages)
    print(f"{len(pages)} pages ({articles} articles to clean), CPU seconds, best of {args.repeat}")
    print(f"  bz2 decompression           {t_bz2:6.3f}")
    print(f"  our reader (with bz2)       {t_read:6.3f}")
    print(f"  our cleaning (clean_page)   {t_ours:6.3f}")
    print(f"  wikiextractor CLI worker    {t_cli:6.3f}  (Extractor.extract, same pages)")
    print(f"  ours, wikiextractor's clean {t_ref:6.3f}  (same text: {'yes' if same else 'NO'})")
    print(f"cleaning per core, ours / wikiextractor's: {t_cli / t_ours:.2f}x (target >= 1.5)")
    print(f"the fast clean's own gain (clean_page with it / without): {t_ref / t_ours:.2f}x")
    shares = stage_shares(pages)
    total = shares.pop("total clean_page")
    print(f"where our cleaning goes ({total:.3f} s with timers; steps nest):")
    for label, sec in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {label:36s} {sec:6.3f}  {100 * sec / total:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
