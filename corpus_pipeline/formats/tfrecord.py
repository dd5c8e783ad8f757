"""TFRecord shards: Google BERT (unpacked) and Graphcore (packed) schemas, no TensorFlow.

Framing (TensorFlow's ``tf.io.TFRecordWriter`` layout): each record is
``u64le length | u32le masked_crc32c(length bytes) | data | u32le masked_crc32c(data)``, where
``data`` is a ``tf.train.Example`` (encoded by :mod:`.example_proto`). Beside every ``X.tfrecord``
the writers put ``X.index`` in the ``tfrecord`` package's ``tfrecord2idx`` format (one
``"<start_offset> <record_bytes>\\n"`` line per record, ``record_bytes = length + 16``) so its
``TFRecordDataset``/``tfrecord_loader`` can shard a file across workers.

The writers are in :mod:`.tfrecord_writer` (a ``.tfrecord`` that exists is complete and has
its index), the batch layout of the features in :mod:`.tfrecord_columns`.

Consumer caveats (they are the ``tfrecord`` package's, nothing the writer can fix):

* it never checks CRCs, so use :func:`iter_records` (``verify_crc=True``) to verify a shard;
* given an index but no ``shard=``, it starts at a random record;
* it fails on a one-record file read with an index (``np.loadtxt`` yields a 1-D array): size
  shards so none ends up with a single record.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.formats.crc32c import masked_crc32c, masked_crc32c_spans
from corpus_pipeline.formats.example_proto import (
    DecodedFeature,
    ExampleDecodeError,
    decode_example,
    decode_examples,
)
from corpus_pipeline.records import Instance, Pack

__all__ = [
    "FOOTER_BYTES",
    "HEADER_BYTES",
    "PACKED_FEATURES",
    "UNPACKED_FEATURES",
    "frame_in_place",
    "frame_record",
    "frame_records",
    "index_name",
    "index_path_for",
    "iter_records",
    "iter_records_with_offsets",
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

HEADER_BYTES = 12  # u64 length + u32 masked CRC
FOOTER_BYTES = 4
_READ_BUFFER = 1 << 20


def index_path_for(path: str | Path) -> Path:
    """``X.tfrecord`` -> ``X.index`` (the name the ``tfrecord`` package's tools expect)."""
    return Path(index_name(path))


def index_name(path: str | Path) -> str:
    """:func:`index_path_for` on the path as given (a remote ``s3://...`` one included)."""
    head, sep, name = str(path).rpartition("/")
    n = Path(name)
    return head + sep + (n.with_suffix(".index").name if n.suffix else name + ".index")


@functools.lru_cache(maxsize=4096)
def _length_crc(length: int) -> int:
    return masked_crc32c(length.to_bytes(8, "little"))


_LENGTH_TABLE_MAX = 1 << 16  # records below 64 KiB: their length CRCs come from a table
_length_table = np.empty(0, dtype="<u4")  # masked CRC of the u64le length i, grown on demand


def _length_crcs(lengths: np.ndarray) -> np.ndarray:
    """Masked CRCs of the u64le record lengths, as ``<u4``.

    Shards' records are short, so the CRCs of every length up to the largest seen (rounded up
    to a power of two) are computed once per process and looked up.
    """
    global _length_table
    hi = int(lengths.max()) if lengths.size else 0
    if hi >= _LENGTH_TABLE_MAX:
        return np.array([_length_crc(x) for x in lengths.tolist()], dtype="<u4")
    if hi >= _length_table.shape[0]:
        size = 1 << max(hi.bit_length(), 10)
        _length_table = np.array(
            [masked_crc32c(x.to_bytes(8, "little")) for x in range(size)], dtype="<u4"
        )
    return _length_table[lengths]


def frame_in_place(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Fills the header and footer of every record of ``buf`` around its data.

    Record ``i``'s data is ``buf[starts[i] : starts[i] + lengths[i]]``, with ``HEADER_BYTES`` bytes
    free before it and ``FOOTER_BYTES`` after: the lengths and their CRCs are vectorised, the data
    CRCs are one compiled call per record.
    """
    n = lengths.shape[0]
    if not n:
        return
    heads = starts - HEADER_BYTES
    ends = starts + lengths
    header = np.empty((n, HEADER_BYTES), dtype=np.uint8)
    header[:, :8] = lengths.astype("<u8").view(np.uint8).reshape(n, 8)
    header[:, 8:] = _length_crcs(lengths).view(np.uint8).reshape(n, 4)
    buf[heads[:, None] + np.arange(HEADER_BYTES)] = header
    data_crcs = masked_crc32c_spans(buf, starts, lengths).astype("<u4")
    buf[ends[:, None] + np.arange(FOOTER_BYTES)] = data_crcs.view(np.uint8).reshape(n, 4)


def frame_records(records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``records`` back to back: the bytes (``uint8``) and the size of each frame."""
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    sizes = lengths + (HEADER_BYTES + FOOTER_BYTES)
    starts = np.cumsum(sizes) - sizes + HEADER_BYTES
    buf = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for start, data in zip(starts.tolist(), records, strict=True):
        buf[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)
    frame_in_place(buf, starts, lengths)
    return buf, sizes


def frame_record(data: bytes) -> bytes:
    """Wraps ``data`` in TFRecord framing (length, masked CRCs)."""
    return frame_records([data])[0].tobytes()


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
            header = f.read(HEADER_BYTES)
            if not header:
                return
            if len(header) < HEADER_BYTES:
                raise _corrupt(p, offset, "truncated: file ends inside a record header")
            length_bytes = header[:8]
            if verify_crc and masked_crc32c(length_bytes) != int.from_bytes(header[8:], "little"):
                raise _corrupt(p, offset, "length CRC mismatch")
            length = int.from_bytes(length_bytes, "little")
            remaining = size - offset - HEADER_BYTES - FOOTER_BYTES
            if length > remaining:
                raise _corrupt(
                    p,
                    offset,
                    f"truncated: record declares {length} data bytes, "
                    f"file has {max(remaining, 0)} left",
                )
            data = f.read(length)
            footer = f.read(FOOTER_BYTES)
            if len(data) != length or len(footer) != FOOTER_BYTES:
                raise _corrupt(p, offset, "truncated: file ends inside a record")
            if verify_crc and masked_crc32c(data) != int.from_bytes(footer, "little"):
                raise _corrupt(p, offset, "data CRC mismatch")
            yield offset, data
            offset += length + HEADER_BYTES + FOOTER_BYTES


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
