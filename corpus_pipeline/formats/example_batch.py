"""Encoding a whole batch of ``tf.train.Example`` records into one buffer (the shard writers'
path): numpy over the batch, no Python loop per record; the bytes equal
:func:`.example_proto.encode_examples`, the per-record reference.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from corpus_pipeline.formats.example_proto import encode_examples, len_field, sorted_keys
from corpus_pipeline.formats.protowire import encode_varint

__all__ = ["EncodeScratch", "encode_example_batch"]

#
# Every record of a batch has the same field layout: the features, their order and their
# widths are fixed, only the bytes per varint (and so the length prefixes) vary. So the batch is
# laid out as an ``(N, slots)`` byte matrix in which every varint owns a fixed-width slot (2
# bytes when its column's largest value needs at most 2, else a whole uint32 word; a column
# below 128 is its values as bytes) and every constant (tags, keys) its exact bytes, with a
# parallel "keep" mask that is false on the unused tail of each varint slot. One boolean
# compression of the matrix then yields every record back to back, with no Python loop over
# records or values. Values outside 0..2^28-1 (never in BERT shards) take the per-record path.

_FAST_LIMIT = 1 << 28  # values below need <= 4 varint bytes: one uint32 word each
_BYTE = np.uint32(0x7F)


def _varint_words(v: np.ndarray) -> np.ndarray:
    """Varint bytes of non-negative ints below ``2^28`` as little-endian uint32 words.

    Byte ``k`` of the word is varint byte ``k`` (continuation bit included); bytes past the
    varint's end are 0.
    """
    u = v.astype(np.uint32, copy=False)
    w = u & _BYTE
    w |= (u << np.uint32(1)) & np.uint32(0x7F00)
    w |= (u << np.uint32(2)) & np.uint32(0x7F0000)
    w |= (u << np.uint32(3)) & np.uint32(0x7F000000)
    # Continuation bit of byte k: some higher byte is non-zero. Bytes hold <= 0x7F, so adding
    # 0x7F to each byte of the OR of the higher bytes carries into its own bit 7 only.
    t = w >> np.uint32(8)
    t |= t >> np.uint32(8)
    t |= t >> np.uint32(8)
    w |= (t + np.uint32(0x7F7F7F)) & np.uint32(0x808080)
    return w


_LUT_SIZE = 1 << 16  # values below: varint words from a table (256 KiB) instead of arithmetic
_lut: np.ndarray | None = None


def _lookup_table() -> np.ndarray:
    global _lut
    if _lut is None:
        _lut = _varint_words(np.arange(_LUT_SIZE, dtype=np.uint32))
    return _lut


def _slot_width(hi: int) -> int:
    """Slot bytes for varints of values in ``0..hi`` (``hi >= 0x80``): 2, or a whole word."""
    return 2 if hi < 1 << 14 else 4


def _fill_slots(
    mat: np.ndarray,
    keep: np.ndarray,
    col: int,
    v: np.ndarray,
    hi: int,
    scratch: EncodeScratch | None = None,
    counts: dict[int, np.ndarray] | None = None,
) -> None:
    """Writes the varints of ``v`` (``(N, W)``, values in ``0..hi``) into fixed-width slots.

    The slots (:func:`_slot_width` bytes each) are ``mat[:, col : col + W * width]``; ``keep``
    is set to false on the bytes past each varint's end. Whole slots are computed as words and
    copied row by row (faster than writing through unaligned word views of the matrix).

    With ``counts``, ``counts[col]`` is set to the varint bytes of each row (``int64[N]``),
    summed from the contiguous keep words (:func:`_row_bytes`, four times as fast as counting
    them in ``keep``, where they are strided).
    """
    n, w = v.shape
    if scratch is not None and hi < _LUT_SIZE and _slot_width(hi) == 4:
        # The big columns (token ids): table lookup and keep words in reused buffers.
        words = scratch.get("words", n * w, np.uint32).reshape(n, w)
        np.take(_lookup_table(), v, out=words, mode="clip")  # values are in range
        kw = scratch.get("kw", n * w, np.uint32).reshape(n, w)
        np.left_shift(words, np.uint32(1), out=kw)
        np.bitwise_and(kw, np.uint32(0x01010100), out=kw)
        np.bitwise_or(kw, np.uint32(1), out=kw)
    else:
        words = np.take(_lookup_table(), v) if hi < _LUT_SIZE else _varint_words(v)
        if _slot_width(hi) == 2:
            words = words.astype(np.uint16)
            # Byte 1 is kept iff byte 0 has its continuation bit.
            kw = ((words << np.uint16(1)) & np.uint16(0x0100)) | np.uint16(1)
        else:
            kw = ((words << np.uint32(1)) & np.uint32(0x01010100)) | np.uint32(1)
    span = w * words.itemsize
    mat[:, col : col + span] = words.view(np.uint8).reshape(n, span)
    keep[:, col : col + span] = kw.view(np.bool_).reshape(n, span)
    if counts is not None:
        counts[col] = _row_bytes(kw)


def _row_bytes(kw: np.ndarray) -> np.ndarray:
    """Sum of the bytes of each row of ``kw``, an ``(N, W)`` matrix of words whose bytes are 0
    or 1 (the keep words), as ``int64[N]``.

    Words are summed whole: each byte lane collects its own count as long as it stays below
    256, so columns are taken 255 at a time and the bytes of each row's sum are added up.
    """
    n, w = kw.shape
    total = np.zeros(n, dtype=np.int64)
    for a in range(0, w, 255):
        lanes = kw[:, a : a + 255].sum(axis=1, dtype=np.uint64)
        total += lanes.view(np.uint8).reshape(n, 8).sum(axis=1, dtype=np.int64)
    return total


def _nonneg_max(m: np.ndarray) -> int:
    """The largest value of an int or bool matrix, or -1 if it holds a negative value.

    One reduction instead of a min and a max: read as unsigned, a negative value of a signed
    type is at least ``2^(bits - 1)``, more than any non-negative one.
    """
    if not m.size:
        return 0
    bits = 8 * m.dtype.itemsize
    hi = int(m.view(f"u{m.dtype.itemsize}").max())
    return -1 if m.dtype.kind == "i" and hi >= 1 << (bits - 1) else hi


def _size(value: int) -> int:
    return len(encode_varint(value))


def _entry_head(key_field: bytes, kind_tag: bytes, payload_len: int) -> tuple[bytes, int]:
    """A map entry's bytes before its payload, and the entry's total size (tag included)."""
    lst_len = 1 + _size(payload_len) + payload_len if payload_len else 0
    feat_len = 1 + _size(lst_len) + lst_len
    entry_len = len(key_field) + 1 + _size(feat_len) + feat_len
    head = b"\x0a" + encode_varint(entry_len) + key_field + b"\x12" + encode_varint(feat_len)
    head += kind_tag + encode_varint(lst_len)
    if payload_len:
        head += b"\x0a" + encode_varint(payload_len)
    return head, 1 + _size(entry_len) + entry_len


def _sizes(v: np.ndarray) -> np.ndarray:
    """Varint sizes of non-negative int64 values below ``2^28``."""
    return 1 + (v >= 1 << 7) + (v >= 1 << 14) + (v >= 1 << 21)


class EncodeScratch:
    """Work buffers that :func:`encode_example_batch` reuses from one batch to the next.

    Fresh megabyte-sized arrays cost a page fault per 4 KiB on every batch, about a third of the
    encoder's time; a writer keeps one of these instead. Not thread-safe: one per writer.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self.layout: object = None  # what the "mat" and "keep" buffers hold outside the slots

    def get(self, name: str, size: int, dtype: type) -> np.ndarray:
        """A 1-D array of ``size`` elements (contents undefined), grown as needed."""
        a = self._arrays.get(name)
        if a is None or a.shape[0] < size:
            a = np.empty(max(size, 1 << 16), dtype=dtype)
            self._arrays[name] = a
        return a[:size]


