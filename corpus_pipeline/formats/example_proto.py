"""``tf.train.Example`` protobuf encoding and decoding by hand (no TensorFlow, no protoc).

The messages (tensorflow/core/example/{example,feature}.proto)::

    message Example   { Features features = 1; }
    message Features  { map<string, Feature> feature = 1; }
    message Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                     Int64List int64_list = 3; } }
    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }

A map field is encoded as repeated entry messages ``{string key = 1; Feature value = 2;}``.

Encoding is deterministic and byte-identical to protobuf's
``SerializeToString(deterministic=True)``: map entries sorted by key (UTF-8 bytes, as C++
protobuf and so TensorFlow order them; python-protobuf's upb differs only when one key is a
prefix of another), numeric lists packed, an empty list encoded as an empty submessage. The shard
writers encode a whole batch into one buffer with :func:`encode_example_batch` (numpy, no
Python loop per record); :func:`encode_examples` is the per-record reference it must equal.

Decoding accepts any valid encoding of these messages: fields in any order, packed and unpacked
repeated numbers (even mixed), repeated submessages that protobuf merges, unknown fields
(skipped), and a later map entry with the same key replacing an earlier one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DecodedFeature",
    "ExampleDecodeError",
    "decode_example",
    "decode_examples",
    "decode_varints",
    "encode_example",
    "EncodeScratch",
    "encode_example_batch",
    "encode_examples",
    "encode_varint",
    "encode_varint_rows",
]

DecodedFeature = np.ndarray | list[bytes]
"""int64_list -> int64 array, float_list -> float32 array, bytes_list -> list of bytes."""

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Feature oneof field numbers.
_BYTES, _FLOAT, _INT64 = 1, 2, 3
_U64 = np.uint64


class ExampleDecodeError(ValueError):
    """The bytes are not a valid ``tf.train.Example`` encoding."""


# --------------------------------------------------------------------------------------------
# Varints
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def encode_varint(value: int) -> bytes:
    """Encodes one non-negative int (< 2^64) as a protobuf varint.

    Cached: the same few lengths and tags recur in every record.
    """
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_sizes(v: np.ndarray) -> np.ndarray:
    """Bytes per varint for a uint64 array (1..10)."""
    sizes = np.ones(v.shape, dtype=np.int64)
    for k in range(1, 10):
        ge = v >= _U64(1 << (7 * k))
        if not ge.any():
            break
        sizes += ge
    return sizes


def encode_varint_rows(matrix: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Packed-varint payloads of every row of an integer matrix, in one buffer.

    Negative values are encoded as 10-byte two's-complement varints, as protobuf does for int64.

    Args:
        matrix: ``(N, W)`` integer array (any integer dtype).

    Returns:
        ``(buffer, offsets)``: row ``i``'s payload is ``buffer[offsets[i]:offsets[i + 1]]``.
    """
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {m.shape}")
    n, w = m.shape
    v = m.astype(np.int64, copy=False).view(np.uint64).ravel()
    if v.size == 0 or int(v.max()) < 0x80:
        # Fast path: every value is one byte.
        return v.astype(np.uint8).tobytes(), np.arange(n + 1, dtype=np.int64) * w
    sizes = _varint_sizes(v)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    max_size = int(sizes.max())
    # Byte 0 of every value, then byte k of the values that have more than k bytes.
    cont = (sizes > 1).astype(np.uint8) << 7
    out[starts] = (v & _U64(0x7F)).astype(np.uint8) | cont
    for k in range(1, max_size):
        sel = np.nonzero(sizes > k)[0]
        vk = v[sel] >> _U64(7 * k)
        out[starts[sel] + k] = (vk & _U64(0x7F)).astype(np.uint8) | (
            (sizes[sel] > k + 1).astype(np.uint8) << 7
        )
    row_ends = ends[w - 1 :: w] if w else np.zeros(n, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = row_ends
    return out.tobytes(), offsets


def decode_varints(buf: bytes | memoryview | np.ndarray) -> np.ndarray:
    """Decodes a run of packed varints into an int64 array (vectorised).

    Args:
        buf: The bytes (or a uint8 array).

    Raises:
        ExampleDecodeError: The run ends inside a varint or a varint is longer than 10 bytes.
    """
    b = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    if b.size == 0:
        return np.empty(0, dtype=np.int64)
    last = b < 0x80
    if last.all():
        return b.astype(np.int64)
    if not last[-1]:
        raise ExampleDecodeError("packed varints end inside a varint")
    end_idx = np.flatnonzero(last)
    start_idx = np.empty_like(end_idx)
    start_idx[0] = 0
    start_idx[1:] = end_idx[:-1] + 1
    lens = end_idx - start_idx + 1
    max_len = int(lens.max())
    if max_len > 10:
        raise ExampleDecodeError("varint longer than 10 bytes")
    # One pass per varint byte over the values (not the bytes): byte k of every value that has
    # more than k bytes, shifted into place.
    # Zero-padded so that "byte k" of a short value reads a harmless 0 past the end.
    low = np.zeros(b.size + 10, dtype=np.uint8)
    np.bitwise_and(b, 0x7F, out=low[: b.size])
    vals = low[start_idx].astype(np.uint64)
    for k in range(1, max_len):
        part = low[start_idx + k].astype(np.uint64)
        part[lens <= k] = 0
        vals |= part << np.uint64(7 * k)
    return vals.view(np.int64)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ExampleDecodeError("message ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise ExampleDecodeError("varint longer than 10 bytes")


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _len_field(tag: bytes, body: bytes) -> bytes:
    return tag + encode_varint(len(body)) + body


def _feature_bytes(kind: int, payload: bytes) -> bytes:
    """A ``Feature`` message for a numeric list whose packed payload is ``payload``."""
    inner = _len_field(b"\x0a", payload) if payload else b""
    return _len_field(bytes([(kind << 3) | _LEN]), inner)


def _bytes_feature(values: Iterable[bytes]) -> bytes:
    inner = b"".join(_len_field(b"\x0a", bytes(v)) for v in values)
    return _len_field(bytes([(_BYTES << 3) | _LEN]), inner)


def _numeric_feature(value: np.ndarray) -> bytes:
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        buf, _ = encode_varint_rows(arr.reshape(1, -1))
        return _feature_bytes(_INT64, buf)
    if arr.dtype.kind == "f":
        return _feature_bytes(_FLOAT, arr.astype("<f4").ravel().tobytes())
    raise TypeError(f"cannot encode dtype {arr.dtype} as a Feature (use int, float or bytes)")


def _is_bytes_list(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, (bytes, bytearray, memoryview)) for v in value)
    )


