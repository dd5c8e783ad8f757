"""The statistics as text lines for the console."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["histogram_table", "render_text", "summary_rows", "top_token_rows"]


def _bar(value: int, top: int, width: int = 40) -> str:
    if top <= 0 or value <= 0:
        return ""
    n = value / top * width
    return "█" * int(n) + ("▌" if n - int(n) >= 0.5 else "") or "▏"


def histogram_table(hist: Sequence[int], buckets: int = 8, label: str = "length") -> list[str]:
    """A bucketed text histogram: ``lo-hi  count  pct  bar`` per non-empty range."""
    h = np.asarray(hist, np.int64)
    total = int(h.sum())
    if total == 0:
        return ["  (empty)"]
    nz = np.flatnonzero(h)
    lo_all, hi_all = int(nz[0]), int(nz[-1])
    width = max(1, math.ceil((hi_all - lo_all + 1) / buckets))
    rows = []
    for lo in range(lo_all, hi_all + 1, width):
        hi = min(hi_all, lo + width - 1)
        rows.append((lo, hi, int(h[lo : hi + 1].sum())))
    top = max(c for _, _, c in rows)
    lines = []
    for lo, hi, c in rows:
        rng = f"{lo}" if lo == hi else f"{lo}-{hi}"
        lines.append(f"  {label} {rng:>9}  {c:>9}  {c / total:6.1%}  {_bar(c, top)}")
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def summary_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary table, ``(label, value)`` per row: what a user checks first.

    The same rows are printed by ``inspect`` and drawn in the PNG report.
    """
    packed = stats.get("packs") is not None
    rows = [
        (
            "instances",
            f"{stats['instances']:,}" + (f" in {stats['packs']:,} packs" if packed else ""),
        ),
        ("tokens", f"{stats['tokens']:,} (mean length {_num(stats['mean_length'])})"),
        ("[UNK] share", _pct(stats.get("unk_fraction"))),
        ("tokens per character", _num(stats.get("tokens_per_character"), ".3f")),
        ("padding share", _pct(stats["padding_fraction"])),
    ]
    if packed:
        sizes = stats["pack_size_histogram"]
        rows += [
            ("packing efficiency", _pct(stats["packing_efficiency"])),
            (
                "sequences per pack",
                f"{_num(stats.get('sequences_per_pack'))} ("
                + ", ".join(f"{k}: {c:,}" for k, c in enumerate(sizes) if k and c)
                + ")",
            ),
        ]
    rows += [
        ("NSP random next", _pct(stats["random_next_fraction"])),
        (
            "masked per instance",
            f"{_num(stats['masked_per_instance'])} (of tokens: {_pct(stats['masked_fraction'])})",
        ),
        ("masked -> [MASK]", _pct(stats["mask_token_fraction"])),
        ("masked -> kept", _pct(stats["kept_fraction"])),
        ("masked -> random", _pct(stats["random_fraction"])),
    ]
    return rows


def top_token_rows(stats: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The most frequent tokens: ``(token, count, share)`` per row, most frequent first."""
    return [(str(t), f"{c:,}", f"{share:.2%}") for t, c, share in stats.get("top_tokens") or []]


def render_text(stats: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for one format's statistics: summary table, top tokens,
    histograms."""
    width = max(len(label) for label, _ in summary_rows(stats))
    lines = [f"  {label:<{width}}  {value}" for label, value in summary_rows(stats)]
    top = top_token_rows(stats)
    if top:
        tw = max(len(t) for t, _, _ in top)
        cw = max(len(c) for _, c, _ in top)
        lines.append(f"  most frequent tokens (share of {stats['content_tokens']:,}):")
        lines += [
            f"    {i:>2}. {t:<{tw}}  {c:>{cw}}  {share:>6}"
            for i, (t, c, share) in enumerate(top, 1)
        ]
    lines += [
        "  instance lengths:",
        *histogram_table(stats["length_histogram"]),
        "  masked positions per instance:",
        *histogram_table(stats["masked_count_histogram"], buckets=12, label="masked"),
    ]
    return lines
