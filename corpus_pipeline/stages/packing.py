"""Sequence packing: up to K instances share one row of S tokens (block-diagonal attention).

Packing works on the *length histogram* (``hist[i]`` = number of instances of length ``i + 1``),
not on the instances: a strategy is a list of (length combination, repeat count) that covers the
histogram exactly, computed once, then filled with real instances. The cost of a strategy
depends on S and K, not on the number of instances. Algorithms after Krell et al. 2021,
"Efficient Sequence Packing without Cross-contamination" (arXiv 2107.02027); the code is ours.

========  =====================================================================================
spfhp     worst-fit decreasing over the histogram; identical packs are kept as counts (~0.002 s)
lpfhp     best-fit decreasing, several copies of a length at once where they fit (~0.002 s)
nnlshp    every multiset of <= K lengths summing to exactly S; ``scipy.optimize.nnls`` gives the
          repeat counts; floor; sequences into slots; leftovers by LPFHP (~20 s at S=512)
lp        cutting stock, ``scipy.optimize.linprog(method="highs-ipm")``; round; sequences into
          slots; leftovers by LPFHP (~0.5 s at S=512, K=3)
========  =====================================================================================

**The LP (the default).** Columns are the exact-sum combinations; their members are *slots*,
and a slot holds any sequence no longer than itself. That is expressed by S - 1 "hand-down"
variables ``d[l]`` (slots of length l used for length l - 1), keeping the matrix sparse:
minimise ``sum(x)`` s.t. ``(A x)[l] + d[l + 1] - d[l] >= hist[l]``. Every pack of <= K
sequences with sum <= S fits a slot pattern of some exact-sum combination (grow one member to
fill the gap), so this LP is the LP relaxation over *all* packs, not only the full ones.
Measured on Wikipedia-512, K=3: the plain covering LP over exact-sum combinations
(``A x >= hist``, surplus members dropped afterwards) gives 99.822 % in 1.0 s and cannot form
a full K-member pack with sum < S (at K=2 it fell to 62.7 % against 80.5 % for LPFHP); adding
every K-member combination with sum S-8..S-1 (171,707 more columns) reached 99.884 % in 15 s;
the hand-down LP reaches 99.884 % (the LP bound) in 0.5 s. A slot-based rounding places the
sequences (longest first, into the shortest free slot that holds them), so packs that would be
left empty disappear; NNLSHP's floored solution is completed the same way.

**Large K.** Exact-sum combinations grow like S^(K-1)/(K!(K-1)!): 22,102 at S=512, K=3,
959,631 at K=4. ``lp`` and ``nnlshp`` refuse (``UserError``) beyond ``MAX_LP_COLUMNS``
combinations (``MAX_NNLS_CELLS`` matrix cells for NNLS's dense matrix). :func:`choose_strategy`
then falls back to the best of the LP with the largest K' <= K that is small, SPFHP and LPFHP,
and says so in ``PackingStrategy.note``. SPFHP and LPFHP themselves run at any K. K=1 needs no
search: every instance is alone.

**Streaming.** Pass 1 builds the histogram (:func:`length_histogram`, a sum over shards), the
strategy is computed once, pass 2 fills it. Two ways to run pass 2 on independent shards:

* Per shard (what :func:`pack_instances` does): each shard is packed with its own histogram.
  Memory is bounded by the shard size; the cost is each shard's rounding leftovers (a few
  hundred sequences packed greedily) and the LP time per shard (~0.5-1 s at S=512).
  ``bench/packing.py --shards N`` measures it against packing the same shards together
  (Wikipedia-512, K=3, 16 random shards): 0.001 points lost at 1M instances per shard, 0.010
  at 100k, 0.16 at 10k (SQuAD-384 at 10k: 0.03). Shards of >= 100k instances are fine. (A
  shard's own efficiency varies far more than that with its share of short sequences:
  99.29..99.95 % for 10k-instance Wikipedia shards.)
* Global: :func:`make_plan` turns the global strategy into a map ``(length, rank) -> (pack id,
  position)``, where ``rank`` is an instance's position among all instances of its length in
  a global deterministic order (for example ascending :func:`order_key`, computed per
  (length, hash range) bucket plus prefix counts of the earlier buckets). Keying every instance
  by its pack id and grouping gives the packs, and :func:`pack_from_slots` builds each one.

**Masked width.** A pack's masked positions must fit ``P + K - 1`` (the packed width M in
FORMATS.md); a pack that overflows is split into smaller packs, never dropped
(``pack/split_overflow``).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog, nnls

from corpus_pipeline.config import PackConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.hashing import rng_for, stable_hash
from corpus_pipeline.records import Instance, Pack

Count = Callable[..., None]
Combo = tuple[int, ...]

STRATEGIES = ("lp", "nnlshp", "spfhp", "lpfhp")
DEFAULT_STRATEGY = "lp"
# Above this many exact-sum combinations the LP takes more than a few seconds (measured on
# 2 shared cores: 22,102 (S=512, K=3) -> 0.5 s; 87,894 (S=1024, K=3) -> 4.6 s; 123,464
# (S=256, K=4) -> 8.8 s).
MAX_LP_COLUMNS = 100_000
# nnls needs the dense S x C matrix: 512 x 22,102 is 11.3M cells (90 MB of float64).
MAX_NNLS_CELLS = 16_000_000


def packed_masked_width(max_predictions: int, max_per_pack: int) -> int:
    """M, the masked-position width of a pack: ``P + K - 1`` (FORMATS.md)."""
    return max_predictions + max_per_pack - 1


# --------------------------------------------------------------------------------------------
# Histograms and strategies
# --------------------------------------------------------------------------------------------


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


def _as_hist(hist: Sequence[int] | np.ndarray, max_seq_length: int) -> np.ndarray:
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


def _finish(
    name: str, counts: Mapping[Combo, int], s: int, k: int, t0: float, note: str = ""
) -> PackingStrategy:
    packs = tuple(sorted(((c, int(n)) for c, n in counts.items() if n > 0), reverse=True))
    return PackingStrategy(name, s, k, packs, time.perf_counter() - t0, note)


def _singletons(hist: np.ndarray) -> Counter[Combo]:
    return Counter({(i + 1,): int(n) for i, n in enumerate(hist) if n})


def _check(s: int, k: int) -> None:
    if s < 1:
        raise ValueError(f"max sequence length must be >= 1, got {s}")
    if k < 1:
        raise UserError(f"--max-per-pack must be >= 1, got {k}")


# --- greedy (SPFHP, LPFHP) ------------------------------------------------------------------


def _greedy(
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
    t0 = time.perf_counter()
    _check(max_seq_length, max_per_pack)
    h = _as_hist(hist, max_seq_length)
    counts = _greedy(h, max_seq_length, max_per_pack, worst_fit=True)
    return _finish("spfhp", counts, max_seq_length, max_per_pack, t0)


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
    t0 = time.perf_counter()
    _check(max_seq_length, max_per_pack)
    h = _as_hist(hist, max_seq_length)
    counts = _greedy(h, max_seq_length, max_per_pack, worst_fit=False, distribute=True)
    return _finish("lpfhp", counts, max_seq_length, max_per_pack, t0)


# --- combinations ---------------------------------------------------------------------------


def count_exact_sum_combinations(max_seq_length: int, max_per_pack: int) -> int:
    """Number of multisets of at most K lengths (>= 1) summing to exactly S.

    That is the number of partitions of S into at most K parts, which equals the number of
    partitions of S into parts of size at most K (conjugation): a K x S coin-change count.
    1,430 at S=128, 12,481 at S=384 and 22,102 at S=512 for K=3.
    """
    ways = [1] + [0] * max_seq_length
    for part in range(1, min(max_per_pack, max_seq_length) + 1):
        for total in range(part, max_seq_length + 1):
            ways[total] += ways[total - part]
    return ways[max_seq_length]


def _partitions(
    total: int, parts: int, largest: int, allowed: np.ndarray | None
) -> Iterator[Combo]:
    """Non-increasing tuples of exactly ``parts`` values in 1..largest summing to ``total``."""
    if parts == 1:
        if 1 <= total <= largest and (allowed is None or allowed[total - 1]):
            yield (total,)
        return
    lowest = -(-total // parts)  # the first part is at least the mean
    for first in range(min(largest, total - parts + 1), lowest - 1, -1):
        if allowed is not None and not allowed[first - 1]:
            continue
        for rest in _partitions(total - first, parts - 1, first, allowed):
            yield (first, *rest)


def exact_sum_combinations(max_seq_length: int, max_per_pack: int) -> list[Combo]:
    """Every multiset of at most K lengths summing to exactly S, as non-increasing tuples."""
    s = max_seq_length
    return [c for parts in range(1, max_per_pack + 1) for c in _partitions(s, parts, s, None)]


def _column_matrix(columns: Sequence[Combo], s: int) -> sparse.csc_matrix:
    """A[l - 1, j] = how often length l occurs in combination j."""
    rows = [x - 1 for c in columns for x in c]
    cols = [j for j, c in enumerate(columns) for _ in c]
    data = np.ones(len(rows))
    return sparse.csc_matrix((data, (rows, cols)), shape=(s, len(columns)))


@dataclass
class _Group:
    """``count`` identical packs: members placed so far and slots still free (slot lengths)."""

    members: list[int]
    free: list[int]
    count: int


def _fill_slots(shapes: Mapping[Combo, int], hist: np.ndarray, s: int, k: int) -> Counter[Combo]:
    """Put the real sequences into the slots of ``shapes``; pack the rest greedily.

    A slot of length L takes one sequence of length <= L. Sequences go longest first into the
    shortest free slot that holds them (any free slot would do for the count: every slot that
    holds a sequence also holds all shorter ones). Slots left empty become padding and packs
    left empty disappear. Sequences left over (rounding down lost their slots) are packed by
    LPFHP's best fit into the room that is left and into new packs: on the real histograms it
    makes no difference against SPFHP (+-4 packs), but with few distinct lengths SPFHP opens
    one pack per sequence of a length (30 x 100 at S=512 -> 30 packs instead of 10).
    """
    slots: dict[int, list[_Group]] = {}  # slot length -> groups with such a free slot (per slot)
    keys: list[int] = []  # slot lengths with free slots, ascending
    groups: list[_Group] = []

    def register(group: _Group) -> None:
        groups.append(group)
        for length in group.free:
            holders = slots.get(length)
            if holders is None:
                holders = slots[length] = []
                bisect.insort(keys, length)
            holders.append(group)

    for combo, n in shapes.items():
        if n:
            register(_Group([], list(combo), int(n)))
    leftover = np.zeros_like(hist)
    for length in range(s, 0, -1):
        todo = int(hist[length - 1])
        while todo:
            i = bisect.bisect_left(keys, length)
            if i == len(keys):
                leftover[length - 1] = todo
                break
            slot = keys[i]
            holders = slots[slot]
            group = holders.pop()
            if not holders:
                del slots[slot]
                keys.pop(i)
            if group.count > todo:  # only some of these packs get this length: split them
                register(_Group(list(group.members), list(group.free), group.count - todo))
                group.count = todo
            group.members.append(length)
            group.free.remove(slot)
            todo -= group.count
    placed: Counter[Combo] = Counter()
    for group in groups:
        if group.members:
            placed[tuple(sorted(group.members, reverse=True))] += group.count
    return _greedy(leftover, s, k, worst_fit=False, distribute=True, start=placed)


def _round_counts(columns: Sequence[Combo], x: np.ndarray, *, nearest: bool) -> Counter[Combo]:
    """Repeat counts rounded to the nearest integer (LP) or down (NNLS).

    Rounding up a count >= k + 0.5 adds slots to spare (empty slots become padding, empty
    packs disappear); rounding down leaves a few sequences for the greedy pass. Measured
    against flooring (packs, LP K=3): Wikipedia-512 8,143,831 vs 8,143,847 (the LP bound is
    8,143,828.9); eight random 10k-sequence shards 40,036 vs 40,227; eight 100k shards
    400,083 vs 400,263. Rounding everything up was worse (8,143,911; 40,869). The NNLS
    solution is not a covering vertex and over-covers when rounded up, so it is floored
    (99.811 % vs 99.808 % for the nearest integer on Wikipedia-512).
    """
    x = np.maximum(x, 0.0)
    # Floor with a tolerance: a count of 2.9999999 from the solver means 3.
    reps = (np.rint(x) if nearest else np.floor(x + 1e-6)).astype(np.int64)
    return Counter({columns[int(j)]: int(reps[j]) for j in np.flatnonzero(reps)})


# --- NNLSHP and LP --------------------------------------------------------------------------


def nnlshp(
    hist: Sequence[int] | np.ndarray, max_seq_length: int, max_per_pack: int
) -> PackingStrategy:
    """Non-negative least squares histogram packing (Krell et al. 2021).

    Repeat counts for every exact-sum combination come from ``scipy.optimize.nnls`` (least
    squares against the histogram); they are floored, the sequences are placed into slots of
    their length or longer, and what is left is packed by LPFHP into the remaining room.

    Args:
        hist: ``hist[i]`` = number of sequences of length ``i + 1``.
        max_seq_length: S.
        max_per_pack: K.

    Returns:
        A strategy covering ``hist`` exactly.

    Raises:
        UserError: S x (number of combinations) exceeds ``MAX_NNLS_CELLS``.
    """
    t0 = time.perf_counter()
    s, k = max_seq_length, max_per_pack
    _check(s, k)
    h = _as_hist(hist, s)
    if k == 1:
        return _finish("nnlshp", _singletons(h), s, k, t0)
    n_columns = count_exact_sum_combinations(s, k)
    if s * n_columns > MAX_NNLS_CELLS:
        raise UserError(
            f"nnlshp needs a dense {s} x {n_columns} matrix for S={s}, K={k}: too large; "
            "use --strategy spfhp or lpfhp, or a smaller --max-per-pack"
        )
    columns = exact_sum_combinations(s, k)
    a = _column_matrix(columns, s).toarray()
    x, _ = nnls(a, h.astype(np.float64), maxiter=50 * a.shape[1])
    counts = _fill_slots(_round_counts(columns, x, nearest=False), h, s, k)
    return _finish("nnlshp", counts, s, k, t0)


def lp(hist: Sequence[int] | np.ndarray, max_seq_length: int, max_per_pack: int) -> PackingStrategy:
    """Cutting-stock LP: the fewest packs that hold the histogram.

    Variables: ``x[j]`` packs of each exact-sum combination j (its members are *slots*), and
    ``d[l]`` slots of length l handed down to length l - 1. Minimise ``sum(x)`` subject to, for
    every length l, ``(A x)[l] + d[l + 1] - d[l] >= hist[l]``: a slot holds any sequence no
    longer than itself. Solved by HiGHS (interior point plus crossover, so a vertex: few
    fractional counts). Round, place sequences into slots, pack the rest with LPFHP. The
    result is never worse than SPFHP or LPFHP (the better of the three is kept).

    Args:
        hist: ``hist[i]`` = number of sequences of length ``i + 1``.
        max_seq_length: S.
        max_per_pack: K.

    Returns:
        A strategy covering ``hist`` exactly.

    Raises:
        UserError: More than ``MAX_LP_COLUMNS`` exact-sum combinations (large K).
    """
    t0 = time.perf_counter()
    s, k = max_seq_length, max_per_pack
    _check(s, k)
    h = _as_hist(hist, s)
    if k == 1 or s == 1 or not h.any():
        return _finish("lp", _singletons(h), s, k, t0)
    n_columns = count_exact_sum_combinations(s, k)
    if n_columns > MAX_LP_COLUMNS:
        raise UserError(
            f"lp would solve over {n_columns:,} combinations for S={s}, K={k}: too many; "
            "use --strategy spfhp or lpfhp, or a smaller --max-per-pack"
        )
    columns = exact_sum_combinations(s, k)
    # d[l] for l = 2..S: +1 on row l - 1 (gains a slot), -1 on row l (gives one away).
    n = s - 1
    down = sparse.csc_matrix(
        (
            np.r_[np.ones(n), -np.ones(n)],
            (np.r_[np.arange(n), np.arange(1, s)], np.r_[np.arange(n), np.arange(n)]),
        ),
        shape=(s, n),
    )
    a = sparse.hstack([_column_matrix(columns, s), down], format="csc")
    result = linprog(
        np.r_[np.ones(len(columns)), np.zeros(n)],
        A_ub=-a,
        b_ub=-h.astype(np.float64),
        bounds=(0, None),
        method="highs-ipm",
    )
    if result.status != 0:  # a covering LP with (S,) among its columns is always feasible
        raise RuntimeError(f"linprog failed on the packing LP: {result.message}")
    counts = _fill_slots(_round_counts(columns, result.x[: len(columns)], nearest=True), h, s, k)
    # On small histograms rounding can cost a pack more than greedy packing (1.5 % of random
    # histograms with S < 60, by one pack); the greedy results cost 2 ms, so keep the best.
    for greedy in (
        _greedy(h, s, k, worst_fit=False, distribute=True),
        _greedy(h, s, k, worst_fit=True),
    ):
        if sum(greedy.values()) < sum(counts.values()):
            counts = greedy
    return _finish("lp", counts, s, k, t0)


_ALGORITHMS: dict[str, Callable[[np.ndarray, int, int], PackingStrategy]] = {
    "lp": lp,
    "nnlshp": nnlshp,
    "spfhp": spfhp,
    "lpfhp": lpfhp,
}


def largest_solvable_k(max_seq_length: int, max_per_pack: int) -> int:
    """The largest K' <= K whose exact-sum combinations stay within ``MAX_LP_COLUMNS``."""
    best = 1
    # Counts grow with K: walk up from 2 (cheap) instead of down from a possibly huge K.
    for k in range(2, min(max_per_pack, max_seq_length) + 1):
        if count_exact_sum_combinations(max_seq_length, k) > MAX_LP_COLUMNS:
            break
        best = k
    return best


