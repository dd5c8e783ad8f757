"""Build Wikimedia-style multistream dumps (and their index) from a real dump excerpt.

Wikimedia's ``...-pages-articles-multistream.xml.bz2`` is a concatenation of independent bz2
streams: the first holds the ``<mediawiki>`` start tag and ``<siteinfo>``, then one stream per
100 pages, and a last one with ``</mediawiki>``. The companion
``...-multistream-index.txt.bz2`` has one line per page, ``offset:page_id:title``, where
``offset`` is the byte position of the stream holding the page. :func:`build_multistream`
reproduces that layout from any dump, with the pages replicated ``copies`` times (copy ``k``
gets ids shifted by ``k * stride`` and `` (copy k)`` appended to its title, so ids and titles
stay unique), so tests and benchmarks get multistream dumps of any size from real text.

The page XML is copied byte for byte (escaping, whitespace), so copy 0 of a multistream built
with ``copies=1`` holds exactly the pages of the source dump.
"""

from __future__ import annotations

import bz2
import gzip
import html
import lzma
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

from corpus_pipeline.formats.common import atomic_output

_PAGE_RE = re.compile(rb"[ \t]*<page>.*?</page>[ \t]*\n?", re.DOTALL)
_TITLE_RE = re.compile(rb"<title>(.*?)</title>", re.DOTALL)
_ID_RE = re.compile(rb"<id>(\d+)</id>")


def read_dump_bytes(path: str | Path) -> bytes:
    """The whole decompressed XML of a (small) dump: bz2, gzip, xz or plain."""
    data = Path(path).read_bytes()
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


def split_dump(xml: bytes) -> tuple[bytes, list[bytes], bytes]:
    """``(header, pages, footer)`` of a dump's XML; each page is its raw ``<page>`` element."""
    pages = [m.group(0) for m in _PAGE_RE.finditer(xml)]
    if not pages:
        raise ValueError("no <page> element in the dump")
    first = _PAGE_RE.search(xml)
    assert first is not None
    end = xml.rfind(b"</page>") + len(b"</page>")
    nl = xml.find(b"\n", end)
    end = len(xml) if nl < 0 else nl + 1
    return xml[: first.start()], pages, xml[end:]


def _page_copy(page: bytes, copy: int, stride: int) -> tuple[bytes, int, str]:
    """The page with id and title of copy ``copy``; returns (xml, page id, index title)."""
    t = _TITLE_RE.search(page)
    i = _ID_RE.search(page)
    if t is None or i is None:
        raise ValueError("a <page> without <title> or <id>")
    title = t.group(1)
    page_id = int(i.group(1))
    if copy:
        page_id += copy * stride
        title += f" (copy {copy})".encode()
        # Title first: its span lies before the page <id> in every export version.
        page = b"".join(
            (
                page[: t.start(1)],
                title,
                page[t.end(1) : i.start(1)],
                str(page_id).encode(),
                page[i.end(1) :],
            )
        )
    return page, page_id, html.unescape(title.decode("utf-8"))


def _compress(data: bytes) -> bytes:
    return bz2.compress(data, 9)


def build_multistream(
    src_dump: str | Path,
    dest_dir: str | Path,
    copies: int = 1,
    pages_per_stream: int = 100,
    *,
    name: str | None = None,
    processes: int = 1,
) -> tuple[Path, Path]:
    """Write a multistream dump and its index built from ``src_dump``.

    The source XML is held in memory (it is an excerpt); the output is written stream by
    stream to temp names and renamed when complete.

    Args:
        src_dump: A dump (``.xml``, ``.bz2``, ``.gz``, ``.xz``), e.g. the bundled excerpt.
        dest_dir: Existing folder for the two files.
        copies: How many times the pages are repeated (copy 0 keeps the original ids/titles).
        pages_per_stream: Pages per bz2 stream (Wikimedia: 100).
        name: File name stem; default ``sample-x<copies>``.
        processes: Worker processes compressing streams (bz2 -9 is ~10 MB/s per core).

    Returns:
        ``(dump, index)``: ``<name>-pages-articles-multistream.xml.bz2`` and
        ``<name>-pages-articles-multistream-index.txt.bz2``.
    """
    if copies < 1 or pages_per_stream < 1:
        raise ValueError("copies and pages_per_stream must be >= 1")
    header, pages, footer = split_dump(read_dump_bytes(src_dump))
    max_id = max(_page_copy(p, 0, 0)[1] for p in pages)
    stride = 10 ** len(str(max_id))
    dest = Path(dest_dir)
    stem = name or f"sample-x{copies}"
    dump = dest / f"{stem}-pages-articles-multistream.xml.bz2"
    index = dest / f"{stem}-pages-articles-multistream-index.txt.bz2"

    def streams() -> Iterator[tuple[bytes, list[tuple[int, str]]]]:
        batch: list[bytes] = []
        entries: list[tuple[int, str]] = []
        for copy in range(copies):
            for raw in pages:
                xml, page_id, title = _page_copy(raw, copy, stride)
                batch.append(xml)
                entries.append((page_id, title))
                if len(batch) == pages_per_stream:
                    yield b"".join(batch), entries
                    batch, entries = [], []
        if batch:
            yield b"".join(batch), entries

    lines: list[str] = []
    with atomic_output(dump) as tmp, open(tmp, "wb") as out:
        out.write(_compress(header))
        offset = out.tell()
        with ProcessPoolExecutor(processes) if processes > 1 else _Serial() as pool:
            # Batches of streams so memory stays bounded with large `copies`.
            pending: list[tuple[bytes, list[tuple[int, str]]]] = []
            for item in streams():
                pending.append(item)
                if len(pending) >= 64:
                    offset = _flush(pool, pending, out, offset, lines)
                    pending = []
            offset = _flush(pool, pending, out, offset, lines)
        out.write(_compress(footer))
    with atomic_output(index) as tmp, open(tmp, "wb") as out:
        out.write(bz2.compress("".join(lines).encode("utf-8"), 9))
    return dump, index


def _flush(
    pool: ProcessPoolExecutor | _Serial,
    pending: list[tuple[bytes, list[tuple[int, str]]]],
    out: BinaryIO,
    offset: int,
    lines: list[str],
) -> int:
    blobs = pool.map(_compress, [data for data, _ in pending])
    for blob, (_, entries) in zip(blobs, pending, strict=True):
        lines.extend(f"{offset}:{page_id}:{title}\n" for page_id, title in entries)
        out.write(blob)
        offset += len(blob)
    return offset


class _Serial:
    """Stand-in for a process pool with one process."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[bytes], bytes], items: Iterable[bytes]) -> Iterator[bytes]:
        return map(fn, items)


def read_index(index: str | Path) -> list[tuple[int, int, str]]:
    """``(offset, page_id, title)`` for every line of a multistream index."""
    rows = []
    with bz2.open(index, "rt", encoding="utf-8") as f:
        for line in f:
            off, page_id, title = line.rstrip("\n").split(":", 2)
            rows.append((int(off), int(page_id), title))
    return rows
