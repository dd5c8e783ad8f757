"""The PNG report of one format's statistics (matplotlib, Agg backend)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output
from corpus_pipeline.inspect_data.render import summary_rows, top_token_rows

__all__ = ["write_report"]


def write_report(stats: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> Path:
    """Writes one format's statistics as a PNG (matplotlib, Agg backend), atomically.

    Left: the summary table (the rows of :func:`summary_rows`) and the most frequent tokens
    with their shares, so [UNK] or stray markup near the top shows at a glance. Right: the
    histograms of instance lengths, masked positions per instance and, for packed data,
    sequences per pack, on a log count scale (linear bars hide everything beside the
    full-length peak).

    Raises:
        UserError: The destination folder does not exist or is not writable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, str, Sequence[int]]] = [
        ("instance length (tokens)", "instances", stats["length_histogram"]),
        ("masked positions per instance", "instances", stats["masked_count_histogram"]),
    ]
    if stats.get("pack_size_histogram") is not None:
        panels.append(("sequences per pack", "packs", stats["pack_size_histogram"]))
    summary = summary_rows(stats)
    top = top_token_rows(stats)
    fig = plt.figure(figsize=(13, max(7.5, 2.6 * len(panels))))
    try:
        grid = fig.add_gridspec(len(panels), 2, width_ratios=(1.05, 1.4))
        _table(fig.add_subplot(grid[:, 0]), summary, top)
        for row, (xlabel, ylabel, hist) in enumerate(panels):
            _log_histogram(fig.add_subplot(grid[row, 1]), hist, xlabel, ylabel)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        final = Path(path)
        try:
            with atomic_output(final, suffix=".png") as tmp, warnings.catch_warnings():
                # Tokens of scripts the default font lacks (CJK, ...) draw as boxes; the
                # console output has them in full.
                warnings.filterwarnings("ignore", message="Glyph .* missing from font")
                fig.savefig(tmp, format="png", dpi=100)
        except OSError as e:
            raise UserError(
                f"{final}: cannot write the report ({e.strerror or e}): "
                "pass --report PATH or --no-report"
            ) from None
    finally:
        plt.close(fig)
    return final


def _table(ax: Any, summary: list[tuple[str, str]], top: list[tuple[str, str, str]]) -> None:
    """Summary rows, then the top tokens, as one two-column text table."""
    ax.axis("off")
    rows: list[tuple[str, str]] = list(summary)
    if top:
        rows.append(("", ""))
        rows.append(("most frequent tokens", "count (share)"))
        rows += [(f"{i}. {t}", f"{c} ({share})") for i, (t, c, share) in enumerate(top, 1)]
    table = ax.table(
        cellText=rows, colLabels=("statistic", "value"), loc="upper center", cellLoc="left"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.15)
    header = len(summary) + 2  # the "most frequent tokens" row, below the column labels
    for (r, _c), cell in table.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if r == 0 or (top and r == header):
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8eef6")


def _log_histogram(ax: Any, hist: Sequence[int], xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    h = np.asarray(hist, np.int64)
    ax.bar(np.arange(h.size), h, width=1.0, color="#4477aa")
    if h.any():
        ax.set_yscale("log")
        ax.set_ylim(0.7, float(h.max()) * 1.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (log)")
    ax.grid(axis="y", which="major", color="#dddddd", linewidth=0.6)