def choose_strategy(
    name: str | None, hist: Sequence[int] | np.ndarray, max_seq_length: int, max_per_pack: int
) -> PackingStrategy:
    """Run the named algorithm; where a global solve is too large, fall back clearly.

    When ``lp`` or ``nnlshp`` would enumerate too many combinations (large K), the candidates
    are the LP with the largest K' <= K that is still small (a pack of <= K' sequences is a
    valid pack of <= K), SPFHP and LPFHP; the one with the fewest packs is returned with
    ``note`` saying what happened. Measured on Wikipedia-512: K=4 -> LP with K'=3 (99.88 %
    against 93.96 % for LPFHP), K=12 -> LP with K'=3 (99.88 % against 99.81 %), K=50 -> LPFHP
    (99.95 %).

    Args:
        name: ``lp`` (default when None), ``nnlshp``, ``spfhp`` or ``lpfhp``.
        hist: ``hist[i]`` = number of sequences of length ``i + 1``.
        max_seq_length: S.
        max_per_pack: K.

    Returns:
        The strategy (``max_per_pack`` is K even when it was computed with K').

    Raises:
        UserError: Unknown name or K < 1.
    """
    name = name or DEFAULT_STRATEGY
    if name not in _ALGORITHMS:
        raise UserError(f"--strategy {name!r} is unknown: use one of {', '.join(STRATEGIES)}")
    t0 = time.perf_counter()
    s, k = max_seq_length, max_per_pack
    _check(s, k)
    h = _as_hist(hist, s)
    try:
        return _ALGORITHMS[name](h, s, k)
    except UserError:
        if name not in ("lp", "nnlshp"):
            raise
    k_small = largest_solvable_k(s, k)
    candidates = [lp(h, s, k_small), spfhp(h, s, k), lpfhp(h, s, k)]
    best = min(candidates, key=lambda c: c.num_packs)  # first wins ties: lp, spfhp, lpfhp
    used = f"lp with K'={k_small}" if best is candidates[0] else best.name
    note = (
        f"{name} falls back to {used}: S={s}, K={k} has "
        f"{count_exact_sum_combinations(s, k):,} exact-sum combinations, too many for a "
        f"global solve; best of lp (K'={k_small}) {candidates[0].efficiency:.2%}, "
        f"spfhp {candidates[1].efficiency:.2%}, lpfhp {candidates[2].efficiency:.2%}"
    )
    return PackingStrategy(best.name, s, k, best.packs, time.perf_counter() - t0, note)


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