def _entry(key: str, feature: bytes) -> bytes:
    body = _len_field(b"\x0a", key.encode("utf-8")) + _len_field(b"\x12", feature)
    return _len_field(b"\x0a", body)


def _sorted_keys(keys: Iterable[str]) -> list[str]:
    # protobuf's deterministic map order compares the UTF-8 bytes of string keys.
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def encode_example(features: Mapping[str, np.ndarray | Sequence[bytes]]) -> bytes:
    """Serialises one ``tf.train.Example``.

    Args:
        features: Name -> value. Integer (or bool) arrays become ``int64_list``, float arrays
            ``float_list`` (stored as float32), non-empty lists of bytes ``bytes_list``. Pass
            typed numpy arrays: an empty Python list would be ambiguous.

    Returns:
        The serialised message, byte-identical to protobuf's deterministic serialisation.
    """
    entries = []
    for key in _sorted_keys(features):
        value = features[key]
        if _is_bytes_list(value):
            feat = _bytes_feature(value)  # type: ignore[arg-type]
        else:
            feat = _numeric_feature(np.asarray(value))
        entries.append(_entry(key, feat))
    return _len_field(b"\x0a", b"".join(entries))


def encode_examples(columns: Mapping[str, np.ndarray]) -> list[bytes]:
    """Serialises a batch of ``tf.train.Example`` with the same numeric features.

    Each column is vectorised over the whole batch, so this is much faster than calling
    :func:`encode_example` per row. Output equals ``[encode_example(row) for row in rows]``.

    Args:
        columns: Name -> ``(N, W)`` integer or float matrix; row ``i`` of every column makes
            example ``i``. ``W`` may differ between columns.

    Returns:
        ``N`` serialised examples.
    """
    keys = _sorted_keys(columns)
    if not keys:
        raise ValueError("encode_examples needs at least one column")
    n = int(np.asarray(columns[keys[0]]).shape[0])
    # Per column: (entry prefix before the Feature length, feature kind tag, payloads).
    per_col: list[tuple[bytes, bytes, list[bytes]]] = []
    for key in keys:
        m = np.asarray(columns[key])
        if m.ndim != 2 or m.shape[0] != n:
            raise ValueError(f"column {key!r} has shape {m.shape}, expected ({n}, W)")
        if m.dtype.kind in "iub":
            buf, offs = encode_varint_rows(m)
            o = offs.tolist()
            payloads = [buf[o[i] : o[i + 1]] for i in range(n)]
            kind = _INT64
        elif m.dtype.kind == "f":
            flat = m.astype("<f4").tobytes()
            step = 4 * m.shape[1]
            payloads = [flat[i * step : (i + 1) * step] for i in range(n)]
            kind = _FLOAT
        else:
            raise TypeError(f"column {key!r}: cannot encode dtype {m.dtype}")
        key_field = _len_field(b"\x0a", key.encode("utf-8"))
        per_col.append((key_field, bytes([(kind << 3) | _LEN]), payloads))

    out = []
    ev = encode_varint
    for i in range(n):
        parts: list[bytes] = []
        for key_field, kind_tag, payloads in per_col:
            p = payloads[i]
            # Feature { kind { 0x0a len payload } }, sizes from the inside out.
            lst_len = 1 + len(ev(len(p))) + len(p) if p else 0
            feat_len = 1 + len(ev(lst_len)) + lst_len
            entry_len = len(key_field) + 1 + len(ev(feat_len)) + feat_len
            parts += (b"\x0a", ev(entry_len), key_field, b"\x12", ev(feat_len))
            parts += (kind_tag, ev(lst_len))
            if p:
                parts += (b"\x0a", ev(len(p)), p)
        body = b"".join(parts)
        out.append(b"\x0a" + ev(len(body)) + body)
    return out


