"""Instances and packs -> the fixed-width feature columns of the TFRecord schemas.

The Google BERT (unpacked) and Graphcore (packed) features are listed in :mod:`.tfrecord`;
each function here lays a batch out as one matrix per feature, vectorised over the batch, with
a per-record reference implementation (``*_loop``) that the fast path must equal and that
raises the error for the first bad record.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from corpus_pipeline.formats.common import check_instance_fits, lengths_of, pad_rows
from corpus_pipeline.formats.example_batch import EncodeScratch
from corpus_pipeline.records import Instance, Pack

__all__ = [
    "instance_columns",
    "instances_to_columns",
    "instances_to_columns_loop",
    "pack_columns",
    "packs_to_columns",
    "packs_to_columns_loop",
]

# --------------------------------------------------------------------------------------------
# Instances and packs -> fixed-width feature columns
# --------------------------------------------------------------------------------------------


def instances_to_columns(
    instances: Sequence[Instance], max_seq_length: int, max_predictions: int
) -> dict[str, np.ndarray]:
    """Pads a batch of instances into the Google BERT feature matrices (int64 / float32).

    Args:
        instances: Unpadded instances.
        max_seq_length: S, the width of the token features.
        max_predictions: P, the width of the masked-LM features.

    Returns:
        :data:`UNPACKED_FEATURES` name -> ``(N, S)``, ``(N, P)`` or ``(N, 1)`` matrix.

    Raises:
        ValueError: An instance does not fit or is inconsistent (an upstream bug).
    """
    return _as_int64(instance_columns(instances, max_seq_length, max_predictions))


def _as_int64(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.int64) if v.dtype.kind in "iub" else v for k, v in cols.items()}


def _lengths(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays back to back, in their integer dtype (int64 for non-ints)."""
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int32)
    return flat if flat.dtype.kind in "iu" else flat.astype(np.int64)


_DTYPE = operator.attrgetter("dtype")


