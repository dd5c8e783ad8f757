"""Length histograms, the strategy record, and the greedy packing algorithms (SPFHP, LPFHP).

A strategy is a list of (length combination, repeat count) that covers a length histogram
exactly (``hist[i]`` = number of instances of length ``i + 1``); see ``stages/packing.py`` for
how it is filled with instances and ``stages/pack_strategies.py`` for the LP and NNLS
algorithms and the choice between them. Algorithms after Krell et al. 2021, "Efficient
Sequence Packing without Cross-contamination" (arXiv 2107.02027); the code is ours.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from corpus_pipeline.errors import UserError

Combo = tuple[int, ...]


def length_histogram(lengths: Iterable[int], max_seq_length: int) -> np.ndarray:
    """The length histogram: ``hist[i]`` = number of sequences of length ``i + 1``.

    Args:
        lengths: Sequence lengths, each in ``1..max_seq_length``.
        max_seq_length: S.

    Returns:
        int64[S]. Histograms of shards add up to the histogram of their union.

    Raises:
        ValueError: A length is outside ``1..S`` (an upstream bug, not a user mistake).
    """
    arr = np.fromiter((int(n) for n in lengths), dtype=np.int64)
    if arr.size and (arr.min() < 1 or arr.max() > max_seq_length):
        bad = int(arr.min()) if arr.min() < 1 else int(arr.max())
        raise ValueError(f"sequence length {bad} is outside 1..{max_seq_length}")
    return np.bincount(arr - 1, minlength=max_seq_length).astype(np.int64)


def as_histogram(hist: Sequence[int] | np.ndarray, max_seq_length: int) -> np.ndarray:
    """A caller's histogram as int64[S], checked (whole, non-negative counts, none beyond S).

    Raises:
        ValueError: The histogram is malformed or has sequences longer than S.
    """
    h = np.asarray(hist)
    if h.ndim != 1 or (h.size and (not np.issubdtype(h.dtype, np.number) or h.min() < 0)):
        raise ValueError("a length histogram is a 1-D list of non-negative counts")
    if h.size and not np.array_equal(h, np.round(h)):
        raise ValueError("a length histogram holds whole counts")
    if h.size > max_seq_length and h[max_seq_length:].any():
        raise ValueError(
            f"the histogram has sequences longer than the max sequence length {max_seq_length}"
        )
    out = np.zeros(max_seq_length, dtype=np.int64)
    n = min(h.size, max_seq_length)
    out[:n] = h[:n].astype(np.int64)
    return out


@dataclass(frozen=True)
class PackingStrategy:
    """A packing strategy for one length histogram and what it achieves.

    Attributes:
        name: The algorithm that produced it (``lp``, ``nnlshp``, ``spfhp``, ``lpfhp``).
        max_seq_length: S.
        max_per_pack: K.
        packs: ``((lengths, repeat count), ...)``, lengths in non-increasing order, sorted;
            covers the histogram exactly.
        seconds: Wall time spent computing it (metadata only; never affects the packs).
        note: Why a different algorithm than the one asked for was used, else empty.
    """

    name: str
    max_seq_length: int
    max_per_pack: int
    packs: tuple[tuple[Combo, int], ...]
    seconds: float = 0.0
    note: str = ""

    @property
    def num_packs(self) -> int:
        """Number of packs (rows of S tokens)."""
        return sum(n for _, n in self.packs)

    @property
    def num_sequences(self) -> int:
        """Number of sequences packed."""
        return sum(len(c) * n for c, n in self.packs)

    @property
    def real_tokens(self) -> int:
        """Tokens that are not padding."""
        return sum(sum(c) * n for c, n in self.packs)

    @property
    def padded_packs(self) -> int:
        """Packs whose lengths sum to less than S."""
        return sum(n for c, n in self.packs if sum(c) < self.max_seq_length)

    @property
    def efficiency(self) -> float:
        """Real tokens / (packs x S); 0 for an empty histogram."""
        slots = self.num_packs * self.max_seq_length
        return self.real_tokens / slots if slots else 0.0

    @property
    def efficiency_unpacked(self) -> float:
        """Real tokens / (sequences x S): the efficiency without packing."""
        slots = self.num_sequences * self.max_seq_length
        return self.real_tokens / slots if slots else 0.0

    @property
    def speedup(self) -> float:
        """Theoretical speed-up over unpacked rows: sequences / packs."""
        return self.num_sequences / self.num_packs if self.num_packs else 1.0

    def coverage(self) -> np.ndarray:
        """The histogram this strategy covers (int64[S])."""
        out = np.zeros(self.max_seq_length, dtype=np.int64)
        for combo, n in self.packs:
            for length in combo:
                out[length - 1] += n
        return out

    def summary(self) -> dict[str, object]:
        """The numbers a run reports (manifest, report)."""
        return {
            "strategy": self.name,
            "max_seq_length": self.max_seq_length,
            "max_per_pack": self.max_per_pack,
            "sequences": self.num_sequences,
            "packs": self.num_packs,
            "padded_packs": self.padded_packs,
            "efficiency_before": round(self.efficiency_unpacked, 6),
            "efficiency_after": round(self.efficiency, 6),
            "speedup": round(self.speedup, 4),
            "seconds": round(self.seconds, 3),
            "note": self.note,
        }


def make_strategy(
    name: str, counts: Mapping[Combo, int], s: int, k: int, t0: float, note: str = ""
) -> PackingStrategy:
    """The strategy of ``counts`` (pack shape -> repeat count), timed from ``t0``."""
    packs = tuple(sorted(((c, int(n)) for c, n in counts.items() if n > 0), reverse=True))
    return PackingStrategy(name, s, k, packs, time.perf_counter() - t0, note)


def singletons(hist: np.ndarray) -> Counter[Combo]:
    """Every sequence alone in its pack (K=1, or nothing to search)."""
    return Counter({(i + 1,): int(n) for i, n in enumerate(hist) if n})


def check_sizes(s: int, k: int) -> None:
    """Refuse S < 1 (a caller bug) and K < 1 (a user's ``--max-per-pack``).

    Raises:
        ValueError: S < 1.
        UserError: K < 1.
    """
    if s < 1:
        raise ValueError(f"max sequence length must be >= 1, got {s}")
    if k < 1:
        raise UserError(f"--max-per-pack must be >= 1, got {k}")


def checked_histogram(hist: Sequence[int] | np.ndarray, s: int, k: int) -> np.ndarray:
    """:func:`check_sizes`, then the histogram as int64[S] (:func:`as_histogram`).

    Raises:
        ValueError: S < 1, or a malformed histogram.
        UserError: K < 1.
    """
    check_sizes(s, k)
    return as_histogram(hist, s)


# --- greedy (SPFHP, LPFHP) ------------------------------------------------------------------


def greedy(
    hist: np.ndarray,
    s: int,
    k: int,
    *,
    worst_fit: bool,
    distribute: bool = False,
    start: Mapping[Combo, int] | None = None,
) -> Counter[Combo]:
    """Decreasing worst-fit / best-fit over histogram counts.

    Open packs are grouped by free room, identical packs as one (combination, count) entry, so
    the work depends on the number of distinct packs, not on the number of sequences. ``start``
    seeds the open packs (the padded packs left by rounding an LP/NNLS solution).
    ``distribute`` puts as many copies of the current length into a pack as fit at once
    (LPFHP's variant), so a run of equal short lengths shares packs instead of spreading out.

    Args:
        hist: int64[S], as from :func:`as_histogram`.
        s: S.
        k: K.
        worst_fit: Worst fit (SPFHP) instead of best fit (LPFHP).
        distribute: Several copies of a length into one pack at once (LPFHP).
        start: Open packs to begin with.

    Returns:
        Pack shape -> repeat count, covering ``hist`` plus ``start``.
    """
    done: Counter[Combo] = Counter()
    rooms: dict[int, dict[Combo, int]] = {}
    keys: list[int] = []  # rooms with open packs, ascending

    def push(combo: Combo, n: int) -> None:
        room = s - sum(combo)
        if len(combo) >= k or room == 0:
            done[combo] += n
            return
        group = rooms.get(room)
        if group is None:
            group = rooms[room] = {}
            bisect.insort(keys, room)
        group[combo] = group.get(combo, 0) + n

    for combo, n in (start or {}).items():
        if n:
            push(combo, n)
    for length in range(s, 0, -1):
        todo = int(hist[length - 1])
        while todo:
            if worst_fit:
                i = len(keys) - 1 if keys and keys[-1] >= length else -1
            else:
                i = bisect.bisect_left(keys, length)
                i = i if i < len(keys) else -1
            if i < 0:  # fits nowhere: open new packs
                repeat = min(s // length, k, todo) if distribute else 1
                push((length,) * repeat, todo // repeat)
                todo -= todo // repeat * repeat
                continue
            room = keys[i]
            group = rooms[room]
            combo, n = group.popitem()  # LIFO among packs with the same room
            if not group:
                del rooms[room]
                keys.pop(i)
            repeat = min(room // length, k - len(combo), todo) if distribute else 1
            m = min(n, todo // repeat)
            if n > m:
                push(combo, n - m)
            push(tuple(sorted((*combo, *(length,) * repeat), reverse=True)), m)
            todo -= m * repeat
    for group in rooms.values():
        done.update(group)
    return done


def _greedy_strategy(
    name: str,
    hist: Sequence[int] | np.ndarray,
    s: int,
    k: int,
    *,
    worst_fit: bool,
    distribute: bool = False,
) -> PackingStrategy:
    """Check the inputs, pack greedily (:func:`greedy`) and time it as the strategy ``name``."""
    t0 = time.perf_counter()
    h = checked_histogram(hist, s, k)
    return make_strategy(
        name, greedy(h, s, k, worst_fit=worst_fit, distribute=distribute), s, k, t0
    )


def spfhp(
    hist: Sequence[int] | np.ndarray, max_seq_length: int, max_per_pack: int
) -> PackingStrategy:
    """Shortest-pack-first histogram packing: worst-fit decreasing (Krell et al. 2021).

    Args:
        hist: ``hist[i]`` = number of sequences of length ``i + 1``.
        max_seq_length: S.
        max_per_pack: K.

    Returns:
        A strategy covering ``hist`` exactly.
    """
    return _greedy_strategy("spfhp", hist, max_seq_length, max_per_pack, worst_fit=True)


def lpfhp(
    hist: Sequence[int] | np.ndarray, max_seq_length: int, max_per_pack: int
) -> PackingStrategy:
    """Longest-pack-first histogram packing: best-fit decreasing (Krell et al. 2021).

    A length goes into the fullest pack it fits, as many copies at once as fit there.

    Args:
        hist: ``hist[i]`` = number of sequences of length ``i + 1``.
        max_seq_length: S.
        max_per_pack: K.

    Returns:
        A strategy covering ``hist`` exactly.
    """
    return _greedy_strategy(
        "lpfhp", hist, max_seq_length, max_per_pack, worst_fit=False, distribute=True
    )
