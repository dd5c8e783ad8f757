"""Wikipedia dumps, worker side: a single-stream dump read in N shares, one per worker.

:func:`iter_share_chunks` splits a bz2 dump by its blocks (``bz2_blocks.py``), each share
decompressing, parsing and cleaning only the pages that start in its part of the file; any
other dump is decompressed whole by every share, which parses only its own chunks of pages.
Pages are cut and parsed by ``wikipedia_pages.py`` (per-page resync, damage and volume
counters); each counter has one owner among the shares, so that they add up to one read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.sources.bz2_blocks import Block, BlockReader
from corpus_pipeline.sources.wikipedia_inflate import is_utf8, prefetched, read_range
from corpus_pipeline.sources.wikipedia_pages import (
    _PAGE_OPEN,
    _no_tally,
    _PageReader,
    _read,
)
from corpus_pipeline.sources.wikipedia_records import (
    Count,
    Opener,
    RawPage,
    WorkUnit,
    is_redirect,
    open_local,
    utf8_size_over,
)

log = logging.getLogger(__name__)


def iter_share_chunks(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    share: int,
    shares: int,
    count: Count,
    opener: Opener = open_local,
    tally: Count = _no_tally,
) -> Iterator[tuple[int, list[RawPage]]]:
    """Share ``share`` of ``shares`` of a whole-file unit: ``(chunk index, pages)`` of the chunks
    it owns, as they are read.

    The shares together yield every page of :func:`read_pages` exactly once, in chunks whose
    indexes sort in file order, and their counters add up to those of one read of the file.

    A UTF-8 bz2 file is split by blocks (:func:`splits_blocks`): share ``s`` decompresses only
    the blocks whose magic lies in its byte range (:func:`share_range`) and keeps the pages whose
    ``<page>`` starts in them, decoding on into the next share's blocks only to finish its last
    page. Its chunks are its pages ``cfg.pages_per_chunk`` at a time, numbered from
    ``s * SHARE_CHUNKS``. A block that does not decode costs the pages in it: the page it cuts
    is counted lost (``extract/lost_pages:corrupt_block``), the reader goes on at the next
    ``<page>`` after it, and each such block counts one ``extract/dropped:corrupt_block``
    against the ``extract/read:blocks`` of the file (so would a block magic matched by chance
    at the start of a share's range, odds 2**-48 per bit: the pages stay the same).

    Any other file is read whole by every share, which parses only its own chunks: chunk ``c``
    holds the well-formed pages among the unit's ``<page>`` elements ``c * cfg.pages_per_chunk``
    to ``(c + 1) * cfg.pages_per_chunk - 1`` and belongs to share ``c % shares`` (a chunk whose
    elements are all malformed is not yielded); the unit's own counters come from share 0.
    """
    size = max(1, cfg.pages_per_chunk)
    shares = max(1, shares)
    if splits_blocks(unit):
        chunk: list[RawPage] = []
        c = share * SHARE_CHUNKS
        pages = _read_block_share(
            unit, cfg, share=share, shares=shares, count=count, opener=opener, tally=tally
        )
        for page in pages:
            chunk.append(page)
            if len(chunk) >= size:
                yield c, chunk
                chunk, c = [], c + 1
        if chunk:
            yield c, chunk
        return
    yield from _iter_whole_share_chunks(
        unit, cfg, share=share, shares=shares, count=count, opener=opener, tally=tally
    )


#: A bz2 block of a dump read by blocks that does not decode (``extract/dropped:corrupt_block``):
#: damage to one block of the stream, counted against the blocks read
#: (``extract/read:blocks``), not as a whole stream lost.
CORRUPT_BLOCK = "corrupt_block"

#: Chunk indexes of block share ``s`` start at ``s * SHARE_CHUNKS``, so that they sort in file
#: order across shares (a share holds far fewer chunks: enwiki has ~25M pages).
SHARE_CHUNKS = 1 << 32


def splits_blocks(unit: WorkUnit) -> bool:
    """Whether :func:`iter_share_chunks` splits the unit by bz2 blocks: a whole bz2 file in
    UTF-8 (a UTF-16 one cannot be cut at an unknown byte of its text)."""
    return unit.compression == "bz2" and unit.end is None and is_utf8(unit.encoding)


def share_range(size: int, share: int, shares: int) -> tuple[int, int]:
    """The compressed bytes ``[start, end)`` of a file of ``size`` bytes whose blocks belong to
    block share ``share`` of ``shares``."""
    shares = max(1, shares)
    return size * share // shares, size * (share + 1) // shares


def _read_block_share(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    share: int,
    shares: int,
    count: Count,
    opener: Opener,
    tally: Count,
) -> Iterator[RawPage]:
    lead = share == 0
    reader = _BlockShareReader(unit, count, tally, opener, lead=lead)
    if lead:
        tally("extract/read:units")
    with opener(unit.path) as f:
        size = f.seek(0, os.SEEK_END)
        start, end = share_range(size, share, shares)
        blocks = BlockReader(f, start)
        # bz2 releases the GIL: blocks are decoded in a thread while pages are parsed.
        items = prefetched(iter(blocks))
        pages = reader.block_pages(items, stop_bit=8 * end, complete=lambda: blocks.complete)
        try:
            for page, _ in pages:
                if utf8_size_over(page.text, cfg.max_page_bytes):
                    page = replace(page, text="", redirect=is_redirect(page), oversized=True)
                yield page
        finally:
            pages.close()
            items.close()  # stops the decoding thread before the file is closed
    for problem, detail in reader.problems:
        count(f"extract/dropped:{problem}")
        log.warning("%s: %s (%s)", unit.describe(), problem, detail)


def _iter_whole_share_chunks(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    share: int,
    shares: int,
    count: Count,
    opener: Opener,
    tally: Count,
) -> Iterator[tuple[int, list[RawPage]]]:
    size = max(1, cfg.pages_per_chunk)
    shares = max(1, shares)

    def owns(i: int) -> bool:
        return (i // size) % shares == share

    current = -1
    chunk: list[RawPage] = []
    for page, index in _read(
        unit, cfg, count=count, opener=opener, tally=tally, owns=owns, lead=share == 0
    ):
        c = index // size
        if c != current and chunk:
            yield current, chunk
            chunk = []
        current = c
        chunk.append(page)
    if chunk:
        yield current, chunk


class _BlockShareReader(_PageReader):
    """Cuts the decoded blocks of one block share (:func:`iter_share_chunks`) into pages.

    The data before this share's first ``<page>`` is the header (share 0) or the end of the
    previous share's last page (skipped). Each counter has one owner, so that the shares add up
    to one read: a block's bytes and damage count for the share that owns the block, a page's
    counters for the share where its ``<page>`` starts, the end of the file for the share whose
    page (or header) runs to it.
    """

    def __init__(
        self, unit: WorkUnit, count: Count, tally: Count, opener: Opener, *, lead: bool
    ) -> None:
        super().__init__(unit, count, tally)
        self.opener = opener
        self._namespaces_known = lead

    def block_pages(
        self, blocks: Iterator[Block], *, stop_bit: int, complete: Callable[[], bool]
    ) -> Generator[tuple[RawPage, int], None, None]:
        """Pages of the blocks before file bit ``stop_bit`` (this share's), then of the next
        blocks only to finish the last one; ``complete()`` is read at the end of the file."""
        buf = bytearray()
        base = 0  # offset of buf[0] in the data this reader decoded
        boundary: int | None = None  # offset where the data of this share's blocks ends
        # "header": before the first page (share 0); "skip": up to the next <page>;
        # "page": buf starts at a <page>.
        mode = "header" if self._namespaces_known else "skip"
        scan = 0
        keep = len(_PAGE_OPEN) - 1  # bytes kept back: a marker cut by a block boundary
        for block in blocks:
            owned = block.offset < stop_bit
            if not owned and boundary is None:
                boundary = base + len(buf)
            if block.data is None:
                if block.tail:
                    break  # the file is cut short inside this block
                if owned:
                    # The pages inside it are lost uncounted (nothing of them can be read):
                    # the loss report counts blocks, and estimates the pages from the others.
                    self.tally("extract/read:blocks")
                    self.count(f"extract/dropped:{CORRUPT_BLOCK}")
                    log.warning(
                        "%s: %s (bz2 block at byte %d does not decode)",
                        self.unit.describe(),
                        CORRUPT_BLOCK,
                        block.offset // 8,
                    )
                if mode == "page":
                    self._lose(CORRUPT_BLOCK, len(buf))
                if boundary is not None:
                    return  # what follows is the next share's
                base += len(buf)
                buf = bytearray()
                mode, scan = "skip", 0
                continue
            if owned:
                self.tally("extract/read:blocks")
                self.tally("extract/read:bytes", len(block.data))
            buf += block.data
            start = 0
            while True:
                nxt = buf.find(_PAGE_OPEN, scan)
                if nxt < 0:
                    break
                last = boundary is not None and base + nxt >= boundary  # the next share's
                if mode == "page":
                    found = self._segment(buf, start, nxt)
                    if found is not None:
                        yield found
                elif mode == "header" and not self._before_pages(bytes(buf[start:nxt])):
                    return
                if last:
                    return
                mode, start, scan = "page", nxt, nxt + len(_PAGE_OPEN)
            if mode == "page":
                del buf[:start]
                base += start
                scan = max(len(_PAGE_OPEN), len(buf) - keep)
                continue
            cut = max(start, len(buf) - keep)
            if mode == "header" and not self._before_pages(bytes(buf[start:cut])):
                return
            del buf[:cut]
            base += cut
            scan = 0
            if mode == "skip" and boundary is not None:
                return  # no page of this share starts across its last block's end
        done = complete()
        if mode == "page":
            yield from self._last_segment(bytes(buf), done)
        elif mode == "header":
            if not self._before_pages(bytes(buf)):
                return
            if not self._header_closed:
                self._fail("truncated_stream", "XML ends inside the document")
            elif not done:
                self._fail("truncated_stream", "compressed data ends inside a stream")

    def _need_namespaces(self) -> None:
        """A later share learns the dump's namespace names from its header on first need."""
        if self._namespaces_known:
            return
        self._namespaces_known = True
        probe = _PageReader(self.unit, _no_tally, _no_tally)
        with self.opener(self.unit.path) as f:
            pages = probe.pages(read_range(f, 0, None))
            try:
                next(pages, None)  # the header is parsed before the first page is cut
            except InputFormatError:
                pass
            finally:
                pages.close()
        self.namespaces = probe.namespaces
