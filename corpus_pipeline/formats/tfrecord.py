"""TFRecord shards: Google BERT (unpacked) and Graphcore (packed) schemas, no TensorFlow.

Framing (FORMATS.md): each record is
``u64le length | u32le masked_crc32c(length bytes) | data | u32le masked_crc32c(data)``, where
``data`` is a ``tf.train.Example`` (encoded by :mod:`.example_proto`). Beside every ``X.tfrecord``
the writers put ``X.index`` in the ``tfrecord`` package's ``tfrecord2idx`` format (one
``"<start_offset> <record_bytes>\\n"`` line per record, ``record_bytes = length + 16``) so its
``TFRecordDataset``/``tfrecord_loader`` can shard a file across workers.

Both files are written under temp names and renamed on :meth:`close` (index first, then data):
a ``.tfrecord`` that exists is complete and has its index.

Consumer caveats (they are the ``tfrecord`` package's, nothing the writer can fix):

* it never checks CRCs, so use :func:`iter_records` (``verify_crc=True``) to verify a shard;
* given an index but no ``shard=``, it starts at a random record;
* it fails on a one-record file read with an index (``np.loadtxt`` yields a 1-D array): size
  shards so none ends up with a single record.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.base import ShardWriter
from corpus_pipeline.formats.common import (
    FormatError,
    check_instance_fits,
    lengths_of,
    named_os_error,
    pad_rows,
)
from corpus_pipeline.formats.crc32c import masked_crc32c, masked_crc32c_spans
from corpus_pipeline.formats.example_proto import (
    DecodedFeature,
    EncodeScratch,
    ExampleDecodeError,
    decode_example,
    decode_examples,
    encode_example_batch,
)
from corpus_pipeline.records import Instance, Pack

__all__ = [
    "PACKED_FEATURES",
    "UNPACKED_FEATURES",
    "PackedTFRecordShardWriter",
    "TFRecordShardWriter",
    "frame_record",
    "index_path_for",
    "instances_to_columns",
    "iter_records",
    "iter_records_with_offsets",
    "packs_to_columns",
    "read_index",
    "read_packed_tfrecord",
    "read_tfrecord",
]

UNPACKED_FEATURES: dict[str, str] = {
    "input_ids": "int",
    "input_mask": "int",
    "segment_ids": "int",
    "masked_lm_positions": "int",
    "masked_lm_ids": "int",
    "masked_lm_weights": "float",
    "next_sentence_labels": "int",
}
"""Google BERT ``run_pretraining.py`` features -> type, in ``tfrecord`` package spelling."""

PACKED_FEATURES: dict[str, str] = {
    "packed_input_ids": "int",
    "packed_input_mask": "int",
    "packed_segment_ids": "int",
    "packed_position_ids": "int",
    "packed_masked_lm_positions": "int",
    "packed_masked_lm_ids": "int",
    "packed_masked_lm_mask": "float",
    "packed_next_sentence_labels": "int",
    "packed_next_sentence_mask": "float",
}
"""Graphcore packed BERT features (``TFRECORD_KEYS_PACKED``) -> type."""

_HEADER = 12  # u64 length + u32 masked CRC
_FOOTER = 4
_READ_BUFFER = 1 << 20


def index_path_for(path: str | Path) -> Path:
    """``X.tfrecord`` -> ``X.index`` (the name the ``tfrecord`` package's tools expect)."""
    return Path(_index_name(path))


def _index_name(path: str | Path) -> str:
    """:func:`index_path_for` on the path as given (a remote ``s3://...`` one included)."""
    head, sep, name = str(path).rpartition("/")
    n = Path(name)
    return head + sep + (n.with_suffix(".index").name if n.suffix else name + ".index")


@functools.lru_cache(maxsize=4096)
def _length_crc(length: int) -> int:
    return masked_crc32c(length.to_bytes(8, "little"))


def _length_crcs(lengths: np.ndarray) -> np.ndarray:
    """Masked CRCs of the u64le record lengths, as ``<u4`` (few distinct lengths: cached)."""
    uniq, inverse = np.unique(lengths, return_inverse=True)
    crcs = np.array([_length_crc(x) for x in uniq.tolist()], dtype="<u4")
    return crcs[inverse.reshape(-1)]


def frame_record(data: bytes) -> bytes:
    """Wraps ``data`` in TFRecord framing (length, masked CRCs)."""
    length = len(data).to_bytes(8, "little")
    return b"".join(
        (
            length,
            masked_crc32c(length).to_bytes(4, "little"),
            data,
            masked_crc32c(data).to_bytes(4, "little"),
        )
    )


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
    return _as_int64(_instance_columns(instances, max_seq_length, max_predictions))


def _as_int64(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.int64) if v.dtype.kind in "iub" else v for k, v in cols.items()}


