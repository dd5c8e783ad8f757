"""Instance keys and the shard rule (corpus_pipeline.records)."""

from __future__ import annotations

import numpy as np

from corpus_pipeline.records import Instance, shard_of


def instance(
    ids: list[int], seg: list[int], pos: list[int], mlm: list[int], label: int
) -> Instance:
    return Instance(
        np.array(ids, np.int32),
        np.array(seg, np.int8),
        np.array(pos, np.int32),
        np.array(mlm, np.int32),
        label,
    )


def test_key_tells_apart_instances_a_separator_would_confuse() -> None:
    # 0x7c is "|": joined with "|" both read 7c x 8 + label.
    a = instance([0x7C7C7C7C], [], [], [], 0)
    b = instance([], [0x7C] * 4, [], [], 0)
    assert a != b
    assert a.key() != b.key()


def test_key_is_the_content_whatever_the_dtypes() -> None:
    a = instance([101, 7, 102], [0, 0, 1], [1], [2023], 1)
    wide = Instance(
        a.input_ids.astype(np.int64),
        a.segment_ids.astype(np.int64),
        a.masked_lm_positions.astype(np.int16),
        a.masked_lm_ids.astype(np.int64),
        1,
    )
    assert wide.key() == a.key()
    assert instance([101, 7, 102], [0, 0, 1], [1], [2023], 0).key() != a.key()
    assert instance([101, 7, 102], [0, 1, 1], [1], [2023], 1).key() != a.key()


def test_shard_of_is_a_pinned_content_hash() -> None:
    a = instance([101, 7, 102], [0, 0, 1], [1], [2023], 1)
    # Pinned: the same instance goes to the same shard on every machine and in every run.
    assert [shard_of(a, n) for n in (1, 2, 3, 7, 1000)] == [0, 1, 0, 1, 373]
    rng = np.random.default_rng(0)
    many = [
        instance(rng.integers(0, 30522, 20).tolist(), [0] * 20, [3], [5], int(rng.integers(2)))
        for _ in range(2000)
    ]
    counts = np.bincount([shard_of(i, 4) for i in many], minlength=4)
    assert counts.sum() == 2000 and counts.min() > 400  # ~500 each: every shard is used