# --------------------------------------------------------------------------------------------
# Batch encoding into one buffer (the shard writers' path)
# --------------------------------------------------------------------------------------------
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
) -> None:
    """Writes the varints of ``v`` (``(N, W)``, values in ``0..hi``) into fixed-width slots.

    The slots (:func:`_slot_width` bytes each) are ``mat[:, col : col + W * width]``; ``keep``
    is set to false on the bytes past each varint's end. Whole slots are computed as words and
    copied row by row (faster than writing through unaligned word views of the matrix).
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

    Fresh megabyte-sized arrays cost a page fault per 4 KiB on every batch, which was a third of
    the encoder's time; a writer keeps one of these instead. Not thread-safe: one per writer.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

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
    keys = _sorted_keys(columns)
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
        key_field = _len_field(b"\x0a", key.encode("utf-8"))
        w = m.shape[1]
        if m.dtype.kind == "f":
            entry_head, size = _entry_head(key_field, b"\x12", 4 * w)
            const += entry_head
            raw = np.ascontiguousarray(m, dtype="<f4").view(np.uint8).reshape(n, 4 * w)
            put("raw", raw, 4 * w)
        elif m.dtype.kind in "iub":
            lo, hi = (int(m.min()), int(m.max())) if m.size else (0, 0)
            if lo < 0 or hi >= _FAST_LIMIT:
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
    keep.fill(True)
    for c, kind, data, extra in segs:
        c = c + shift if c >= bw_col else c
        if isinstance(data, bytes):  # "const"
            mat[:, c : c + len(data)] = np.frombuffer(data, dtype=np.uint8)
        elif kind == "raw" and data is not None:
            mat[:, c : c + data.shape[1]] = data
        elif kind == "slots" and data is not None:
            _fill_slots(mat, keep, c, data, extra, scratch)
    body_len = np.full(n, body_const, dtype=np.int64)
    for key_field, hcol, lhi, scol, span in varcols:
        hcol, scol = hcol + shift, scol + shift
        pl = np.count_nonzero(keep[:, scol : scol + span], axis=1)
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
            mat[:, c : c + len(tag)] = np.frombuffer(tag, dtype=np.uint8)
            c += len(tag)
    _fill_slots(mat, keep, bw_col, body_len[:, None], max(body_max, 0x80))
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


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _read_len(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Returns ``(start, stop)`` of a length-delimited field whose length varint is at pos."""
    b = buf[pos]
    if b < 0x80:
        length = b
        pos += 1
    else:
        length, pos = _read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise ExampleDecodeError("length-delimited field runs past the end of its message")
    return pos, stop