def bucket_by_length(instances: Iterable[Instance]) -> dict[int, list[Instance]]:
    """Group instances by length (the keys of :func:`assign`'s first argument)."""
    buckets: dict[int, list[Instance]] = {}
    for inst in instances:
        buckets.setdefault(len(inst), []).append(inst)
    return buckets


def order_key(instance: Instance, seed: int) -> int:
    """A stable 64-bit sort key for ordering instances of one length in the global mode."""
    return stable_hash(seed, "pack", instance.key())


def shuffle_bucket(bucket: Sequence[Instance], length: int, seed: int) -> list[Instance]:
    """The order in which :func:`assign` hands out the instances of one length.

    Sorted by ``Instance.key()`` first, so the result does not depend on arrival order, then
    permuted by ``rng_for(seed, "pack", length)``.
    """
    ordered = sorted(bucket, key=Instance.key)
    perm = rng_for(seed, "pack", length).permutation(len(ordered))
    return [ordered[i] for i in perm]


def assign(
    instances_by_length: Mapping[int, Sequence[Instance]],
    strategy: PackingStrategy,
    seed: int,
    *,
    shuffle_packs: bool = True,
) -> Iterator[Pack]:
    """Fill a strategy with real instances.

    Each length bucket is sorted by ``Instance.key()`` and shuffled by
    ``rng_for(seed, "pack", length)``; packs take instances from the front of their buckets.
    The same multiset of instances therefore gives the same packs in any input order.

    Args:
        instances_by_length: ``{length: instances}`` (see :func:`bucket_by_length`).
        strategy: A strategy whose coverage equals the bucket sizes.
        seed: Packing seed (``PackConfig.seed``).
        shuffle_packs: Emit packs in a seeded random order instead of grouped by shape
            (the order only; a pack's members are the same either way).

    Returns:
        An iterator over the packs; instances within a pack are in non-increasing length.

    Raises:
        ValueError: The buckets do not match the strategy's histogram.
    """
    s = strategy.max_seq_length
    have = np.zeros(s, dtype=np.int64)
    for length, bucket in instances_by_length.items():
        if not 1 <= length <= s:
            raise ValueError(f"instance length {length} is outside 1..{s}")
        have[length - 1] = len(bucket)
    if not np.array_equal(have, strategy.coverage()):
        raise ValueError("the instances do not match the histogram the strategy was made for")
    return _assign(instances_by_length, strategy, seed, shuffle_packs)


