"""The PNG report of one format's statistics (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output

__all__ = ["write_report"]


def write_report(stats: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> Path:
    """Writes the histograms of one format's statistics as a PNG (matplotlib, Agg backend).

    Panels: instance lengths, masked positions per instance and, for packed data, sequences per
    pack. Written atomically.

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
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    try:
        for ax, (xlabel, ylabel, hist) in zip(axes[0], panels, strict=True):
            ax.bar(np.arange(len(hist)), hist, width=1.0, color="#4477aa")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        final = Path(path)
        try:
            with atomic_output(final, suffix=".png") as tmp:
                fig.savefig(tmp, format="png", dpi=100)
        except OSError as e:
            raise UserError(
                f"{final}: cannot write the report ({e.strerror or e}): "
                "pass --report PATH or --no-report"
            ) from None
    finally:
        plt.close(fig)
    return final
