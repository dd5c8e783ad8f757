"""What every format's checks share: the dataset facts they check against, the result of one
check, per-file tallies of bad records, and the value checks of padded unpacked rows (the DLE
HDF5 and Google TFRecord schemas hold the same matrices).

A problem is one line naming the file at fault (:func:`line`); a check that finds the same
fault in many records reports it once, with a count and the first record (:class:`Tally`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Rows (HDF5, TFRecord records) or sequences (mmap) checked together: vectorised checks,
# bounded memory.
BLOCK = 1024
Counts = tuple[int, int]
"""(records, instances) a shard was found to hold."""


@dataclass(frozen=True)
class CheckSpec:
    """What every check needs to know about the dataset (picklable for the process pool).

    Attributes:
        out_dir: The dataset folder.
        name: Shard name prefix.
        packed: Rows are packs.
        s: max_seq_length.
        p: max_predictions (per sequence).
        k: max_per_pack (1 unpacked).
        vocab_size: Ids must be below it.
        quick: Skip the SHA-256 of every file.
    """

    out_dir: str
    name: str
    packed: bool
    s: int
    p: int
    k: int
    vocab_size: int
    quick: bool

    @property
    def m(self) -> int:
        """Masked width of a packed TFRecord row: P + K - 1."""
        return self.p + self.k - 1


@dataclass
class CheckResult:
    """What the checks of one shard (in one format) found.

    Attributes:
        problems: One line per problem.
        files: Files checked.
        records: Records read.
    """

    problems: list[str] = field(default_factory=list)
    files: int = 0
    records: int = 0


class Tally:
    """Counts records failing each check of one file; reports one line per check."""

    def __init__(self, unit: str = "record") -> None:
        self.unit = unit
        self.bad: dict[str, list[int]] = {}

    def add(self, msg: str, rows_bad: Any, row0: int) -> None:
        """Counts the rows of a block (first row ``row0``) where ``rows_bad`` is true."""
        n = int(np.count_nonzero(rows_bad))
        if n:
            entry = self.bad.setdefault(msg, [0, row0 + int(np.argmax(rows_bad))])
            entry[0] += n

    def flag(self, msg: str, row: int) -> None:
        """Counts one bad row."""
        entry = self.bad.setdefault(msg, [0, row])
        entry[0] += 1

    def lines(self, path: str) -> list[str]:
        """One problem line per failed check, naming ``path``, the count and the first row."""
        u = self.unit
        return [
            f"{path}: {msg} ({n} {u}{'s' if n != 1 else ''}, first: {u} {first})"
            for msg, (n, first) in self.bad.items()
        ]


class SubTally:
    """A tally view whose row numbers are positions in a selection of a block."""

    def __init__(self, tally: Tally, sel: np.ndarray, row0: int) -> None:
        self.tally, self.sel, self.row0 = tally, sel, row0

    def add(self, msg: str, rows_bad: Any, row0: int) -> None:
        """:meth:`Tally.add` for the selected rows (``row0`` is the view's own)."""
        del row0
        full = np.zeros(int(self.sel.max()) + 1, dtype=bool)
        full[self.sel] = rows_bad
        self.tally.add(msg, full, self.row0)


def line(path: str | Path, msg: str) -> str:
    """``path: msg``, without repeating a path the message already starts with."""
    p = str(path)
    msg = str(msg).strip().splitlines()[0] if str(msg).strip() else "error"
    if msg.startswith(p + ": "):
        msg = msg[len(p) + 2 :]
    return f"{p}: {msg}"


def check_unpacked_rows(
    t: Tally | SubTally,
    spec: CheckSpec,
    row0: int,
    ids: np.ndarray,
    mask: np.ndarray,
    seg: np.ndarray,
    pos: np.ndarray,
    mids: np.ndarray,
    nsp: np.ndarray,
    weights: np.ndarray | None = None,
) -> None:
    """Value checks of padded unpacked rows (DLE HDF5 or Google TFRecord).

    ``weights`` (TFRecord) marks the real predictions; without it (HDF5) the real predictions
    are those before the first zero position, which is how DLE's loader reads them.
    """
    s, p, v = ids.shape[1], pos.shape[1], spec.vocab_size
    lens = np.count_nonzero(mask, axis=1)
    valid_cols = np.arange(s)[None, :] < lens[:, None]
    t.add("input_mask is not ones followed by zeros", ~(mask == valid_cols).all(axis=1), row0)
    t.add("empty instance (input_mask all zero)", lens == 0, row0)
    t.add(f"token id outside 0..{v - 1} in input_ids", ((ids < 0) | (ids >= v)).any(axis=1), row0)
    t.add("input_ids not 0 on padding", ((ids != 0) & ~valid_cols).any(axis=1), row0)
    t.add("segment_ids not in {0, 1}", ((seg != 0) & (seg != 1)).any(axis=1), row0)
    t.add("segment_ids not 0 on padding", ((seg != 0) & ~valid_cols).any(axis=1), row0)
    cols = np.arange(p)[None, :]
    if weights is None:
        real = np.cumprod(pos != 0, axis=1).astype(bool)
        t.add(
            "masked_lm_positions: non-zero after the zero padding",
            ((pos != 0) & ~real).any(axis=1),
            row0,
        )
    else:
        nreal = np.count_nonzero(weights > 0, axis=1)
        real = cols < nreal[:, None]
        t.add(
            "masked_lm_weights is not 1.0 for the real predictions followed by 0.0",
            ~(weights == real.astype(weights.dtype)).all(axis=1),
            row0,
        )
        t.add("masked_lm_positions not 0 on padding", ((pos != 0) & ~real).any(axis=1), row0)
    t.add(
        "masked position outside 1..length-1 (the [CLS] or padding)",
        (real & ((pos <= 0) | (pos >= lens[:, None]))).any(axis=1),
        row0,
    )
    t.add(
        "masked positions not sorted (strictly increasing)",
        (real[:, 1:] & (pos[:, 1:] <= pos[:, :-1])).any(axis=1),
        row0,
    )
    t.add(
        f"masked_lm_ids outside 0..{v - 1}",
        (real & ((mids < 0) | (mids >= v))).any(axis=1),
        row0,
    )
    t.add("masked_lm_ids not 0 on padding", ((mids != 0) & ~real).any(axis=1), row0)
    t.add("next_sentence_labels not in {0, 1}", (nsp != 0) & (nsp != 1), row0)
