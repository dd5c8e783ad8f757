"""The statistics as text lines for the console."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["histogram_table", "render_text"]


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


def render_text(stats: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for one format's statistics."""
    lines = [
        f"  instances            {stats['instances']}"
        + (f" in {stats['packs']} packs" if stats.get("packs") is not None else ""),
        f"  tokens               {stats['tokens']} (mean length {_num(stats['mean_length'])})",
        f"  padding fraction     {_pct(stats['padding_fraction'])}",
    ]
    if stats.get("packs") is not None:
        sizes = stats["pack_size_histogram"]
        lines.append(f"  packing efficiency   {_pct(stats['packing_efficiency'])}")
        lines.append(
            "  sequences per pack   "
            + ", ".join(f"{k}: {c}" for k, c in enumerate(sizes) if k and c)
        )
    lines += [
        f"  NSP random next      {_pct(stats['random_next_fraction'])}",
        f"  masked per instance  {_num(stats['masked_per_instance'])} "
        f"(masked fraction {_pct(stats['masked_fraction'])})",
        f"  masked -> [MASK]     {_pct(stats['mask_token_fraction'])}, kept "
        f"{_pct(stats['kept_fraction'])}, random {_pct(stats['random_fraction'])}",
        "  instance lengths:",
        *histogram_table(stats["length_histogram"]),
        "  masked positions per instance:",
        *histogram_table(stats["masked_count_histogram"], buckets=12, label="masked"),
    ]
    return lines