def _lengths(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays back to back, in an integer dtype of at least 32 bits (int64 for non-ints)."""
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int32)
    if flat.dtype.kind not in "iu":
        return flat.astype(np.int64)
    return flat.astype(np.promote_types(flat.dtype, np.int32), copy=False)


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


def _instance_columns(
    instances: Sequence[Instance], s: int, p: int, scratch: EncodeScratch | None = None
) -> dict[str, np.ndarray]:
    """:func:`instances_to_columns` in compact dtypes (what the writer encodes).

    With ``scratch`` (the writer's), the big matrices live in its reused buffers.

    Vectorised over the batch; on any invalid instance the per-instance reference
    (:func:`_instances_to_columns_loop`) runs to raise its error for the first culprit.
    """
    n = len(instances)
    ids_l = [i.input_ids for i in instances]
    seg_l = [i.segment_ids for i in instances]
    pos_l = [i.masked_lm_positions for i in instances]
    mid_l = [i.masked_lm_ids for i in instances]
    lens, nmask = _lengths(ids_l), _lengths(pos_l)
    if n and (
        int(lens.max()) > s
        or int(nmask.max()) > p
        or not np.array_equal(_lengths(seg_l), lens)
        or not np.array_equal(_lengths(mid_l), nmask)
    ):
        return _instances_to_columns_loop(instances, s, p)
    tok = np.arange(s)[None, :] < lens[:, None]
    real = np.arange(p)[None, :] < nmask[:, None]
    positions = _padded(_concat(pos_l), real)
    bad = real & ((positions <= 0) | (positions >= lens[:, None]))
    unsorted = real[:, 1:] & (positions[:, 1:] <= positions[:, :-1])
    if bad.any() or unsorted.any():
        return _instances_to_columns_loop(instances, s, p)
    return {
        "input_ids": _padded(_concat(ids_l), tok, scratch, "input_ids"),
        "input_mask": tok.view(np.uint8),
        "segment_ids": _padded(_concat(seg_l), tok, scratch, "segment_ids"),
        "masked_lm_positions": positions,
        "masked_lm_ids": _padded(_concat(mid_l), real),
        "masked_lm_weights": real.astype(np.float32),
        "next_sentence_labels": np.array(
            [i.next_sentence_label for i in instances], dtype=np.int64
        ).reshape(n, 1),
    }


def _instances_to_columns_loop(
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
    """Lays out a batch of packs in the Graphcore packed schema (FORMATS.md).

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
    return _as_int64(_pack_columns(packs, max_seq_length, max_predictions, max_per_pack))


def _pack_columns(
    packs: Sequence[Pack], s: int, p: int, k_max: int, scratch: EncodeScratch | None = None
) -> dict[str, np.ndarray]:
    """:func:`packs_to_columns` in compact dtypes, vectorised over every instance of the batch.

    With ``scratch`` (the writer's), the ``(N, S)`` matrices live in its reused buffers.

    On any invalid pack the per-pack reference (:func:`_packs_to_columns_loop`) runs to raise
    its error for the first culprit.
    """
    n = len(packs)
    m = p + k_max - 1
    counts = np.fromiter((len(q.instances) for q in packs), dtype=np.int64, count=n)
    if n == 0 or int(counts.min()) < 1 or int(counts.max()) > k_max:
        return _packs_to_columns_loop(packs, s, p, k_max)
    insts = [i for q in packs for i in q.instances]
    ni = len(insts)
    ids_l = [i.input_ids for i in insts]
    seg_l = [i.segment_ids for i in insts]
    pos_l = [i.masked_lm_positions for i in insts]
    mid_l = [i.masked_lm_ids for i in insts]
    lens, npos = _lengths(ids_l), _lengths(pos_l)
    first = np.cumsum(counts) - counts  # each pack's first instance
    row = np.repeat(np.arange(n), counts)  # each instance's pack
    k = np.arange(ni) - first[row] + 1  # 1-based place in its pack
    body = lens - 1
    cb = np.cumsum(body) - body
    off = cb - cb[first][row]  # where its body starts in the row
    cq = np.cumsum(npos) - npos
    moff = cq - cq[first][row]
    flat_pos = _concat(pos_l).astype(np.int64)
    pos_inst = np.repeat(np.arange(ni), npos)
    if (
        (np.add.reduceat(lens, first) > s).any()
        or (np.add.reduceat(npos, first) > m).any()
        or int(lens.min()) < 1
        or int(lens.max()) > s
        or int(npos.max()) > p
        or not np.array_equal(_lengths(seg_l), lens)
        or not np.array_equal(_lengths(mid_l), npos)
        or ((flat_pos < 1) | (flat_pos > body[pos_inst])).any()
    ):
        return _packs_to_columns_loop(packs, s, p, k_max)
    # Bodies: a pack's bodies are back to back from index 0, so the body tokens of the batch,
    # in order, fill a left-aligned prefix of every row (like unpacked rows). The [CLS] of
    # sequence k goes to S - k: one scatter per sequence, not per token.
    tok_start = np.cumsum(lens) - lens
    is_body = np.ones(int(tok_start[-1] + lens[-1]), dtype=bool)
    is_body[tok_start] = False
    pack_body = np.add.reduceat(body, first)
    in_body = np.arange(s)[None, :] < pack_body[:, None]
    cls_dest = row * s + s - k
    flat_ids = _concat(ids_l)
    ids = _zeros(scratch, "packed_input_ids", n * s, flat_ids.dtype.type)
    ids.reshape(n, s)[in_body] = flat_ids[is_body]
    ids[cls_dest] = flat_ids[tok_start]
    mask = _zeros(scratch, "packed_input_mask", n * s, np.uint8 if k_max < 256 else np.int64)
    mask.reshape(n, s)[in_body] = np.repeat(k, body)
    mask[cls_dest] = k
    flat_seg = _concat(seg_l)
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
    flat_mids = _concat(mid_l)
    mids = np.zeros(n * m, dtype=flat_mids.dtype)
    mids[mdest] = flat_mids
    mmask = np.zeros(n * m, dtype=np.float32)
    mmask[mdest] = k[pos_inst]
    # Next sentence: sequence k at index K - k.
    ndest = row * k_max + k_max - k
    nsl = np.zeros(n * k_max, dtype=np.int64)
    nsl[ndest] = np.array([i.next_sentence_label for i in insts], dtype=np.int64)
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


def _packs_to_columns_loop(
    packs: Sequence[Pack], max_seq_length: int, max_predictions: int, max_per_pack: int
) -> dict[str, np.ndarray]:
    """Reference implementation of :func:`packs_to_columns`, one pack at a time.

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


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def _frame_in_place(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Fills the header and footer of every record of ``buf`` around its data.

    Record ``i``'s data is ``buf[starts[i] : starts[i] + lengths[i]]``, with ``_HEADER`` bytes
    free before it and ``_FOOTER`` after: the lengths and their CRCs are vectorised, the data
    CRCs are one compiled call per record.
    """
    n = lengths.shape[0]
    if not n:
        return
    heads = starts - _HEADER
    ends = starts + lengths
    header = np.empty((n, _HEADER), dtype=np.uint8)
    header[:, :8] = lengths.astype("<u8").view(np.uint8).reshape(n, 8)
    header[:, 8:] = _length_crcs(lengths).view(np.uint8).reshape(n, 4)
    buf[heads[:, None] + np.arange(_HEADER)] = header
    data_crcs = masked_crc32c_spans(buf, starts, lengths).astype("<u4")
    buf[ends[:, None] + np.arange(_FOOTER)] = data_crcs.view(np.uint8).reshape(n, 4)


class _TFRecordWriter(ShardWriter):
    """One ``.tfrecord`` + ``.index`` pair: framing, index lines, running sha256.

    The index is created first, so it is renamed first: a visible ``.tfrecord`` always has
    its index. Subclasses turn a batch into feature columns (:meth:`_columns`).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.index_path = index_path_for(self.path)
        if self.index_path == self.path:
            raise UserError(f"tfrecord shard {str(self.path)!r} must not end in .index")
        self.num_records = 0
        self._offset = 0
        self.scratch = EncodeScratch()
        try:
            tmp_index = self._create(_index_name(path))
            tmp = self._create(path)
            self._index: io.TextIOWrapper | None = open(tmp_index, "w", encoding="ascii")  # noqa: SIM115 - closed in _finish()
            self._data = self._hashing(open(tmp, "wb"), path)  # noqa: SIM115
        except BaseException as exc:
            self.abort(exc)
            raise

    def _columns(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def write(self, batch: Sequence[Any]) -> None:
        """Appends a batch of records (all validated before anything is written).

        Raises:
            ValueError: A record does not fit the shard's widths or is inconsistent.
        """
        self._check_open()
        if not batch:
            return
        self.write_columns(self._columns(batch))

    def write_records(self, records: Sequence[bytes]) -> None:
        """Appends already-encoded records (framed here)."""
        lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
        sizes = lengths + (_HEADER + _FOOTER)
        starts = np.cumsum(sizes) - sizes + _HEADER
        buf = np.zeros(int(sizes.sum()), dtype=np.uint8)
        for start, data in zip(starts.tolist(), records, strict=True):
            buf[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)
        _frame_in_place(buf, starts, lengths)
        self._append(buf, sizes)

    def write_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Appends one ``tf.train.Example`` per row of ``columns``, encoded and framed together
        (same bytes as ``write_records(encode_examples(columns))``: the batch encoder leaves
        room for each frame's header and footer)."""
        buf, starts, lengths = encode_example_batch(
            columns, head=_HEADER, tail=_FOOTER, scratch=self.scratch
        )
        _frame_in_place(buf, starts, lengths)
        self._append(buf, lengths + (_HEADER + _FOOTER))

    def _append(self, blob: np.ndarray, sizes: np.ndarray) -> None:
        """Writes framed records (``sizes`` bytes each) and their index lines."""
        self._check_open()
        assert self._index is not None
        offsets = np.cumsum(sizes) - sizes + self._offset
        pairs = np.empty(2 * sizes.shape[0], dtype=np.int64)
        pairs[0::2], pairs[1::2] = offsets, sizes
        lines = ("%d %d\n" * sizes.shape[0]) % tuple(pairs.tolist())
        self._data.write(blob)
        try:
            self._index.write(lines)
        except OSError as e:
            raise named_os_error(e, self.path) from e
        self._offset += int(sizes.sum())
        self.num_records += int(sizes.shape[0])

    def _finish(self) -> None:
        self.scratch = EncodeScratch()  # drop the work buffers of the last batch
        index, self._index = self._index, None
        if index is not None:
            index.close()

    def _release(self) -> None:
        self.scratch = EncodeScratch()
        index, self._index = self._index, None
        if index is not None:
            with contextlib.suppress(OSError):  # a full disk fails the flush of the last buffer
                index.close()


class TFRecordShardWriter(_TFRecordWriter):
    """Writes one unpacked Google BERT TFRecord shard (``X.tfrecord`` + ``X.index``).

    Features per record: ``input_ids``, ``input_mask``, ``segment_ids`` int64[S];
    ``masked_lm_positions``, ``masked_lm_ids`` int64[P]; ``masked_lm_weights`` float[P]
    (1.0 real, 0.0 pad); ``next_sentence_labels`` int64[1]. Output bytes depend only on the
    instances and their order.

    Avoid shards with exactly one record: the ``tfrecord`` package cannot read them with an
    index.

    Example::

        with TFRecordShardWriter(out / "wiki_training_00000.tfrecord", 128, 20) as w:
            w.write(instances)
        manifest_entry = (w.path, w.num_records, w.sha256)

    Args:
        path: Final ``.tfrecord`` path; its folder must exist.
        max_seq_length: S.
        max_predictions: P.
    """

    def __init__(self, path: str | Path, max_seq_length: int, max_predictions: int) -> None:
        self.max_seq_length = max_seq_length
        self.max_predictions = max_predictions
        super().__init__(path)

    def _columns(self, batch: Sequence[Instance]) -> dict[str, np.ndarray]:
        return _instance_columns(batch, self.max_seq_length, self.max_predictions, self.scratch)


class PackedTFRecordShardWriter(_TFRecordWriter):
    """Writes one packed TFRecord shard in Graphcore's schema (see :func:`packs_to_columns`).

    Args:
        path: Final ``.tfrecord`` path; its folder must exist.
        max_seq_length: S.
        max_predictions: P per unpacked sequence (the packed width is ``P + K - 1``).
        max_per_pack: K.
    """

    def __init__(
        self, path: str | Path, max_seq_length: int, max_predictions: int, max_per_pack: int
    ) -> None:
        if max_per_pack < 1:
            raise ValueError(f"max_per_pack must be >= 1, got {max_per_pack}")
        self.max_seq_length = max_seq_length
        self.max_predictions = max_predictions
        self.max_per_pack = max_per_pack
        super().__init__(path)

    def _columns(self, batch: Sequence[Pack]) -> dict[str, np.ndarray]:
        return _pack_columns(
            batch, self.max_seq_length, self.max_predictions, self.max_per_pack, self.scratch
        )


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _corrupt(path: Path, offset: int, what: str) -> FormatError:
    return FormatError(
        f"{path}: {what} (record at byte offset {offset}); the shard is damaged: "
        "delete it and write it again"
    )


def iter_records_with_offsets(
    path: str | Path, verify_crc: bool = True
) -> Iterator[tuple[int, bytes]]:
    """Streams ``(byte offset, data)`` of every record of a TFRecord file.

    Args:
        path: The ``.tfrecord`` file (uncompressed).
        verify_crc: Check both masked CRC-32Cs of every record.

    Yields:
        The start offset of each record's frame and its data bytes.

    Raises:
        FormatError: A CRC mismatch or a truncated record (names the file and the offset).
        UserError: The file does not exist.
    """
    p = Path(path)
    try:
        f = open(p, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed by the with below
    except FileNotFoundError as e:
        raise UserError(f"{p}: no such TFRecord file") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while True:
            header = f.read(_HEADER)
            if not header:
                return
            if len(header) < _HEADER:
                raise _corrupt(p, offset, "truncated: file ends inside a record header")
            length_bytes = header[:8]
            if verify_crc and masked_crc32c(length_bytes) != int.from_bytes(header[8:], "little"):
                raise _corrupt(p, offset, "length CRC mismatch")
            length = int.from_bytes(length_bytes, "little")
            remaining = size - offset - _HEADER - _FOOTER
            if length > remaining:
                raise _corrupt(
                    p,
                    offset,
                    f"truncated: record declares {length} data bytes, "
                    f"file has {max(remaining, 0)} left",
                )
            data = f.read(length)
            footer = f.read(_FOOTER)
            if len(data) != length or len(footer) != _FOOTER:
                raise _corrupt(p, offset, "truncated: file ends inside a record")
            if verify_crc and masked_crc32c(data) != int.from_bytes(footer, "little"):
                raise _corrupt(p, offset, "data CRC mismatch")
            yield offset, data
            offset += length + _HEADER + _FOOTER


def iter_records(path: str | Path, verify_crc: bool = True) -> Iterator[bytes]:
    """Streams the data bytes of every record (see :func:`iter_records_with_offsets`)."""
    for _, data in iter_records_with_offsets(path, verify_crc):
        yield data


def read_index(path: str | Path) -> np.ndarray:
    """Reads a ``tfrecord2idx`` index: an ``(N, 2)`` int64 array of (offset, record bytes).

    Raises:
        FormatError: A line is not two integers.
    """
    p = Path(path)
    rows = []
    try:
        with open(p, encoding="ascii") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.split()
                if len(parts) != 2 or not all(x.isdigit() for x in parts):
                    raise FormatError(
                        f"{p}: line {lineno} is not '<offset> <bytes>': rebuild the index"
                    )
                rows.append((int(parts[0]), int(parts[1])))
    except FileNotFoundError as e:
        raise UserError(f"{p}: no such index file") from e
    except UnicodeDecodeError as e:
        raise FormatError(f"{p}: not a text index file: rebuild the index") from e
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


_DECODE_BATCH = 128  # records decoded together: amortises numpy calls, keeps memory small


def _iter_decoded_batches(
    p: Path, verify_crc: bool
) -> Iterator[list[tuple[int, dict[str, DecodedFeature]]]]:
    """Streams batches of ``(offset, features)``: records are decoded a batch at a time."""
    batch: list[tuple[int, bytes]] = []

    def decode() -> list[tuple[int, dict[str, DecodedFeature]]]:
        try:
            decoded = decode_examples([d for _, d in batch])
        except ExampleDecodeError:
            # Find the culprit to name its offset.
            for offset, data in batch:
                try:
                    decode_example(data)
                except ExampleDecodeError as e:
                    raise _corrupt(p, offset, f"not a tf.train.Example ({e})") from None
            raise
        return [(off, feats) for (off, _), feats in zip(batch, decoded, strict=True)]

    for item in iter_records_with_offsets(p, verify_crc):
        batch.append(item)
        if len(batch) >= _DECODE_BATCH:
            yield decode()
            batch = []
    if batch:
        yield decode()


# Feature -> (type, width group). Features of a group share one width, fixed by the first record.
_UNPACKED_SCHEMA: dict[str, tuple[str, str]] = {
    "input_ids": ("int", "S"),
    "input_mask": ("int", "S"),
    "segment_ids": ("int", "S"),
    "masked_lm_positions": ("int", "P"),
    "masked_lm_ids": ("int", "P"),
    "masked_lm_weights": ("float", "P"),
    "next_sentence_labels": ("int", "1"),
}
_PACKED_SCHEMA: dict[str, tuple[str, str]] = {
    "packed_input_ids": ("int", "S"),
    "packed_input_mask": ("int", "S"),
    "packed_segment_ids": ("int", "S"),
    "packed_position_ids": ("int", "S"),
    "packed_masked_lm_positions": ("int", "M"),
    "packed_masked_lm_ids": ("int", "M"),
    "packed_masked_lm_mask": ("float", "M"),
    "packed_next_sentence_labels": ("int", "K"),
    "packed_next_sentence_mask": ("float", "K"),
}


def _stack_batch(
    p: Path,
    batch: Sequence[tuple[int, Mapping[str, DecodedFeature]]],
    schema: Mapping[str, tuple[str, str]],
    widths: dict[str, int],
) -> dict[str, np.ndarray]:
    """Checks every record of a batch against ``schema`` and stacks each feature to ``(N, W)``.

    ``widths`` (group -> width) is filled from the file's first record and enforced after.
    """
    cols = {}
    for name, (kind, group) in schema.items():
        want = np.float32 if kind == "float" else np.int64
        rows = []
        for offset, feats in batch:
            value = feats.get(name)
            if value is None:
                raise FormatError(
                    f"{p}: record at byte offset {offset} has no feature {name!r}: "
                    "not a shard of this schema"
                )
            if not isinstance(value, np.ndarray) or (value.dtype != want and value.size):
                raise FormatError(
                    f"{p}: feature {name!r} at byte offset {offset} is not a {kind} list: "
                    "not a shard of this schema"
                )
            width = widths.setdefault(group, value.shape[0])
            if value.shape[0] != width:
                raise FormatError(
                    f"{p}: feature {name!r} at byte offset {offset} has {value.shape[0]} values, "
                    f"expected {width} like the other {group}-wide features of the file"
                )
            rows.append(value)
        cols[name] = np.stack(rows).astype(want, copy=False)
    return cols


def read_tfrecord(path: str | Path, verify_crc: bool = True) -> Iterator[Instance]:
    """Streams the unpadded instances of an unpacked (Google BERT schema) TFRecord shard.

    The sequence length is ``sum(input_mask)``; the real predictions are the masked-LM slots
    with ``masked_lm_weights > 0``.

    Args:
        path: The ``.tfrecord`` file.
        verify_crc: Check record CRCs.

    Yields:
        Instances, in file order.

    Raises:
        FormatError: Damaged file, or records not in the unpacked schema.
    """
    p = Path(path)
    widths: dict[str, int] = {"1": 1}
    for batch in _iter_decoded_batches(p, verify_crc):
        c = _stack_batch(p, batch, _UNPACKED_SCHEMA, widths)
        s, pw = widths["S"], widths["P"]
        mask = c["input_mask"]
        lengths = np.count_nonzero(mask, axis=1)
        bad = ~(mask == (np.arange(s)[None, :] < lengths[:, None])).all(axis=1)
        if bad.any():
            raise FormatError(
                f"{p}: input_mask at byte offset {batch[int(np.argmax(bad))][0]} is not ones "
                "then zeros: not a Google BERT shard"
            )
        ids = c["input_ids"].astype(np.int32)
        seg = c["segment_ids"].astype(np.int8)
        pos = c["masked_lm_positions"].astype(np.int32)
        mids = c["masked_lm_ids"].astype(np.int32)
        real = c["masked_lm_weights"] > 0
        nreal = real.sum(axis=1)
        # Real predictions normally come first: then a slice does instead of a boolean index.
        prefix = (real == (np.arange(pw)[None, :] < nreal[:, None])).all(axis=1).tolist()
        labels = c["next_sentence_labels"][:, 0].tolist()
        lens = lengths.tolist()
        counts = nreal.tolist()
        for r in range(len(batch)):
            if prefix[r]:
                m = counts[r]
                rpos, rids = pos[r, :m].copy(), mids[r, :m].copy()
            else:
                rpos, rids = pos[r][real[r]], mids[r][real[r]]
            yield Instance(
                input_ids=ids[r, : lens[r]].copy(),
                segment_ids=seg[r, : lens[r]].copy(),
                masked_lm_positions=rpos,
                masked_lm_ids=rids,
                next_sentence_label=int(labels[r]),
            )


def read_packed_tfrecord(path: str | Path, verify_crc: bool = True) -> Iterator[Pack]:
    """Streams the packs of a Graphcore-schema packed TFRecord shard, instances reassembled.

    Each instance gets back its [CLS] (from index ``S - k``), its body, its segment ids, its
    masked positions relative to the sequence (``absolute - offset_k + 1``) and its NSP label.

    Args:
        path: The ``.tfrecord`` file.
        verify_crc: Check record CRCs.

    Yields:
        Packs, in file order.

    Raises:
        FormatError: Damaged file, or records not in the packed schema / layout.
    """
    p = Path(path)
    widths: dict[str, int] = {}
    for batch in _iter_decoded_batches(p, verify_crc):
        c = _stack_batch(p, batch, _PACKED_SCHEMA, widths)
        for r, (offset, _) in enumerate(batch):
            yield _unpack_row(p, offset, c, r, widths["S"], widths["K"])


def _unpack_row(p: Path, offset: int, c: Mapping[str, np.ndarray], r: int, s: int, kw: int) -> Pack:
    """Reassembles the instances of row ``r`` of a stacked packed batch."""
    ids = c["packed_input_ids"][r]
    mask = c["packed_input_mask"][r]
    seg = c["packed_segment_ids"][r]
    mpos = c["packed_masked_lm_positions"][r]
    mids = c["packed_masked_lm_ids"][r]
    mmask = c["packed_masked_lm_mask"][r]
    nsl = c["packed_next_sentence_labels"][r]
    nsm = c["packed_next_sentence_mask"][r]
    count = 0
    while count < kw and nsm[kw - 1 - count] > 0:
        count += 1
    if count == 0 or bool((nsm[: kw - count] > 0).any()):
        raise FormatError(
            f"{p}: packed_next_sentence_mask at byte offset {offset} does not mark "
            "sequences 1..n from the end: not a Graphcore packed shard"
        )
    instances = []
    off = 0
    body_zone = mask[: s - count]
    for k in range(1, count + 1):
        body = np.flatnonzero(body_zone == k)
        blen = body.shape[0]
        if mask[s - k] != k or (blen and (body[0] != off or body[-1] != off + blen - 1)):
            raise FormatError(
                f"{p}: sequence {k} at byte offset {offset} is not laid out as "
                "[bodies from 0 | CLS at S-k]: not a Graphcore packed shard"
            )
        sel = mmask == k
        rel = mpos[sel] - off + 1
        if rel.size and (int(rel.min()) < 1 or int(rel.max()) > blen):
            raise FormatError(f"{p}: masked position outside sequence {k} at byte offset {offset}")
        instances.append(
            Instance(
                input_ids=np.concatenate(([ids[s - k]], ids[off : off + blen])).astype(np.int32),
                segment_ids=np.concatenate(([seg[s - k]], seg[off : off + blen])).astype(np.int8),
                masked_lm_positions=rel.astype(np.int32),
                masked_lm_ids=mids[sel].astype(np.int32),
                next_sentence_label=int(nsl[kw - k]),
            )
        )
        off += blen
    return Pack(instances)
