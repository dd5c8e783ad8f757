"""Sequence packing: up to K instances share one row of S tokens (block-diagonal attention).

Packing works on the *length histogram* (``hist[i]`` = number of instances of length ``i + 1``),
not on the instances: a strategy is a list of (length combination, repeat count) that covers the
histogram exactly, computed once (``stages/pack_strategies.py``, :func:`choose_strategy`), then
filled with real instances here. The cost of a strategy depends on S and K, not on the number
of instances.

**Per shard.** Pass 1 builds the histogram (:func:`length_histogram`), the strategy is
computed once, pass 2 fills it. :func:`pack_instances` packs each shard with its own
histogram. Memory is bounded by the shard size; the cost is each shard's rounding leftovers
(a few hundred sequences packed greedily) and the LP time per shard (~0.5-1 s at S=512).
``bench/packing.py --shards N`` measures it against packing the same shards together
(Wikipedia-512, K=3, 16 random shards): 0.001 points lost at 1M instances per shard, 0.010
at 100k, 0.16 at 10k (SQuAD-384 at 10k: 0.03). Shards of >= 100k instances are fine. (A
shard's own efficiency varies far more than that with its share of short sequences:
99.29..99.95 % for 10k-instance Wikipedia shards.)

**Masked width.** A pack's masked positions must fit ``P + K - 1`` (the packed width M of
the README's "Output layout"); a pack that overflows is split into smaller packs, never dropped
(``pack/split_overflow``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from corpus_pipeline.config import PackConfig
from corpus_pipeline.hashing import rng_for
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.stages.pack_histogram import PackingStrategy, length_histogram
from corpus_pipeline.stages.pack_strategies import choose_strategy

Count = Callable[..., None]


def packed_masked_width(max_predictions: int, max_per_pack: int) -> int:
    """M, the masked-position width of a pack: ``P + K - 1`` (README, "Output layout")."""
    return max_predictions + max_per_pack - 1


def bucket_by_length(instances: Iterable[Instance]) -> dict[int, list[Instance]]:
    """Group instances by length (the keys of :func:`assign`'s first argument)."""
    buckets: dict[int, list[Instance]] = {}
    for inst in instances:
        buckets.setdefault(len(inst), []).append(inst)
    return buckets


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
) -> Iterator[Pack]:
    """Fill a strategy with real instances.

    Each length bucket is sorted by ``Instance.key()`` and shuffled by
    ``rng_for(seed, "pack", length)``; packs take instances from the front of their buckets.
    The same multiset of instances therefore gives the same packs in any input order.

    Args:
        instances_by_length: ``{length: instances}`` (see :func:`bucket_by_length`).
        strategy: A strategy whose coverage equals the bucket sizes.
        seed: Packing seed (``PackConfig.seed``).

    Returns:
        An iterator over the packs, in an order drawn from ``rng_for(seed, "pack", "order")``;
        instances within a pack are in non-increasing length.

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
    return _assign(instances_by_length, strategy, seed)


def _assign(
    instances_by_length: Mapping[int, Sequence[Instance]],
    strategy: PackingStrategy,
    seed: int,
) -> Iterator[Pack]:
    queues = {
        length: iter(shuffle_bucket(bucket, length, seed))
        for length, bucket in instances_by_length.items()
        if bucket
    }
    combos = [c for c, _ in strategy.packs]
    order = np.repeat(np.arange(len(combos)), [n for _, n in strategy.packs])
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