def encode_example_batch(
    columns: Mapping[str, np.ndarray],
    head: int = 0,
    tail: int = 0,
    scratch: EncodeScratch | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Serialises a batch of ``tf.train.Example`` into one buffer, with room around each.

    The bytes of record ``i`` equal ``encode_examples(columns)[i]``; the buffer holds, for each
    record in order, ``head`` zero bytes, the record, ``tail`` zero bytes (a caller's framing).

    Args:
        columns: As for :func:`encode_examples`.
        head: Bytes reserved before each record.
        tail: Bytes reserved after each record.
        scratch: Buffers to reuse; the returned buffer then lives in it and is valid only until
            the next call with the same scratch.

    Returns:
        ``(buffer, starts, lengths)``: uint8 buffer, int64 offset of each record's first byte
        in it, int64 length of each record.
    """
    keys = sorted_keys(columns)
    if not keys:
        raise ValueError("encode_examples needs at least one column")
    n = int(np.asarray(columns[keys[0]]).shape[0])
    # Layout, from shapes and value ranges only. Segments: (column, kind, data, extra) with
    # kind "const" (bytes), "raw" (an (N, width) matrix of byte values), "slots" (an (N, W) int
    # matrix of values in 0..extra), "head" (the length prefixes of a varint column, filled
    # once its payload sizes are known), "body" (the record's body length, likewise).
    segs: list[tuple[int, str, bytes | np.ndarray | None, int]] = []
    col = 0
    const = bytearray(b"\x00" * head + b"\x0a")
    body_const = 0  # bytes of the entries whose size is the same for every record
    body_max = 0  # upper bound of the body length
    varcols: list[tuple[bytes, int, int, int, int]] = []  # key, head col, hi, slots col, span

    def put(kind: str, data: bytes | np.ndarray | None, width: int, extra: int = 0) -> None:
        nonlocal col
        if const:
            segs.append((col, "const", bytes(const), 0))
            col += len(const)
            const.clear()
        segs.append((col, kind, data, extra))
        col += width

    bw_col = len(const)
    put("body", None, 0)  # placeholder: its width is known after the loop
    for key in keys:
        m = np.asarray(columns[key])
        if m.ndim != 2 or m.shape[0] != n:
            raise ValueError(f"column {key!r} has shape {m.shape}, expected ({n}, W)")
        key_field = len_field(b"\x0a", key.encode("utf-8"))
        w = m.shape[1]
        if m.dtype.kind == "f":
            entry_head, size = _entry_head(key_field, b"\x12", 4 * w)
            const += entry_head
            raw = np.ascontiguousarray(m, dtype="<f4").view(np.uint8).reshape(n, 4 * w)
            put("raw", raw, 4 * w)
        elif m.dtype.kind in "iub":
            hi = _nonneg_max(m)
            if hi < 0 or hi >= _FAST_LIMIT:
                return _encode_example_batch_slow(columns, head, tail)
            if hi < 0x80:  # one byte per value: a constant-length payload
                entry_head, size = _entry_head(key_field, b"\x1a", w)
                const += entry_head
                put("raw", m, w)
            else:
                width = _slot_width(hi)
                _, size = _entry_head(key_field, b"\x1a", w * _size(hi))  # the largest it can be
                lhi = max(size, 0x80)  # bound of the four length prefixes
                lw = _slot_width(lhi)
                const += b"\x0a"
                hcol = col + len(const)
                put("head", None, 4 * lw + len(key_field) + 3)
                scol = col
                put("slots", m, w * width, hi)
                varcols.append((key_field, hcol, lhi, scol, w * width))
                body_max += size
                continue
        else:
            raise TypeError(f"column {key!r}: cannot encode dtype {m.dtype}")
        body_const += size
        body_max += size
    if n == 0:
        return np.empty(0, dtype=np.uint8), np.empty(0, np.int64), np.empty(0, np.int64)
    if body_max >= 1 << 21:
        return _encode_example_batch_slow(columns, head, tail)
    bw = _slot_width(max(body_max, 0x80))
    const += b"\x00" * tail
    put("end", None, 0)
    total = col + bw
    shift = bw  # every segment after the body-length slot moves right by its width

    if scratch is None:
        scratch = EncodeScratch()
    mat = scratch.get("mat", n * total, np.uint8).reshape(n, total)
    keep = scratch.get("keep", n * total, np.bool_).reshape(n, total)
    # Consecutive batches of a writer have the same layout (the same widths, and value ranges
    # that give the same slot widths): the constant bytes and the keep mask outside the varint
    # slots are then already in place from the previous batch.
    layout = (
        n,
        total,
        tuple((c, data) for c, kind, data, _ in segs if kind == "const"),
        tuple(varcols),
        mat.__array_interface__["data"][0],
        keep.__array_interface__["data"][0],
    )
    fresh = scratch.layout != layout
    payload: dict[int, np.ndarray] = {}  # slots column -> payload bytes of each row
    if fresh:
        keep.fill(True)
    for c, kind, data, extra in segs:
        c = c + shift if c >= bw_col else c
        if isinstance(data, bytes):  # "const"
            if fresh:
                mat[:, c : c + len(data)] = np.frombuffer(data, dtype=np.uint8)
        elif kind == "raw" and data is not None:
            mat[:, c : c + data.shape[1]] = data
        elif kind == "slots" and data is not None:
            _fill_slots(mat, keep, c, data, extra, scratch, payload)
    body_len = np.full(n, body_const, dtype=np.int64)
    for key_field, hcol, lhi, scol, _span in varcols:
        hcol, scol = hcol + shift, scol + shift
        pl = payload[scol]
        lst_len = 1 + _sizes(pl) + pl
        feat_len = 1 + _sizes(lst_len) + lst_len
        entry_len = len(key_field) + 1 + _sizes(feat_len) + feat_len
        body_len += 1 + _sizes(entry_len) + entry_len
        # entry_len | key field, 0x12 | feat_len | 0x1a | lst_len | 0x0a | payload length
        c = hcol
        for value, tag in (
            (entry_len, key_field + b"\x12"),
            (feat_len, b"\x1a"),
            (lst_len, b"\x0a"),
            (pl, b""),
        ):
            _fill_slots(mat, keep, c, value[:, None], lhi)
            c += _slot_width(lhi)
            if fresh:
                mat[:, c : c + len(tag)] = np.frombuffer(tag, dtype=np.uint8)
            c += len(tag)
    _fill_slots(mat, keep, bw_col, body_len[:, None], max(body_max, 0x80))
    scratch.layout = layout
    lengths = 1 + _sizes(body_len) + body_len
    frame = head + lengths + tail
    ends = np.cumsum(frame)
    out = scratch.get("out", int(ends[-1]), np.uint8)
    np.compress(keep.ravel(), mat.ravel(), out=out)
    return out, ends - frame + head, lengths


def _encode_example_batch_slow(
    columns: Mapping[str, np.ndarray], head: int, tail: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`encode_example_batch` for values the fast path does not take (negative, >= 2^28)."""
    records = encode_examples(columns)
    pad_h, pad_t = b"\x00" * head, b"\x00" * tail
    buf = np.frombuffer(b"".join(pad_h + r + pad_t for r in records), dtype=np.uint8).copy()
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    frame = head + lengths + tail
    return buf, np.cumsum(frame) - frame + head, lengths
