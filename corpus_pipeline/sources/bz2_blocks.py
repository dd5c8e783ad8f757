"""Decode a bz2 file block by block, from any byte offset.

A bz2 stream is ``BZh`` + a level digit, then blocks, then an end-of-stream marker. Each block
starts with the 48-bit magic ``0x314159265359`` and its 32-bit CRC; the end-of-stream marker is
the 48-bit magic ``0x177245385090`` and the stream's combined CRC. Neither is byte-aligned.
A block decodes on its own once rebuilt as a one-block stream: ``BZh9`` + the block's bits
(shifted to start on a byte) + the end-of-stream magic + a combined CRC equal to the block's
CRC (for one block the combined CRC is the block CRC) + zero padding. ``bz2`` checks the CRC,
so a magic matched by chance inside compressed data (odds 2**-48 per bit) does not decode:
the block is then tried up to the next magic but one. The level digit only bounds the block
size, so 9 decodes a block of any level.

This is what lets N workers read one single-stream dump, each decompressing only its own
part (``wikipedia_shares.iter_share_chunks``): blocks belong to the worker whose byte range
holds their magic.
"""

from __future__ import annotations

import bz2
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK_MAGIC = 0x314159265359
END_MAGIC = 0x177245385090
_MASK48 = (1 << 48) - 1
# A compressed block is at most ~1% larger than its 900 kB of input: beyond this, a candidate
# end is not tried (the block is damaged).
MAX_BLOCK_BYTES = 1_000_000
# Candidate ends tried per block: the first, and two more for magics matched by chance inside it.
_END_TRIES = 3
_READ_BYTES = 1 << 20
_WINDOW = 7  # bytes holding a 48-bit magic at any bit offset


def _patterns() -> list[tuple[int, int, int, bytes]]:
    """(magic, bit shift k, offset of the pattern in the window, pattern): for a magic at bit
    ``8 * q + k``, the bytes of the window ``q .. q + 6`` that it fully determines."""
    out = []
    for magic in (BLOCK_MAGIC, END_MAGIC):
        for k in range(8):
            window = (magic << (8 - k)).to_bytes(_WINDOW, "big")
            if k == 0:
                out.append((magic, k, 0, window[:6]))
            else:
                out.append((magic, k, 1, window[1:6]))
    return out


_PATTERNS = _patterns()


def find_magics(buf: bytes | bytearray, lo: int, hi: int) -> list[tuple[int, int]]:
    """Block and end-of-stream magics whose first byte is in ``buf[lo:hi]`` (and whose 7-byte
    window lies inside ``buf``): sorted ``(bit offset in buf, magic)``."""
    hi = min(hi, len(buf) - _WINDOW + 1)
    found = []
    for magic, k, off, pat in _PATTERNS:
        i = buf.find(pat, lo + off, hi + off + len(pat) - 1)
        while i >= 0:
            q = i - off
            v = int.from_bytes(buf[q : q + _WINDOW], "big")
            if (v >> (8 - k)) & _MASK48 == magic:
                found.append((8 * q + k, magic))
            i = buf.find(pat, i + 1, hi + off + len(pat) - 1)
    found.sort()
    return found


def decode_block(buf: bytes | bytearray, start: int, end: int) -> bytes:
    """Decode the block at bits ``[start, end)`` of ``buf`` (``start`` at its magic, ``end``
    at the next magic) as a one-block stream.

    Raises:
        ValueError, OSError, EOFError: the bits are not one intact block.
    """
    n = end - start
    if n < 80:
        raise ValueError("too short for a bz2 block")
    q0, q1 = start // 8, (end + 7) // 8
    v = int.from_bytes(buf[q0:q1], "big")
    v >>= 8 * q1 - end
    v &= (1 << n) - 1
    crc = (v >> (n - 80)) & 0xFFFFFFFF
    v = (((v << 48) | END_MAGIC) << 32) | crc
    bits = n + 80
    pad = -bits % 8
    stream = b"BZh9" + (v << pad).to_bytes((bits + pad) // 8, "big")
    d = bz2.BZ2Decompressor()
    out = d.decompress(stream)
    if not d.eof:
        raise ValueError("bz2 block ends early")
    return out


@dataclass(frozen=True)
class Block:
    """One block of a bz2 file.

    Attributes:
        offset: Bit offset of its magic in the file.
        data: Its decompressed bytes; None when it does not decode.
        tail: It runs to the end of the file, no magic after it (the file is cut short).
    """

    offset: int
    data: bytes | None
    tail: bool = False


class BlockReader:
    """The blocks of a bz2 file whose magic is at or after byte ``start``, in file order.

    After iteration, ``complete`` says whether the file ended with an end-of-stream marker after
    its last block (False: cut short). Memory: a block or two of compressed data.
    """

    def __init__(self, f: BinaryIO, start: int) -> None:
        self.f = f
        self.start = start
        self.complete = True
        self._buf = bytearray()
        self._base = start  # file byte offset of _buf[0]
        self._scanned = 0  # windows starting before this index of _buf have been scanned
        self._magics: list[tuple[int, int]] = []  # (file bit offset, magic), ascending
        self._eof = False

    def _more(self) -> bool:
        """Read more of the file and scan it; False at the end of the file."""
        if self._eof:
            return False
        self.f.seek(self._base + len(self._buf))
        data = self.f.read(_READ_BYTES)
        if not data:
            self._eof = True
            return False
        self._buf += data
        found = find_magics(self._buf, self._scanned, len(self._buf))
        self._magics.extend((8 * self._base + bit, m) for bit, m in found)
        self._scanned = max(self._scanned, len(self._buf) - _WINDOW + 1)
        return True

    def _after(self, bit: int, i: int = 0) -> tuple[int, int] | None:
        """The ``i``-th magic after file bit ``bit`` (reading on as needed), or None."""
        while True:
            later = [m for m in self._magics if m[0] > bit]
            if len(later) > i:
                return later[i]
            if not self._more():
                return None

    def _drop_before(self, bit: int) -> None:
        cut = bit // 8 - self._base
        if cut > 0:
            del self._buf[:cut]
            self._base += cut
            self._scanned = max(0, self._scanned - cut)
            self._magics = [m for m in self._magics if m[0] >= 8 * self._base]

    def _decode(self, start: int, end: int) -> bytes:
        b = 8 * self._base
        return decode_block(self._buf, start - b, end - b)

    def __iter__(self) -> Iterator[Block]:
        first = self._after(8 * self.start - 1)
        while first is not None and first[1] != BLOCK_MAGIC:
            first = self._after(first[0])
        if first is None:
            self.complete = False
            return
        pos = first[0]
        while True:
            self._drop_before(pos)
            data = None
            nxt = self._after(pos)
            if nxt is None:  # no magic after it: the file is cut inside this block
                while self._more():
                    pass
                self.complete = False
                try:
                    data = self._decode(pos, 8 * (self._base + len(self._buf)))
                except (OSError, ValueError, EOFError):
                    data = None
                yield Block(pos, data, tail=True)
                return
            for i in range(_END_TRIES):
                end = nxt if i == 0 else self._after(pos, i)
                if end is None or end[0] - pos > 8 * MAX_BLOCK_BYTES:
                    break
                try:
                    data = self._decode(pos, end[0])
                except (OSError, ValueError, EOFError):
                    continue
                nxt = end
                break
            yield Block(pos, data)
            while nxt is not None and nxt[1] != BLOCK_MAGIC:
                nxt = self._after(nxt[0])  # end of a stream: the next one's first block
            if nxt is None:
                self.complete = True
                return
            pos = nxt[0]