def _assign(
    instances_by_length: Mapping[int, Sequence[Instance]],
    strategy: PackingStrategy,
    seed: int,
    shuffle_packs: bool,
) -> Iterator[Pack]:
    queues = {
        length: iter(shuffle_bucket(bucket, length, seed))
        for length, bucket in instances_by_length.items()
        if bucket
    }
    combos = [c for c, _ in strategy.packs]
    order = np.repeat(np.arange(len(combos)), [n for _, n in strategy.packs])
    if shuffle_packs:
        order = rng_for(seed, "pack", "order").permutation(order)
    for j in order:
        yield Pack([next(queues[length]) for length in combos[j]])


def split_overflow(pack: Pack, max_masked: int) -> list[Pack]:
    """Split a pack whose masked positions do not fit ``max_masked`` (never drop).

    First-fit decreasing on the instances' masked counts; each piece keeps the members'
    original order.

    Raises:
        ValueError: One instance alone has more masked positions than ``max_masked``.
    """
    sizes = [len(i.masked_lm_positions) for i in pack.instances]
    if sum(sizes) <= max_masked:
        return [pack]
    groups: list[list[int]] = []
    loads: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if sizes[i] > max_masked:
            raise ValueError(
                f"an instance has {sizes[i]} masked positions, more than the pack width {max_masked}"
            )
        for g, load in enumerate(loads):
            if load + sizes[i] <= max_masked:
                groups[g].append(i)
                loads[g] += sizes[i]
                break
        else:
            groups.append([i])
            loads.append(sizes[i])
    return [Pack([pack.instances[i] for i in sorted(g)]) for g in groups]


