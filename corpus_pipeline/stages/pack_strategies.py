"""Histogram packing by optimisation (LP, NNLSHP) and the choice of a strategy.


Each algorithm turns a length histogram into a :class:`PackingStrategy` that covers it
exactly (``stages/pack_histogram.py``); ``stages/packing.py`` fills it with instances.
Algorithms after Krell et al. 2021, "Efficient Sequence Packing without Cross-contamination"
(arXiv 2107.02027); the code is ours.

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
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog, nnls

from corpus_pipeline.errors import UserError
from corpus_pipeline.stages.pack_histogram import (
    Combo,
    PackingStrategy,
    checked_histogram,
    greedy,
    lpfhp,
    make_strategy,
    singletons,
    spfhp,
)

STRATEGIES = ("lp", "nnlshp", "spfhp", "lpfhp")
DEFAULT_STRATEGY = "lp"
# Above this many exact-sum combinations the LP takes more than a few seconds (measured on
# 2 shared cores: 22,102 (S=512, K=3) -> 0.5 s; 87,894 (S=1024, K=3) -> 4.6 s; 123,464
# (S=256, K=4) -> 8.8 s).
MAX_LP_COLUMNS = 100_000
# nnls needs the dense S x C matrix: 512 x 22,102 is 11.3M cells (90 MB of float64).
MAX_NNLS_CELLS = 16_000_000


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
    return greedy(leftover, s, k, worst_fit=False, distribute=True, start=placed)


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
    h = checked_histogram(hist, s, k)
    if k == 1:
        return make_strategy("nnlshp", singletons(h), s, k, t0)
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
    return make_strategy("nnlshp", counts, s, k, t0)


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
    h = checked_histogram(hist, s, k)
    if k == 1 or s == 1 or not h.any():
        return make_strategy("lp", singletons(h), s, k, t0)
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
    for alternative in (
        greedy(h, s, k, worst_fit=False, distribute=True),
        greedy(h, s, k, worst_fit=True),
    ):
        if sum(alternative.values()) < sum(counts.values()):
            counts = alternative
    return make_strategy("lp", counts, s, k, t0)


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
    h = checked_histogram(hist, s, k)
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