def _flat(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_concat` of ``arrays`` and the length of each.

    A batch's arrays are small and live all over the heap, so the cost is touching them:
    ``bytes.join`` reads each buffer once with less overhead per array than
    ``np.concatenate`` (about half the time). It applies when the arrays share one dtype, are
    C-contiguous and hold ``len`` elements each (byte count checked); otherwise
    ``np.concatenate`` runs.
    """
    lengths = _lengths(arrays)
    dtypes = set(map(_DTYPE, arrays))
    if len(dtypes) == 1:
        dtype = dtypes.pop()
        try:
            joined = b"".join(arrays)  # type: ignore[arg-type]  # numpy arrays are buffers
        except TypeError:  # a non-contiguous array
            joined = None
        if joined is not None and len(joined) == int(lengths.sum()) * dtype.itemsize:
            flat = np.frombuffer(joined, dtype=dtype)
            # Narrow ints stay narrow (int8 segment ids): the encoder reads them as bytes.
            return (flat if dtype.kind in "iu" else flat.astype(np.int64)), lengths
    return _concat(arrays), lengths


def _padded(
    flat: np.ndarray, mask: np.ndarray, scratch: EncodeScratch | None = None, name: str = ""
) -> np.ndarray:
    """``flat`` laid out on the true cells of ``mask`` (row-major), zeros elsewhere.

    With ``scratch``, the matrix is one of its reused buffers (valid until the next batch).
    """
    out = _zeros(scratch, name, mask.size, flat.dtype.type).reshape(mask.shape)
    out[mask] = flat
    return out


def _zeros(scratch: EncodeScratch | None, name: str, size: int, dtype: type) -> np.ndarray:
    """``np.zeros(size, dtype)``, in a reused buffer of ``scratch`` when given."""
    if scratch is None:
        return np.zeros(size, dtype=dtype)
    out = scratch.get(f"{name}:{np.dtype(dtype).str}", size, dtype)
    out.fill(0)
    return out


# One pass over a batch's instances: each object is touched once (they are cold in the cache).
_FIELDS = operator.attrgetter(
    "input_ids", "segment_ids", "masked_lm_positions", "masked_lm_ids", "next_sentence_label"
)


def instance_columns(
    instances: Sequence[Instance], s: int, p: int, scratch: EncodeScratch | None = None
) -> dict[str, np.ndarray]:
    """:func:`instances_to_columns` in compact dtypes (what the writer encodes).

    With ``scratch`` (the writer's), the big matrices live in its reused buffers.

    Vectorised over the batch; on any invalid instance the per-instance reference
    (:func:`instances_to_columns_loop`) runs to raise its error for the first culprit.
    """
    n = len(instances)
    if not n:
        return instances_to_columns_loop(instances, s, p)
    ids_l, seg_l, pos_l, mid_l, labels = zip(*map(_FIELDS, instances), strict=True)
    flat_ids, lens = _flat(ids_l)
    flat_seg, seg_lens = _flat(seg_l)
    flat_pos, nmask = _flat(pos_l)
    flat_mid, mid_lens = _flat(mid_l)
    if (
        int(lens.max()) > s
        or int(nmask.max()) > p
        or not np.array_equal(seg_lens, lens)
        or not np.array_equal(mid_lens, nmask)
    ):
        return instances_to_columns_loop(instances, s, p)
    tok = np.arange(s)[None, :] < lens[:, None]
    real = np.arange(p)[None, :] < nmask[:, None]
    positions = _padded(flat_pos, real)
    bad = real & ((positions <= 0) | (positions >= lens[:, None]))
    unsorted = real[:, 1:] & (positions[:, 1:] <= positions[:, :-1])
    if bad.any() or unsorted.any():
        return instances_to_columns_loop(instances, s, p)
    return {
        "input_ids": _padded(flat_ids, tok, scratch, "input_ids"),
        "input_mask": tok.view(np.uint8),
        "segment_ids": _padded(flat_seg, tok, scratch, "segment_ids"),
        "masked_lm_positions": positions,
        "masked_lm_ids": _padded(flat_mid, real),
        "masked_lm_weights": real.astype(np.float32),
        "next_sentence_labels": np.array(labels, dtype=np.int64).reshape(n, 1),
    }


def instances_to_columns_loop(
    instances: Sequence[Instance], max_seq_length: int, max_predictions: int
) -> dict[str, np.ndarray]:
    """Reference implementation of :func:`instances_to_columns`, one instance at a time.

    Args:
        instances: Unpadded instances.
        max_seq_length: S, the width of the token features.
        max_predictions: P, the width of the masked-LM features.

    Returns:
        :data:`UNPACKED_FEATURES` name -> ``(N, S)``, ``(N, P)`` or ``(N, 1)`` matrix.

    Raises:
        ValueError: An instance does not fit or is inconsistent (an upstream bug).
    """
    s, p = max_seq_length, max_predictions
    for inst in instances:
        check_instance_fits(len(inst), len(inst.masked_lm_positions), s, p, "tfrecord")
        if inst.segment_ids.shape[0] != len(inst) or inst.masked_lm_ids.shape[0] != len(
            inst.masked_lm_positions
        ):
            raise ValueError("tfrecord: instance with mismatched field lengths")
    lens = lengths_of([i.input_ids for i in instances])
    nmask = lengths_of([i.masked_lm_positions for i in instances])
    positions = pad_rows([i.masked_lm_positions for i in instances], p, np.int64)
    real = np.arange(p)[None, :] < nmask[:, None]
    bad = real & ((positions <= 0) | (positions >= lens[:, None]))
    unsorted = real[:, 1:] & (positions[:, 1:] <= positions[:, :-1])
    if bad.any() or unsorted.any():
        raise ValueError(
            "tfrecord: masked_lm_positions must be sorted, unique and inside 1..len-1 "
            "(position 0 is [CLS])"
        )
    return {
        "input_ids": pad_rows([i.input_ids for i in instances], s, np.int64),
        "input_mask": (np.arange(s)[None, :] < lens[:, None]).astype(np.int64),
        "segment_ids": pad_rows([i.segment_ids for i in instances], s, np.int64),
        "masked_lm_positions": positions,
        "masked_lm_ids": pad_rows([i.masked_lm_ids for i in instances], p, np.int64),
        "masked_lm_weights": real.astype(np.float32),
        "next_sentence_labels": np.array(
            [[int(i.next_sentence_label)] for i in instances], dtype=np.int64
        ).reshape(len(instances), 1),
    }


def packs_to_columns(
    packs: Sequence[Pack], max_seq_length: int, max_predictions: int, max_per_pack: int
) -> dict[str, np.ndarray]:
    """Lays out a batch of packs in the Graphcore packed schema (README, "Output layout").

    Sequence ``k`` (1-based) of a pack: its body (tokens without [CLS]) follows the bodies of
    sequences ``1..k-1`` from index 0; its [CLS] goes to index ``S - k``; its masked positions
    become absolute (original position ``j >= 1`` -> ``offset_k + j - 1``). A pack whose lengths
    sum to S fits exactly: ``k`` [CLS] tokens at the end, bodies in the first ``S - k`` slots.

    Args:
        packs: Packs of 1..K instances, total length <= S.
        max_seq_length: S.
        max_predictions: P, per unpacked sequence; the packed width is ``M = P + K - 1``.
        max_per_pack: K.

    Returns:
        :data:`PACKED_FEATURES` name -> ``(N, S)``, ``(N, M)`` or ``(N, K)`` matrix (int64 /
        float32).

    Raises:
        ValueError: A pack does not fit or an instance is inconsistent (an upstream bug).
    """
    return _as_int64(pack_columns(packs, max_seq_length, max_predictions, max_per_pack))


def pack_columns(
    packs: Sequence[Pack], s: int, p: int, k_max: int, scratch: EncodeScratch | None = None
) -> dict[str, np.ndarray]:
    """:func:`packs_to_columns` in compact dtypes, vectorised over every instance of the batch.

    With ``scratch`` (the writer's), the ``(N, S)`` matrices live in its reused buffers.

    On any invalid pack the per-pack reference (:func:`packs_to_columns_loop`) runs to raise
    its error for the first culprit.
    """
    n = len(packs)
    m = p + k_max - 1
    counts = np.fromiter((len(q.instances) for q in packs), dtype=np.int64, count=n)
    if n == 0 or int(counts.min()) < 1 or int(counts.max()) > k_max:
        return packs_to_columns_loop(packs, s, p, k_max)
    insts = [i for q in packs for i in q.instances]
    ni = len(insts)
    ids_l, seg_l, pos_l, mid_l, labels = zip(*map(_FIELDS, insts), strict=True)
    flat_ids, lens = _flat(ids_l)
    flat_seg, seg_lens = _flat(seg_l)
    flat_pos, npos = _flat(pos_l)
    flat_mids, mid_lens = _flat(mid_l)
    first = np.cumsum(counts) - counts  # each pack's first instance
    row = np.repeat(np.arange(n), counts)  # each instance's pack
    k = np.arange(ni) - first[row] + 1  # 1-based place in its pack
    body = lens - 1
    cb = np.cumsum(body) - body
    off = cb - cb[first][row]  # where its body starts in the row
    cq = np.cumsum(npos) - npos
    moff = cq - cq[first][row]
    flat_pos = flat_pos.astype(np.int64)
    pos_inst = np.repeat(np.arange(ni), npos)
    if (
        (np.add.reduceat(lens, first) > s).any()
        or (np.add.reduceat(npos, first) > m).any()
        or int(lens.min()) < 1
        or int(lens.max()) > s
        or int(npos.max()) > p
        or not np.array_equal(seg_lens, lens)
        or not np.array_equal(mid_lens, npos)
        or ((flat_pos < 1) | (flat_pos > body[pos_inst])).any()
    ):
        return packs_to_columns_loop(packs, s, p, k_max)
    # Bodies: a pack's bodies are back to back from index 0, so the body tokens of the batch,
    # in order, fill a left-aligned prefix of every row (like unpacked rows). The [CLS] of
    # sequence k goes to S - k: one scatter per sequence, not per token.
    tok_start = np.cumsum(lens) - lens
    is_body = np.ones(int(tok_start[-1] + lens[-1]), dtype=bool)
    is_body[tok_start] = False
    pack_body = np.add.reduceat(body, first)
    in_body = np.arange(s)[None, :] < pack_body[:, None]
    cls_dest = row * s + s - k
    ids = _zeros(scratch, "packed_input_ids", n * s, flat_ids.dtype.type)
    ids.reshape(n, s)[in_body] = flat_ids[is_body]
    ids[cls_dest] = flat_ids[tok_start]
    mask = _zeros(scratch, "packed_input_mask", n * s, np.uint8 if k_max < 256 else np.int64)
    mask.reshape(n, s)[in_body] = np.repeat(k, body)
    mask[cls_dest] = k
    seg = _zeros(scratch, "packed_segment_ids", n * s, flat_seg.dtype.type)
    seg.reshape(n, s)[in_body] = flat_seg[is_body]
    seg[cls_dest] = flat_seg[tok_start]
    posid = _zeros(scratch, "packed_position_ids", n * s, np.int32)
    # Position ids: a body token's index in its own sequence (1..len-1); [CLS] keeps 0.
    posid.reshape(n, s)[in_body] = np.arange(is_body.shape[0])[is_body] - np.repeat(tok_start, body)
    # Predictions: slot moff + j of the row, position made absolute.
    mq = np.arange(pos_inst.shape[0]) - np.repeat(cq, npos)
    mdest = row[pos_inst] * m + moff[pos_inst] + mq
    mpos = np.zeros(n * m, dtype=np.int64)
    mpos[mdest] = flat_pos - 1 + off[pos_inst]
    mids = np.zeros(n * m, dtype=flat_mids.dtype)
    mids[mdest] = flat_mids
    mmask = np.zeros(n * m, dtype=np.float32)
    mmask[mdest] = k[pos_inst]
    # Next sentence: sequence k at index K - k.
    ndest = row * k_max + k_max - k
    nsl = np.zeros(n * k_max, dtype=np.int64)
    nsl[ndest] = np.array(labels, dtype=np.int64)
    nsm = np.zeros(n * k_max, dtype=np.float32)
    nsm[ndest] = 1.0
    return {
        "packed_input_ids": ids.reshape(n, s),
        "packed_input_mask": mask.reshape(n, s),
        "packed_segment_ids": seg.reshape(n, s),
        "packed_position_ids": posid.reshape(n, s),
        "packed_masked_lm_positions": mpos.reshape(n, m),
        "packed_masked_lm_ids": mids.reshape(n, m),
        "packed_masked_lm_mask": mmask.reshape(n, m),
        "packed_next_sentence_labels": nsl.reshape(n, k_max),
        "packed_next_sentence_mask": nsm.reshape(n, k_max),
    }


def packs_to_columns_loop(
    packs: Sequence[Pack], max_seq_length: int, max_predictions: int, max_per_pack: int
) -> dict[str, np.ndarray]:
    """Reference implementation of :func:`packs_to_columns` (the layout is described there),
    one pack at a time.

    Args:
        packs: Packs of 1..K instances, total length <= S.
        max_seq_length: S.
        max_predictions: P, per unpacked sequence; the packed width is ``M = P + K - 1``.
        max_per_pack: K.

    Returns:
        :data:`PACKED_FEATURES` name -> ``(N, S)``, ``(N, M)`` or ``(N, K)`` matrix.

    Raises:
        ValueError: A pack does not fit or an instance is inconsistent (an upstream bug).
    """
    s, k_max = max_seq_length, max_per_pack
    m = max_predictions + max_per_pack - 1
    n = len(packs)
    ids = np.zeros((n, s), dtype=np.int64)
    mask = np.zeros((n, s), dtype=np.int64)
    seg = np.zeros((n, s), dtype=np.int64)
    posid = np.zeros((n, s), dtype=np.int64)
    mpos = np.zeros((n, m), dtype=np.int64)
    mids = np.zeros((n, m), dtype=np.int64)
    mmask = np.zeros((n, m), dtype=np.float32)
    nsl = np.zeros((n, k_max), dtype=np.int64)
    nsm = np.zeros((n, k_max), dtype=np.float32)
    arange = np.arange(s + 1, dtype=np.int64)
    for r, pack in enumerate(packs):
        count = len(pack.instances)
        if not 1 <= count <= k_max:
            raise ValueError(f"tfrecord: pack of {count} sequences, expected 1..{k_max}")
        if pack.length > s:
            raise ValueError(f"tfrecord: pack of {pack.length} tokens > max_seq_length {s}")
        off = 0
        moff = 0
        for k, inst in enumerate(pack.instances, start=1):
            length = len(inst)
            check_instance_fits(
                length, len(inst.masked_lm_positions), s, max_predictions, "tfrecord"
            )
            if length < 1 or inst.segment_ids.shape[0] != length:
                raise ValueError("tfrecord: packed instance is empty or has mismatched fields")
            body = length - 1
            ids[r, off : off + body] = inst.input_ids[1:]
            mask[r, off : off + body] = k
            seg[r, off : off + body] = inst.segment_ids[1:]
            posid[r, off : off + body] = arange[1:length]
            ids[r, s - k] = inst.input_ids[0]
            mask[r, s - k] = k
            seg[r, s - k] = inst.segment_ids[0]
            pos = np.asarray(inst.masked_lm_positions, dtype=np.int64)
            npos = pos.shape[0]
            if npos and (int(pos.min()) < 1 or int(pos.max()) > body):
                # [CLS] (position 0) is never masked, and it no longer sits next to the body.
                raise ValueError(
                    "tfrecord: a masked position is [CLS] (0) or past the end of its sequence"
                )
            if inst.masked_lm_ids.shape[0] != npos:
                raise ValueError("tfrecord: masked_lm_ids and masked_lm_positions differ in length")
            if moff + npos > m:
                raise ValueError(
                    f"tfrecord: pack has {moff + npos} predictions > P + K - 1 = {m}; "
                    "the packer must respect the packed prediction budget"
                )
            mpos[r, moff : moff + npos] = pos - 1 + off
            mids[r, moff : moff + npos] = inst.masked_lm_ids
            mmask[r, moff : moff + npos] = k
            nsl[r, k_max - k] = int(inst.next_sentence_label)
            nsm[r, k_max - k] = 1.0
            off += body
            moff += npos
    return {
        "packed_input_ids": ids,
        "packed_input_mask": mask,
        "packed_segment_ids": seg,
        "packed_position_ids": posid,
        "packed_masked_lm_positions": mpos,
        "packed_masked_lm_ids": mids,
        "packed_masked_lm_mask": mmask,
        "packed_next_sentence_labels": nsl,
        "packed_next_sentence_mask": nsm,
    }