def finalize_pack(
    pack: Pack, *, max_seq_length: int, max_per_pack: int, max_masked: int, count: Count
) -> Iterator[Pack]:
    """Check a pack, split it if its masked positions overflow, and count it.

    Counters: ``pack/instances``, ``pack/packs``, ``pack/padded_packs``, ``pack/real_tokens``,
    ``pack/slots`` (packs x S) and ``pack/split_overflow`` (packs that had to be split).

    Raises:
        ValueError: The pack is longer than S or has more than K members (a caller bug).
    """
    if pack.length > max_seq_length or len(pack.instances) > max_per_pack:
        raise ValueError(
            f"a pack of {len(pack.instances)} instances and {pack.length} tokens does not fit "
            f"S={max_seq_length}, K={max_per_pack}"
        )
    pieces = split_overflow(pack, max_masked)
    if len(pieces) > 1:
        count("pack/split_overflow")
    for piece in pieces:
        count("pack/instances", len(piece.instances))
        count("pack/packs")
        count("pack/real_tokens", piece.length)
        count("pack/slots", max_seq_length)
        if piece.length < max_seq_length:
            count("pack/padded_packs")
        yield piece


def pack_instances(
    instances: Iterable[Instance],
    cfg: PackConfig,
    max_seq_length: int,
    max_predictions: int,
    *,
    count: Count,
    on_strategy: Callable[[PackingStrategy], None] | None = None,
) -> Iterator[Pack]:
    """Pack a batch (a shard) of instances: histogram, strategy, assignment, overflow split.

    Memory is the batch itself; a caller that packs shards independently calls this once per
    shard (see the module docstring for the efficiency cost and the global alternative).

    Args:
        instances: The instances, each at most S tokens.
        cfg: K, strategy name and seed.
        max_seq_length: S.
        max_predictions: P; packs hold at most ``P + K - 1`` masked positions.
        count: Counter callback (see :func:`finalize_pack`); a fallback to another algorithm
            is counted as ``pack/fallback:<name>``.
        on_strategy: Called once with the strategy (its time and efficiency, for the report).

    Returns:
        An iterator over the packs.
    """
    buckets = bucket_by_length(instances)
    hist = length_histogram(
        (length for length, b in buckets.items() for _ in range(len(b))), max_seq_length
    )
    strategy = choose_strategy(cfg.strategy, hist, max_seq_length, cfg.max_per_pack)
    if strategy.note:
        count(f"pack/fallback:{strategy.name}")
    if on_strategy is not None:
        on_strategy(strategy)
    max_masked = packed_masked_width(max_predictions, cfg.max_per_pack)
    for pack in assign(buckets, strategy, cfg.seed):
        yield from finalize_pack(
            pack,
            max_seq_length=max_seq_length,
            max_per_pack=cfg.max_per_pack,
            max_masked=max_masked,
            count=count,
        )


