"""Streaming decompression of a dump's byte range (bz2, gzip, xz, concatenated streams),
an optional read-ahead thread, and transcoding of non-UTF-8 dumps to UTF-8.

Used by planning (probing the header) and by the page reader; memory stays bounded by
``_INFLATE_BYTES`` of output per step whatever the compression ratio.
"""

from __future__ import annotations

import bz2
import codecs
import lzma
import queue
import re
import threading
import zlib
from collections.abc import Generator, Iterable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

# Compressed bytes read per call. Small enough that the pages decoded before a corrupt or
# truncated spot are kept, large enough that the per-call overhead is nothing.
_READ_BYTES = 1 << 18
# Decompressed bytes handed to the XML parser per call: bounds memory on highly compressible
# input (a bz2 stream of repeated text inflates ~100x).
_INFLATE_BYTES = 1 << 20


T = TypeVar("T")


class CorruptData(Exception):
    """Compressed data that cannot be decoded."""


def read_range(f: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    f.seek(start)
    left = None if end is None else end - start
    while left is None or left > 0:
        data = f.read(_READ_BYTES if left is None else min(_READ_BYTES, left))
        if not data:
            return
        if left is not None:
            left -= len(data)
        yield data


def _new_decompressor(kind: str) -> Any:
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "gz":
        return zlib.decompressobj(wbits=31)
    return lzma.LZMADecompressor()


class Inflater:
    """Streaming decompression of concatenated streams (multistream bz2, multi-member gzip,
    concatenated xz), with bounded output per step.

    After :meth:`inflate` is exhausted, ``complete`` says whether the input ended at a stream
    boundary (False: truncated). A decoding error raises :class:`CorruptData`; the data
    decoded before it has already been yielded.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.complete = True

    def inflate(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        if self.kind == "none":
            yield from chunks
            return
        kind = self.kind
        d = _new_decompressor(kind)
        started = False  # the current decompressor has been given data
        for chunk in chunks:
            buf = chunk
            while True:
                if buf:
                    if not started and kind == "xz":
                        buf = buf.lstrip(b"\0")  # xz stream padding between streams
                        if not buf:
                            break
                    started = True
                try:
                    out = d.decompress(buf, _INFLATE_BYTES)
                except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
                    raise CorruptData(str(e)) from None
                if out:
                    yield out
                if d.eof:
                    rest = d.unused_data
                    d = _new_decompressor(kind)
                    started = False
                    buf = rest
                    if not buf:
                        break
                    continue
                if kind == "gz":
                    buf = d.unconsumed_tail
                    if not buf:
                        break
                else:
                    buf = b""
                    if d.needs_input:
                        break
        if kind == "gz" and started:
            try:
                out = d.flush()
            except zlib.error as e:
                raise CorruptData(str(e)) from None
            if out:
                yield out
        self.complete = not started


class _Raised:
    """An exception crossing from the prefetch thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def prefetched(chunks: Iterator[T], depth: int = 4) -> Generator[T, None, None]:
    """Iterate ``chunks`` in a background thread, at most ``depth`` items ahead.

    Exceptions are re-raised in the consumer; closing the generator stops the thread.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for c in chunks:
                if not put(c):
                    return
            put(_END)
        except BaseException as e:  # re-raised in the consumer
            put(_Raised(e))

    thread = threading.Thread(target=work, name="wiki-inflate", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield cast(T, item)
    finally:
        stop.set()
        thread.join()


def is_utf8(encoding: str) -> bool:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return True  # expat would have refused it on the launcher; read the bytes as UTF-8
    return name in ("utf-8", "ascii")


def _invalid_marker(err: UnicodeError) -> tuple[str, int]:
    """Undecodable input becomes one lone surrogate, which the UTF-8 encoding below turns
    into the byte 0xFF: invalid UTF-8, so the page holding it is dropped as malformed."""
    assert isinstance(err, UnicodeDecodeError)
    return "\udcff", err.end


codecs.register_error("corpus_pipeline.invalid", _invalid_marker)

_XML_DECL_RE = re.compile(r"\A\s*<\?xml[^>]*\?>")


def to_utf8(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Transcode a non-UTF-8 dump (UTF-16) to UTF-8 on the fly, dropping its BOM and XML
    declaration (which names the old encoding): pages are then cut and parsed as UTF-8."""
    decoder = codecs.getincrementaldecoder(encoding)("corpus_pipeline.invalid")
    head = ""
    started = False
    for data in chunks:
        text = decoder.decode(data)
        if not started:
            head += text
            if ">" not in head and len(head) < 4096:
                continue
            started = True
            text = _XML_DECL_RE.sub("", head.lstrip("\ufeff"), count=1)
        if text:
            yield text.encode("utf-8", "surrogateescape")
    text = decoder.decode(b"", final=True)
    if not started:
        text = _XML_DECL_RE.sub("", (head + text).lstrip("\ufeff"), count=1)
    if text:
        yield text.encode("utf-8", "surrogateescape")
