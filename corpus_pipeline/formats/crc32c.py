"""CRC-32C (Castagnoli) and the TFRecord "masked" CRC.

TFRecord frames every record with ``masked_crc32c`` of its length bytes and of its data
(:mod:`.tfrecord`). Two implementations, same results:

* the ``crc32c`` C extension (PyPI ``crc32c``, hardware SSE4.2/ARMv8 CRC instructions) when it
  is importable. The ``tfrecord`` package requires it, so every normal install has it;
* a numpy fallback (below) that is exact and still fast (~100-300 MB/s), for environments
  without the extension.

The fallback uses the linearity of CRCs over GF(2). With a zero start register, the CRC of
``b_0 .. b_{n-1}`` is the XOR over ``i`` of ``Z^(n-1-i)(T[b_i])``, where ``T`` is the usual
bytewise table and ``Z`` is "feed one zero byte". Precomputing ``G[d][b] = Z^d(T[b])`` for
``d < 4096`` turns a 4 KiB block into one numpy gather plus one XOR reduction. Blocks are chained
with the same table: a reflected CRC's start register ``c`` is equivalent to XOR-ing its four
little-endian bytes into the first four message bytes, so "shift ``c`` over ``k`` zero bytes"
is four lookups ``G[k-1][c_0] ^ G[k-2][c_1] ^ G[k-3][c_2] ^ G[k-4][c_3]``. (This is the
"CRC combination" idea of zlib's ``crc32_combine``, tabulated per distance instead of by
repeated squaring.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "BACKEND",
    "crc32c",
    "crc32c_numpy",
    "mask_crc",
    "mask_crcs",
    "masked_crc32c",
    "masked_crc32c_spans",
]

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_BLOCK = 4096  # depth of the distance table: 4096 * 256 * 4 bytes = 4 MiB, built lazily
_SUPER = 256  # blocks per vectorised step (bounds the temporary index array to 8 MiB)

Buffer = bytes | bytearray | memoryview


def _byte_table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


_T = _byte_table()
_T_LIST = [int(x) for x in _T]
_G: np.ndarray | None = None  # flat uint32[_BLOCK * 256]: index d * 256 + byte
_OFFS: np.ndarray | None = None  # int64[_BLOCK]: (_BLOCK - 1 - i) * 256


def _tables() -> tuple[np.ndarray, np.ndarray]:
    global _G, _OFFS
    if _G is None or _OFFS is None:
        g = np.empty((_BLOCK, 256), dtype=np.uint32)
        g[0] = _T
        for d in range(1, _BLOCK):
            prev = g[d - 1]
            g[d] = _T[prev & 0xFF] ^ (prev >> 8)
        _G = g.reshape(-1)
        _OFFS = (np.arange(_BLOCK - 1, -1, -1, dtype=np.int64)) * 256
    return _G, _OFFS


def _shift(g: np.ndarray, reg: int, k: int) -> int:
    """Feeds ``k`` zero bytes into register ``reg`` (``1 <= k <= _BLOCK``)."""
    if k < 4:
        for _ in range(k):
            reg = _T_LIST[reg & 0xFF] ^ (reg >> 8)
        return reg
    base = (k - 1) * 256
    return (
        int(g[base + (reg & 0xFF)])
        ^ int(g[base - 256 + ((reg >> 8) & 0xFF)])
        ^ int(g[base - 512 + ((reg >> 16) & 0xFF)])
        ^ int(g[base - 768 + (reg >> 24)])
    )


def crc32c_numpy(data: Buffer, crc: int = 0) -> int:
    """CRC-32C of ``data`` in numpy (no C extension needed).

    Args:
        data: Bytes to checksum.
        crc: CRC of the preceding bytes, to continue a running checksum.

    Returns:
        The CRC-32C as an unsigned 32-bit int (``crc32c(b"123456789") == 0xE3069283``).
    """
    a = np.frombuffer(data, dtype=np.uint8)
    n = a.shape[0]
    reg = (~crc) & 0xFFFFFFFF
    if n == 0:
        return crc & 0xFFFFFFFF
    if n < 64:
        # Short inputs: the numpy call overhead exceeds a plain bytewise loop.
        t = _T_LIST
        for b in a.tolist():
            reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
        return (~reg) & 0xFFFFFFFF
    g, offs = _tables()
    head = n % _BLOCK
    if head:
        part = a[:head]
        block = int(np.bitwise_xor.reduce(g[offs[_BLOCK - head :] + part]))
        reg = _shift(g, reg, head) ^ block
    full = (n - head) // _BLOCK
    for s in range(0, full, _SUPER):
        m = min(_SUPER, full - s)
        start = head + s * _BLOCK
        blocks = a[start : start + m * _BLOCK].reshape(m, _BLOCK)
        crcs = np.bitwise_xor.reduce(g[offs[None, :] + blocks], axis=1).tolist()
        for c in crcs:
            reg = _shift(g, reg, _BLOCK) ^ c
    return (~reg) & 0xFFFFFFFF


def _load_backend() -> tuple[Callable[[Buffer], int], str]:
    try:
        import crc32c as _ext  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return crc32c_numpy, "numpy"
    fn = _ext.crc32c
    hw = getattr(_ext, "hardware_based", None)
    return fn, "crc32c C extension" + (" (hardware)" if hw else " (software)")


_crc_impl, BACKEND = _load_backend()
"""Which implementation :func:`crc32c` uses: ``"crc32c C extension ..."`` or ``"numpy"``."""


def crc32c(data: Buffer) -> int:
    """CRC-32C (Castagnoli) of ``data`` with the fastest available implementation.

    Args:
        data: Bytes to checksum.

    Returns:
        The CRC as an unsigned 32-bit int.
    """
    return int(_crc_impl(data))


def mask_crc(crc: int) -> int:
    """TFRecord's masking: rotate right by 15 and add ``0xA282EAD8`` (mod 2^32).

    TensorFlow masks stored CRCs because a CRC of data that itself embeds CRCs is weak.
    """
    crc &= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: Buffer) -> int:
    """``mask_crc(crc32c(data))``, the value stored in TFRecord framing."""
    return mask_crc(crc32c(data))


def mask_crcs(crcs: np.ndarray) -> np.ndarray:
    """:func:`mask_crc` of every element of an array of CRCs, as ``uint32``."""
    c = np.asarray(crcs, dtype=np.uint64).astype(np.uint32)
    return ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(_MASK_DELTA)


def masked_crc32c_spans(
    data: Buffer | np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """``masked_crc32c(data[s:s + n])`` for every span of a buffer, as a ``uint32`` array.

    One call of the compiled CRC per span, straight on a memoryview slice (no copy, no Python
    wrapper per span); the masking is vectorised.

    Args:
        data: The buffer (bytes or a uint8 array).
        starts: Offset of each span.
        lengths: Length of each span.
    """
    mv = memoryview(data).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
    fn = _crc_impl
    ends = (np.asarray(starts) + np.asarray(lengths)).tolist()
    crcs = [fn(mv[a:b]) for a, b in zip(np.asarray(starts).tolist(), ends, strict=True)]
    return mask_crcs(np.array(crcs, dtype=np.uint64))
