"""``verify``'s checks of a TFRecord shard: the masked CRC-32C of every record's length and
data, the feature names, types and lengths of every ``tf.train.Example`` (Google's schema, or
Graphcore's packed one, as ``formats/tfrecord.py`` writes them), every value and the packed
layout, and the ``.index`` line of every record (offset and size).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from corpus_pipeline.formats.checks.common import (
    BLOCK,
    CheckResult,
    CheckSpec,
    Counts,
    SubTally,
    Tally,
    check_unpacked_rows,
    line,
)
from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.formats.example_proto import (
    ExampleDecodeError,
    decode_example,
    decode_examples,
)
from corpus_pipeline.formats.tfrecord import (
    PACKED_FEATURES,
    UNPACKED_FEATURES,
    index_path_for,
    iter_records_with_offsets,
)


def check_shard(
    spec: CheckSpec, index: int, layout: Sequence[str], res: CheckResult
) -> tuple[Counts, str] | None:
    """Checks one TFRecord shard (``layout``: the ``.tfrecord`` and its ``.index``).

    Returns:
        ((records, instances), the ``.tfrecord`` path), or None when it is missing or
        damaged (the problems are in ``res``).
    """
    del index
    path = Path(spec.out_dir) / layout[0]
    if not path.is_file():
        return None  # reported with the other missing files
    counts = _verify_tfrecord(spec, path, res)
    return None if counts is None else (counts, str(path))


def _iter_index(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for lineno, text in enumerate(f, start=1):
            yield lineno, text.decode("ascii", errors="replace")


def _verify_tfrecord(spec: CheckSpec, path: Path, res: CheckResult) -> tuple[int, int] | None:
    index = index_path_for(path)
    schema = PACKED_FEATURES if spec.packed else UNPACKED_FEATURES
    if spec.packed:
        widths = {
            "packed_input_ids": spec.s,
            "packed_input_mask": spec.s,
            "packed_segment_ids": spec.s,
            "packed_position_ids": spec.s,
            "packed_masked_lm_positions": spec.m,
            "packed_masked_lm_ids": spec.m,
            "packed_masked_lm_mask": spec.m,
            "packed_next_sentence_labels": spec.k,
            "packed_next_sentence_mask": spec.k,
        }
    else:
        widths = {
            "input_ids": spec.s,
            "input_mask": spec.s,
            "segment_ids": spec.s,
            "masked_lm_positions": spec.p,
            "masked_lm_ids": spec.p,
            "masked_lm_weights": spec.p,
            "next_sentence_labels": 1,
        }
    lines = _iter_index(index) if index.is_file() else None
    index_bad = 0
    index_first = ""
    t = Tally()
    n = 0
    instances = 0
    batch: list[tuple[int, bytes]] = []

    def flush() -> None:
        nonlocal instances
        if not batch:
            return
        row0 = n - len(batch)
        try:
            decoded = decode_examples([d for _, d in batch])
        except ExampleDecodeError:
            decoded = []
            for j, (_, data) in enumerate(batch):
                try:
                    decoded.append(decode_example(data))
                except ExampleDecodeError:
                    t.flag("not a tf.train.Example", row0 + j)
                    decoded.append({})
        rows_ok = np.ones(len(batch), dtype=bool)
        for j, feats in enumerate(decoded):
            if not feats:
                rows_ok[j] = False
                continue
            for name, kind in schema.items():
                value = feats.get(name)
                if value is None:
                    t.flag(f"feature {name!r} missing", row0 + j)
                    rows_ok[j] = False
                    continue
                want = np.float32 if kind == "float" else np.int64
                if not isinstance(value, np.ndarray) or (value.dtype != want and value.size):
                    t.flag(f"feature {name!r} is not a {kind} list", row0 + j)
                    rows_ok[j] = False
                elif value.shape[0] != widths[name]:
                    t.flag(f"feature {name!r} has a length other than {widths[name]}", row0 + j)
                    rows_ok[j] = False
            for name in sorted(set(feats) - set(schema)):
                t.flag(f"unexpected feature {name!r}", row0 + j)
        if rows_ok.any():
            sel = np.flatnonzero(rows_ok)
            cols = {
                name: np.stack([decoded[j][name] for j in sel]).astype(
                    np.float32 if kind == "float" else np.int64
                )
                for name, kind in schema.items()
            }
            # Rows are reported by their index in the file: map the selected rows back.
            sub = SubTally(t, sel, row0)
            if spec.packed:
                instances += _check_graphcore_rows(sub, spec, cols)
            else:
                check_unpacked_rows(
                    sub,
                    spec,
                    0,
                    cols["input_ids"],
                    cols["input_mask"],
                    cols["segment_ids"],
                    cols["masked_lm_positions"],
                    cols["masked_lm_ids"],
                    cols["next_sentence_labels"][:, 0],
                    cols["masked_lm_weights"],
                )
                instances += int(sel.shape[0])
        batch.clear()

    try:
        for offset, data in iter_records_with_offsets(path, verify_crc=True):
            if lines is not None:
                entry = next(lines, None)
                want = f"{offset} {len(data) + 16}"
                if entry is None or entry[1].split() != want.split():
                    index_bad += 1
                    if not index_first:
                        got = "no line" if entry is None else repr(entry[1].strip())
                        index_first = (
                            f"record {n} at byte offset {offset}: expected '{want}', got {got}"
                        )
            batch.append((offset, data))
            n += 1
            if len(batch) >= BLOCK:
                flush()
        flush()
    except FormatError as e:
        flush()
        res.problems.append(line(path, str(e)))
        res.problems.extend(t.lines(str(path)))
        res.records += n
        return None
    res.records += n
    res.problems.extend(t.lines(str(path)))
    if lines is not None:  # a missing index is reported with the other missing files
        extra = sum(1 for _ in lines)
        if extra:
            index_bad += extra
            if not index_first:
                index_first = f"{extra} line(s) after the last record"
        if index_bad:
            res.problems.append(
                line(
                    index,
                    f"{index_bad} line(s) do not match the records ({index_first}): rebuild the index",
                )
            )
    return n, instances if spec.packed else n


def _check_graphcore_rows(t: Tally | SubTally, spec: CheckSpec, c: Mapping[str, np.ndarray]) -> int:
    """Value and layout checks of Graphcore packed rows; returns the number of instances."""
    s, k, p, v, m = spec.s, spec.k, spec.p, spec.vocab_size, spec.m
    ids, mask, seg, posid = (
        c["packed_input_ids"],
        c["packed_input_mask"],
        c["packed_segment_ids"],
        c["packed_position_ids"],
    )
    mpos, mids, mmask = (
        c["packed_masked_lm_positions"],
        c["packed_masked_lm_ids"],
        c["packed_masked_lm_mask"],
    )
    nsl, nsm = c["packed_next_sentence_labels"], c["packed_next_sentence_mask"]
    n = np.count_nonzero(nsm > 0, axis=1)
    nsm_want = (np.arange(k)[None, :] >= (k - n)[:, None]).astype(np.float32)
    nsm_bad = ~(nsm == nsm_want).all(axis=1) | (n < 1)
    t.add(
        "packed_next_sentence_mask does not mark sequences 1..n (n >= 1) from the end",
        nsm_bad,
        0,
    )
    t.add(f"packed_input_mask value outside 0..{k}", ((mask < 0) | (mask > k)).any(axis=1), 0)
    t.add(
        f"token id outside 0..{v - 1} in packed_input_ids", ((ids < 0) | (ids >= v)).any(axis=1), 0
    )
    t.add("packed_segment_ids not in {0, 1}", ((seg != 0) & (seg != 1)).any(axis=1), 0)
    pad = mask == 0
    t.add(
        "packed_input_ids / segment_ids / position_ids not 0 on padding",
        (pad & ((ids != 0) | (seg != 0) | (posid != 0))).any(axis=1),
        0,
    )
    t.add(
        "packed_next_sentence_labels not in {0, 1} (0 where no sequence)",
        (((nsl != 0) & (nsl != 1)) | ((nsm == 0) & (nsl != 0))).any(axis=1),
        0,
    )
    # Expected mask from the body lengths: bodies 1..n back to back from 0, [CLS] of k at S-k.
    counts = np.stack([np.count_nonzero(mask == j, axis=1) for j in range(1, k + 1)], axis=1)
    present = np.arange(1, k + 1)[None, :] <= n[:, None]
    blen = np.where(present, counts - 1, 0).clip(min=0)
    cum = np.cumsum(blen, axis=1)
    body_total = cum[:, -1]
    col = np.arange(s)[None, :]
    seq_at = 1 + (cum[:, None, :] <= col[:, :, None]).sum(axis=2)
    want = np.where(col < body_total[:, None], seq_at, 0)
    tail = col >= (s - n)[:, None]
    want = np.where(tail, s - col, want)
    layout_bad = ~(mask == want).all(axis=1) | ((counts > 0) & ~present).any(axis=1)
    layout_bad |= nsm_bad | (body_total + n > s)
    t.add(
        "packed_input_mask is not laid out as [bodies from 0 | [CLS] of sequence k at S-k]",
        layout_bad,
        0,
    )
    off = cum - blen  # start of each body
    seq_idx = np.clip(want - 1, 0, k - 1)
    want_pos = np.where(
        (col < body_total[:, None]) & ~tail,
        col - np.take_along_axis(off, seq_idx, axis=1) + 1,
        0,
    )
    t.add(
        "packed_position_ids are not 1..len-1 on bodies and 0 elsewhere",
        ~layout_bad & ~(posid == want_pos).all(axis=1),
        0,
    )
    # Masked positions.
    kk = mmask
    t.add(
        f"packed_masked_lm_mask value not an integer in 0..{k}",
        ((kk != np.round(kk)) | (kk < 0) | (kk > k)).any(axis=1),
        0,
    )
    nreal = np.count_nonzero(kk > 0, axis=1)
    real = np.arange(m)[None, :] < nreal[:, None]
    prefix_bad = ~((kk > 0) == real).all(axis=1)
    t.add("packed_masked_lm_mask is not real predictions followed by zeros", prefix_bad, 0)
    t.add(
        "packed_masked_lm_positions / ids not 0 on padding",
        (~real & ((mpos != 0) | (mids != 0))).any(axis=1),
        0,
    )
    t.add(
        f"masked_lm_ids outside 0..{v - 1}",
        (real & ((mids < 0) | (mids >= v))).any(axis=1),
        0,
    )
    per_seq = np.stack([np.count_nonzero(kk == j, axis=1) for j in range(1, k + 1)], axis=1)
    t.add(f"a sequence with more than P = {p} masked positions", (per_seq > p).any(axis=1), 0)
    ki = np.clip(np.round(kk).astype(np.int64), 0, k)
    inside = (mpos >= 0) & (mpos < body_total[:, None])
    at = np.take_along_axis(mask, np.clip(mpos, 0, s - 1), axis=1)
    pos_bad = real & (~inside | (at != ki) | (ki > n[:, None]))
    t.add(
        "masked position outside the body of its sequence",
        ~layout_bad & ~prefix_bad & pos_bad.any(axis=1),
        0,
    )
    t.add(
        "masked positions not sorted (strictly increasing)",
        (real[:, 1:] & (mpos[:, 1:] <= mpos[:, :-1])).any(axis=1),
        0,
    )
    return int(n.sum())