def _skip(buf: bytes, pos: int, end: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire_type == _I64:
        pos += 8
    elif wire_type == _I32:
        pos += 4
    elif wire_type == _LEN:
        pos = _read_len(buf, pos, end)[1]
    else:
        # Groups (3/4) are not valid in these proto3 messages.
        raise ExampleDecodeError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise ExampleDecodeError("field runs past the end of its message")
    return pos


def _parse_list(buf: bytes, pos: int, end: int, kind: int, acc: list, pieces: list[bytes]) -> None:
    """Appends the values of a BytesList/FloatList/Int64List body to ``acc``.

    Packed int64 runs are not decoded here: their bytes go to ``pieces`` (decoded for a whole
    batch at once) and ``acc`` gets the piece number.
    """
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if field != 1:
            pos = _skip(buf, pos, end, wt)
            continue
        if kind == _INT64:
            if wt == _LEN:
                s, pos = _read_len(buf, pos, end)
                acc.append(len(pieces))
                pieces.append(buf[s:pos])
            elif wt == _VARINT:
                v, pos = _read_varint(buf, pos, end)
                acc.append(np.array([v], dtype=np.uint64).view(np.int64))
            else:
                raise ExampleDecodeError(f"int64_list value with wire type {wt}")
        elif kind == _FLOAT:
            if wt == _LEN:
                s, pos = _read_len(buf, pos, end)
                if (pos - s) % 4:
                    raise ExampleDecodeError("packed float_list length is not a multiple of 4")
                acc.append(np.frombuffer(buf, dtype="<f4", count=(pos - s) // 4, offset=s))
            elif wt == _I32:
                if pos + 4 > end:
                    raise ExampleDecodeError("float value runs past the end of its message")
                acc.append(np.frombuffer(buf, dtype="<f4", count=1, offset=pos))
                pos += 4
            else:
                raise ExampleDecodeError(f"float_list value with wire type {wt}")
        else:
            if wt != _LEN:
                raise ExampleDecodeError(f"bytes_list value with wire type {wt}")
            s, pos = _read_len(buf, pos, end)
            acc.append(buf[s:pos])


def _parse_feature(buf: bytes, pos: int, end: int, state: list, pieces: list[bytes]) -> None:
    """Merges a Feature body into ``state = [kind, chunks]`` (protobuf merge semantics)."""
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if wt == _LEN and field in (_BYTES, _FLOAT, _INT64):
            s, pos = _read_len(buf, pos, end)
            if state[0] != field:
                # A different oneof member replaces the current one; the same one merges.
                state[0] = field
                state[1] = []
            _parse_list(buf, s, pos, field, state[1], pieces)
        else:
            pos = _skip(buf, pos, end, wt)


def _parse_example(buf: bytes, pieces: list[bytes]) -> dict[str, list]:
    """Parses the message structure: feature name -> ``[kind, chunks]``."""
    end = len(buf)
    states: dict[str, list] = {}
    pos = 0
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, end)
        if tag != 0x0A:  # anything but Example.features (field 1, LEN)
            pos = _skip(buf, pos, end, tag & 7)
            continue
        # Repeated occurrences of an embedded message merge: their map entries accumulate.
        fpos, fend = _read_len(buf, pos, end)
        pos = fend
        while fpos < fend:
            tag = buf[fpos]
            if tag < 0x80:
                fpos += 1
            else:
                tag, fpos = _read_varint(buf, fpos, fend)
            if tag != 0x0A:  # anything but a Features.feature map entry
                fpos = _skip(buf, fpos, fend, tag & 7)
                continue
            # Lengths are read inline (one-byte fast path): this loop is the reader's hot spot.
            n = buf[fpos]
            if n < 0x80:
                p = fpos + 1
            else:
                n, p = _read_varint(buf, fpos, fend)
            eend = p + n
            if eend > fend:
                raise ExampleDecodeError("map entry runs past the end of Features")
            fpos = eend
            key = b""
            state: list = [0, []]
            while p < eend:
                etag = buf[p]
                if etag < 0x80:
                    p += 1
                else:
                    etag, p = _read_varint(buf, p, eend)
                if etag != 0x0A and etag != 0x12:
                    p = _skip(buf, p, eend, etag & 7)
                    continue
                n = buf[p]
                if n < 0x80:
                    p += 1
                else:
                    n, p = _read_varint(buf, p, eend)
                vs = p
                p += n
                if p > eend:
                    raise ExampleDecodeError("map entry field runs past the end of the entry")
                if etag == 0x0A:  # key
                    key = buf[vs:p]
                    continue
                # Value. Fast path for the usual shape: Feature{kind: {0x0a len payload}}, a
                # single packed numeric list; anything else takes the general path.
                ktag = buf[vs] if vs < p else 0
                if (ktag == 0x1A or ktag == 0x12) and state[0] == 0:
                    ls, le = _read_len(buf, vs + 1, p)
                    if le == p:
                        if ls == le:
                            state[0] = ktag >> 3
                            continue
                        if buf[ls] == 0x0A:
                            ps, pe = _read_len(buf, ls + 1, le)
                            if pe == le:
                                if ktag == 0x1A:
                                    state[0] = _INT64
                                    state[1].append(len(pieces))
                                    pieces.append(buf[ps:pe])
                                    continue
                                if not (pe - ps) % 4:
                                    state[0] = _FLOAT
                                    state[1].append(np.frombuffer(buf, "<f4", (pe - ps) // 4, ps))
                                    continue
                _parse_feature(buf, vs, p, state, pieces)
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ExampleDecodeError("feature name is not valid UTF-8") from e
            # Map semantics: a later entry with the same key replaces the earlier one.
            states[name] = state
    return states


def _decode_pieces(pieces: list[bytes]) -> list[np.ndarray]:
    """Decodes many packed-varint runs with one vectorised pass over their concatenation."""
    if not pieces:
        return []
    lens = np.fromiter((len(x) for x in pieces), dtype=np.int64, count=len(pieces))
    b = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    last = b < 0x80
    ends = np.cumsum(lens)
    nonempty = lens > 0
    # Every run must end on a varint's last byte, or a varint would straddle two runs.
    if not last[ends[nonempty] - 1].all():
        raise ExampleDecodeError("packed varints end inside a varint")
    values = decode_varints(b)
    if values.shape[0] == b.shape[0]:
        bounds = [0, *ends.tolist()]
    else:
        cs = np.zeros(b.shape[0] + 1, dtype=np.int64)
        np.cumsum(last, out=cs[1:])
        bounds = [0, *cs[ends].tolist()]
    return [values[bounds[i] : bounds[i + 1]] for i in range(len(pieces))]


def _finish(state: list, decoded: list[np.ndarray]) -> DecodedFeature:
    kind, chunks = state
    if kind == _BYTES:
        return [bytes(c) for c in chunks]
    if kind == _FLOAT:
        if not chunks:
            return np.empty(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)
    # int64_list, or no kind set: TF treats an unset Feature as an empty list.
    arrays = [decoded[c] if isinstance(c, int) else c for c in chunks]
    if not arrays:
        return np.empty(0, dtype=np.int64)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def decode_examples(
    records: Sequence[bytes | bytearray | memoryview],
) -> list[dict[str, DecodedFeature]]:
    """Parses a batch of serialised ``tf.train.Example`` (varints decoded for all at once).

    Args:
        records: Serialised messages.

    Returns:
        One dict per record, as :func:`decode_example` returns.

    Raises:
        ExampleDecodeError: A record is not a valid encoding (decode records one by one to
            find which).
    """
    pieces: list[bytes] = []
    parsed = []
    try:
        for data in records:
            parsed.append(_parse_example(bytes(data), pieces))
    except IndexError as e:
        # A length or tag varint ran off the end of the buffer.
        raise ExampleDecodeError("message is truncated") from e
    decoded = _decode_pieces(pieces)
    return [{name: _finish(st, decoded) for name, st in states.items()} for states in parsed]


def decode_example(data: bytes | bytearray | memoryview) -> dict[str, DecodedFeature]:
    """Parses a serialised ``tf.train.Example``.

    Args:
        data: The serialised message.

    Returns:
        Feature name -> int64 array (``int64_list``), float32 array (``float_list``) or list of
        bytes (``bytes_list``). A Feature with no list set decodes as an empty int64 array.

    Raises:
        ExampleDecodeError: The bytes are not a valid encoding.
    """
    return decode_examples([data])[0]
