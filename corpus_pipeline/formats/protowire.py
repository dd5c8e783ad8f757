"""Protobuf varints (base-128, little-endian groups of 7 bits), one at a time or vectorised.

The ``tf.train.Example`` codec (:mod:`.example_proto`) and its batch encoder
(:mod:`.example_batch`) write every integer this way.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["WireError", "decode_varints", "encode_varint", "encode_varint_rows"]


class WireError(ValueError):
    """The bytes are not valid protobuf wire data (a varint cut short or too long)."""


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
        ge = v >= np.uint64(1 << (7 * k))
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
    out[starts] = (v & np.uint64(0x7F)).astype(np.uint8) | cont
    for k in range(1, max_size):
        sel = np.nonzero(sizes > k)[0]
        vk = v[sel] >> np.uint64(7 * k)
        out[starts[sel] + k] = (vk & np.uint64(0x7F)).astype(np.uint8) | (
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
        WireError: The run ends inside a varint or a varint is longer than 10 bytes.
    """
    b = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    if b.size == 0:
        return np.empty(0, dtype=np.int64)
    last = b < 0x80
    if last.all():
        return b.astype(np.int64)
    if not last[-1]:
        raise WireError("packed varints end inside a varint")
    end_idx = np.flatnonzero(last)
    start_idx = np.empty_like(end_idx)
    start_idx[0] = 0
    start_idx[1:] = end_idx[:-1] + 1
    lens = end_idx - start_idx + 1
    max_len = int(lens.max())
    if max_len > 10:
        raise WireError("varint longer than 10 bytes")
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