def unpack(packs: Iterable[Pack]) -> Iterator[Instance]:
    """The instances of the packs, in pack order."""
    for pack in packs:
        yield from pack.instances


# --------------------------------------------------------------------------------------------
# Array layout (MLPerf packed HDF5) and the global plan
# --------------------------------------------------------------------------------------------


@dataclass
class PackedArrays:
    """One pack in the MLPerf layout (FORMATS.md, "HDF5, packed").

    Attributes:
        input_ids: int32, the members concatenated, no padding.
        segment_ids: int8, same layout.
        masked_lm_positions: int32, each member's positions plus the length of earlier members.
        masked_lm_ids: int32.
        input_lengths: int32[k], each member's length (``packed_input_len``).
        masked_lengths: int32[k], each member's number of masked positions.
        next_sentence_labels: int8[k].
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    input_lengths: np.ndarray
    masked_lengths: np.ndarray
    next_sentence_labels: np.ndarray


def pack_to_arrays(pack: Pack) -> PackedArrays:
    """Concatenate a pack's members; masked positions are offset by earlier members' lengths."""
    members = pack.instances
    lengths = np.array([len(i) for i in members], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)

    def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

    return PackedArrays(
        input_ids=cat([np.asarray(i.input_ids) for i in members], np.int32),
        segment_ids=cat([np.asarray(i.segment_ids) for i in members], np.int8),
        masked_lm_positions=cat(
            [
                np.asarray(i.masked_lm_positions, np.int64) + o
                for i, o in zip(members, offsets, strict=True)
            ],
            np.int32,
        ),
        masked_lm_ids=cat([np.asarray(i.masked_lm_ids) for i in members], np.int32),
        input_lengths=lengths,
        masked_lengths=np.array([len(i.masked_lm_positions) for i in members], dtype=np.int32),
        next_sentence_labels=np.array([i.next_sentence_label for i in members], dtype=np.int8),
    )


def arrays_to_pack(arrays: PackedArrays) -> Pack:
    """The inverse of :func:`pack_to_arrays` (for readers of the packed layout)."""
    members = []
    start = mstart = 0
    for length, m, label in zip(
        arrays.input_lengths.tolist(),
        arrays.masked_lengths.tolist(),
        arrays.next_sentence_labels.tolist(),
        strict=True,
    ):
        members.append(
            Instance(
                input_ids=np.asarray(arrays.input_ids[start : start + length], np.int32),
                segment_ids=np.asarray(arrays.segment_ids[start : start + length], np.int8),
                masked_lm_positions=np.asarray(
                    arrays.masked_lm_positions[mstart : mstart + m], np.int32
                )
                - start,
                masked_lm_ids=np.asarray(arrays.masked_lm_ids[mstart : mstart + m], np.int32),
                next_sentence_label=int(label),
            )
        )
        start += length
        mstart += m
    return Pack(members)


@dataclass(frozen=True)
class PackPlan:
    """Where the rank-th instance of each length goes in a global strategy.

    Packs are numbered in strategy order (``strategy.packs``); pack ``p`` of shape ``combo``
    takes, for each length in ``combo``, the next instances of that length in rank order.
    With ranks taken from :func:`assign`'s bucket order and ``shuffle_packs=False`` this is
    exactly the assignment :func:`assign` makes.
    """

    strategy: PackingStrategy
    # per length: (first rank of each segment, pack id of the segment's first pack,
    #              members of that length per pack, positions of those members in the combo)
    segments: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]]]]

    @property
    def num_packs(self) -> int:
        """Number of pack ids (``0 .. num_packs - 1``)."""
        return self.strategy.num_packs

    def slots(
        self, length: int, ranks: np.ndarray | Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`slot`: pack ids and positions for many ranks of one length."""
        r = np.asarray(ranks, dtype=np.int64)
        if length not in self.segments:
            raise ValueError(f"the strategy has no sequences of length {length}")
        starts, first_pack, per_pack, positions = self.segments[length]
        total = int(starts[-1])
        if r.size and (r.min() < 0 or r.max() >= total):
            raise ValueError(f"rank out of range 0..{total - 1} for length {length}")
        seg = np.searchsorted(starts, r, side="right") - 1
        q = r - starts[seg]
        pack_ids = first_pack[seg] + q // per_pack[seg]
        which = q % per_pack[seg]
        pos = np.array(
            [positions[g][w] for g, w in zip(seg.tolist(), which.tolist(), strict=True)], np.int64
        )
        return pack_ids, pos

    def slot(self, length: int, rank: int) -> tuple[int, int]:
        """(pack id, position in the pack) of the ``rank``-th instance of ``length``."""
        p, q = self.slots(length, [rank])
        return int(p[0]), int(q[0])


def make_plan(strategy: PackingStrategy) -> PackPlan:
    """Index a strategy for the global two-pass mode (memory: O(distinct pack shapes))."""
    acc: dict[int, list[tuple[int, int, int, tuple[int, ...]]]] = {}
    rank_of: dict[int, int] = {}
    pack_id = 0
    for combo, n in strategy.packs:
        for length in sorted(set(combo), reverse=True):
            positions = tuple(i for i, x in enumerate(combo) if x == length)
            first = rank_of.get(length, 0)
            acc.setdefault(length, []).append((first, pack_id, len(positions), positions))
            rank_of[length] = first + n * len(positions)
        pack_id += n
    segments = {}
    for length, rows in acc.items():
        starts = np.array([r[0] for r in rows] + [rank_of[length]], dtype=np.int64)
        segments[length] = (
            starts,
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.int64),
            [r[3] for r in rows],
        )
    return PackPlan(strategy, segments)


def pack_from_slots(members: Iterable[tuple[int, Instance]]) -> Pack:
    """Build one pack from ``(position, instance)`` pairs grouped by pack id (global mode)."""
    ordered = sorted(members, key=lambda m: m[0])
    if [p for p, _ in ordered] != list(range(len(ordered))):
        raise ValueError("a pack's positions must be 0..k-1, each once")
    return Pack([inst for _, inst in ordered])
