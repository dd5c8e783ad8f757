"""Wikipedia dumps, worker side: stream the raw pages of a work unit.

:func:`read_pages` / :func:`iter_page_chunks` decompress the unit's byte range as a stream, cut
it at each ``<page>`` and parse every page on its own (``wikipedia_page_xml.py``; one damaged
page is dropped, the reader resynchronises at the next ``<page>``), so memory stays bounded by
one page (one bz2 stream for multistream units) whatever the dump size. A single-stream dump read in N shares, one per
worker, goes through the same page cutting (``wikipedia_shares.py``).

Damage found on a worker is a counter, not an exception (raising would kill the whole job for
one bad stream): ``extract/dropped:truncated_stream``, ``extract/dropped:corrupt_stream``,
``extract/dropped:malformed_xml``, ``extract/dropped:malformed_page`` (with its reason,
``extract/malformed_page:<reason>``, see :func:`read_pages`). Volume counters
(``extract/read:*``, ``extract/lost:bytes``, ``extract/lost_pages:*``) say what share of the
input such damage cost.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import replace
from typing import Any

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.sources.wikipedia_inflate import (
    CorruptData,
    Inflater,
    is_utf8,
    prefetched,
    read_range,
    to_utf8,
)
from corpus_pipeline.sources.wikipedia_page_xml import (
    CANONICAL_NAMESPACES,
    damage,
    parse_element,
    read_page,
    siteinfo_namespaces,
)
from corpus_pipeline.sources.wikipedia_records import (
    Count,
    Opener,
    RawPage,
    WorkUnit,
    is_redirect,
    local_name,
    open_local,
    utf8_size_over,
)
from corpus_pipeline.sources.wikipedia_site import LINK_DROP_NS, WikiSite, site_for

log = logging.getLogger(__name__)


_PAGE_OPEN = b"<page>"
_PAGE_CLOSE = b"</page>"
_ROOT_CLOSE = b"</mediawiki>"
# Stream-level problems, counted once per unit (``extract/dropped:<problem>``).
STREAM_PROBLEMS = ("truncated_stream", "corrupt_stream", "malformed_xml")


def _no_tally(name: str, n: int = 1) -> None:
    del name, n


def read_pages(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    count: Count,
    opener: Opener = open_local,
    tally: Count = _no_tally,
) -> Iterator[RawPage]:
    """Stream the raw pages of a work unit, in file order.

    Pages are yielded as they are parsed; for a bz2 stream of a multistream dump they are
    held until the stream has decoded cleanly (bz2 checks a block's CRC only after emitting
    it, so a corrupt stream could otherwise leak garbled pages).

    One damaged page costs that page only: the decompressed bytes are cut at each
    ``<page>`` (page text is XML-escaped, so a raw ``<page>`` or ``</page>`` never occurs
    inside one) and every page is parsed on its own, so a NUL byte, an invalid UTF-8
    sequence or an undefined entity drops its page and the reader goes on at the next one.

    Args:
        unit: From :func:`plan_units`.
        cfg: ``max_page_bytes``: a larger page is yielded with its text dropped
            (``oversized``), so that it costs no memory downstream.
        count: Counter callback for outcomes. Once per unit: ``extract/dropped:<problem>``
            for a stream-level problem, ``truncated_stream`` (the data ends inside a stream
            or before ``</mediawiki>``), ``corrupt_stream`` (compressed data that does not
            decode: the rest of the stream is lost) or ``malformed_xml`` (the header before
            the first page is not XML). Once per page: ``extract/dropped:malformed_page``
            plus ``extract/malformed_page:<reason>``, the reason one of
            ``invalid_encoding`` (bytes that are not UTF-8, or not valid in the dump's
            declared encoding), ``invalid_char`` (a control character XML forbids, a NUL
            byte), ``undefined_entity`` (``&foo;``), ``invalid_xml`` (any other syntax
            error: a broken tag, a page without ``</page>``, data between pages) or
            ``missing_field`` (no title or no numeric id).
        opener: Opens the dump as a seekable binary file.
        tally: Counter callback for volumes, from which the share of the input lost is
            computed: ``extract/read:units`` (1), ``extract/read:pages`` (``<page>``
            elements met, damaged ones included), ``extract/read:bytes`` (decompressed XML),
            ``extract/lost:bytes`` (bytes of the pages dropped as malformed or lost with a
            damaged stream) and ``extract/lost_pages:<problem>`` (pages lost with a
            truncated or corrupt stream: the page cut by the end, the pages of a corrupt
            multistream stream decoded before the error; what a corrupt stream held after
            the error is unknown, hence the separate count of damaged streams).

    Yields:
        One :class:`RawPage` per complete, well-formed ``<page>`` element.

    Raises:
        InputFormatError: the unit is a whole file whose root is not ``<mediawiki>``.
    """
    for page, _ in _read(unit, cfg, count=count, opener=opener, tally=tally):
        yield page


def _read(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    count: Count,
    opener: Opener,
    tally: Count,
    owns: Callable[[int], bool] | None = None,
    lead: bool = True,
) -> Iterator[tuple[RawPage, int]]:
    """:func:`read_pages`, each page with the index of its ``<page>`` element in the unit.

    ``owns(i)`` False: the ``i``-th ``<page>`` element is skipped unparsed and uncounted (another
    share reads it). ``lead`` False: the unit's own counters (units, bytes, stream problems,
    data outside pages) are left to the lead share, so the shares' counters add up to one read.
    """
    hold = unit.end is not None
    held: list[tuple[RawPage, int, int]] = []
    reader = _PageReader(unit, count, tally, owns=owns, lead=lead)
    if lead:
        tally("extract/read:units")
    with opener(unit.path) as f:
        # A whole file is read by one worker while the others wait for its chunks: decompress
        # it in a thread (bz2/zlib/lzma release the GIL), overlapped with the XML parsing
        # and with whatever the consumer does between pages.
        raw = read_range(f, unit.start, unit.end)
        pages = reader.pages(raw, prefetch=unit.end is None)
        try:
            for page, size in pages:
                index = reader.segments - 1  # the element just cut
                if utf8_size_over(page.text, cfg.max_page_bytes):
                    # Dropped by clean_page anyway; blanked now so that a 50 MB text is not
                    # held in a chunk, pickled and copied through the shuffle on its way there.
                    page = replace(page, text="", redirect=is_redirect(page), oversized=True)
                if hold:
                    held.append((page, size, index))
                else:
                    yield page, index
        finally:
            pages.close()  # stops the prefetch thread before the file is closed
    for problem, detail in reader.problems if lead else ():
        count(f"extract/dropped:{problem}")
        log.warning("%s: %s (%s)", unit.describe(), problem, detail)
    if any(problem == "corrupt_stream" for problem, _ in reader.problems):
        if held:
            tally("extract/lost_pages:corrupt_stream", len(held))
            tally("extract/lost:bytes", sum(size for _, size, _ in held))
        return
    for page, _, index in held:
        yield page, index


def iter_page_chunks(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    count: Count,
    opener: Opener = open_local,
    tally: Count = _no_tally,
) -> Iterator[list[RawPage]]:
    """:func:`read_pages` cut into lists of ``cfg.pages_per_chunk`` pages (the last shorter)."""
    size = max(1, cfg.pages_per_chunk)
    chunk: list[RawPage] = []
    for page in read_pages(unit, cfg, count=count, opener=opener, tally=tally):
        chunk.append(page)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _PageReader:
    """Cuts a unit's decompressed XML into pages and parses each one on its own.

    The header (everything before the first ``<page>``: the ``<mediawiki>`` start tag and
    ``<siteinfo>``) goes through one incremental parser, for the root check and the
    namespace names. Then the bytes from one ``<page>`` to the next are a segment: its page
    ends at its first ``</page>``, and anything but whitespace after it (or ``</mediawiki>``
    at the very end) is damage. Memory: one decompressed chunk plus one page.
    """

    def __init__(
        self,
        unit: WorkUnit,
        count: Count,
        tally: Count,
        owns: Callable[[int], bool] | None = None,
        lead: bool = True,
    ) -> None:
        self.unit = unit
        self.count = count
        self.tally = tally
        self.owns = owns
        self.lead = lead
        # The unit's own volume counters, kept by one share only (``wikipedia_shares.py``).
        self.unit_tally = tally if lead else _no_tally
        self.segments = 0  # <page> elements cut so far, skipped ones included
        self.problems: list[tuple[str, str]] = []
        self.namespaces = dict(CANONICAL_NAMESPACES)
        self._header: Any = None if unit.wrap else ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._root: ET.Element | None = None
        self._header_closed = False
        # A whole file must end with </mediawiki>; units of a multistream dump need not.
        self._whole = unit.end is None and not unit.wrap
        self._stray = bytearray()  # data before the first page of a later stream
        self._stray_bytes = 0
        self._site: WikiSite | None = None  # built at the first page, after the header

    def pages(
        self, raw: Iterable[bytes], prefetch: bool = False
    ) -> Generator[tuple[RawPage, int], None, None]:
        unit = self.unit
        inflater = Inflater(unit.compression)
        chunks = inflater.inflate(raw)
        if prefetch and unit.compression != "none":
            chunks = prefetched(chunks)
        if not is_utf8(unit.encoding):
            chunks = to_utf8(chunks, unit.encoding)
        buf = bytearray()
        in_pages = False  # buf starts at a <page>
        scan = 0  # where the search for the next <page> goes on
        keep = len(_PAGE_OPEN) - 1  # bytes kept back: a marker cut by a chunk boundary
        try:
            for data in chunks:
                self.unit_tally("extract/read:bytes", len(data))
                buf += data
                if not in_pages:
                    at = buf.find(_PAGE_OPEN)
                    if at < 0:
                        cut = max(0, len(buf) - keep)
                        if not self._before_pages(bytes(buf[:cut])):
                            return
                        del buf[:cut]
                        continue
                    if not self._before_pages(bytes(buf[:at])):
                        return
                    self._check_stray(at_end=False)
                    del buf[:at]
                    in_pages = True
                    scan = len(_PAGE_OPEN)
                start = 0
                while True:
                    nxt = buf.find(_PAGE_OPEN, scan)
                    if nxt < 0:
                        break
                    found = self._segment(buf, start, nxt)
                    if found is not None:
                        yield found
                    start, scan = nxt, nxt + len(_PAGE_OPEN)
                del buf[:start]
                scan = max(len(_PAGE_OPEN), len(buf) - keep)
        except CorruptData as e:
            self._fail("corrupt_stream", str(e))
            if in_pages and buf:
                self._lose("corrupt_stream", len(buf))
            return
        if not in_pages:
            if not self._before_pages(bytes(buf)):
                return
            self._check_stray(at_end=True)
            if self._whole and not self._header_closed:
                self._fail("truncated_stream", "XML ends inside the document")
            elif not inflater.complete:
                self._fail("truncated_stream", "compressed data ends inside a stream")
            return
        yield from self._last_segment(bytes(buf), inflater.complete)

    def _fail(self, problem: str, detail: str) -> None:
        if all(p != problem for p, _ in self.problems):
            self.problems.append((problem, detail))

    def _lose(self, problem: str, size: int) -> None:
        """A page begun but lost with its stream (cut off, or corrupt after it)."""
        self.unit_tally("extract/read:pages")
        self.unit_tally(f"extract/lost_pages:{problem}")
        self.unit_tally("extract/lost:bytes", size)

    def _malformed(self, reason: str, size: int) -> None:
        self.count("extract/dropped:malformed_page")
        self.count(f"extract/malformed_page:{reason}")
        self.tally("extract/lost:bytes", size)

    def _check_stray(self, at_end: bool) -> None:
        """A later stream of a multistream dump holds pages, then ``</mediawiki>`` in the
        last one: anything else before its first page is damage (a page without its tag)."""
        body = self._stray.strip()
        if (at_end and body == _ROOT_CLOSE) or not self.lead:
            return
        if body:
            self.tally("extract/read:pages")
            self._malformed("invalid_xml", self._stray_bytes)

    def _before_pages(self, data: bytes) -> bool:
        """Data before the first ``<page>``: the header of a whole file (parsed for the root
        check and the namespaces) or, in a later stream of a multistream dump, whitespace.
        Returns False when the unit cannot be read further (its header is not XML)."""
        if self._header is None:
            if len(self._stray) < 4096:
                self._stray += data[:4096]
            self._stray_bytes += len(data)
            return True
        if not data or any(p == "malformed_xml" for p, _ in self.problems):
            return True
        try:
            self._header.feed(data)
            events = list(self._header.read_events())
        except ET.ParseError as e:
            self._fail("malformed_xml", str(e))
            return self._root is not None  # pages after a broken <siteinfo> are still read
        for event, elem in events:
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    self._root = elem
                    name = local_name(elem.tag)
                    if name != "mediawiki":
                        raise InputFormatError(
                            f"{self.unit.describe()}: not a MediaWiki export "
                            f"(root element <{name}>)"
                        )
                continue
            self._depth -= 1
            if self._depth == 0:
                self._header_closed = True
            elif self._depth == 1:
                if local_name(elem.tag) == "siteinfo":
                    self.namespaces.update(siteinfo_namespaces(elem))
                if self._root is not None:
                    self._root.clear()
        return True

    def _last_segment(
        self, seg: bytes, complete: bool
    ) -> Generator[tuple[RawPage, int], None, None]:
        """The last page of the unit, followed by ``</mediawiki>`` in an intact last unit."""
        body = seg.rstrip()
        if body.endswith(_ROOT_CLOSE):
            if not complete:
                self._fail("truncated_stream", "compressed data ends inside a stream")
            found = self._segment(body, 0, len(body) - len(_ROOT_CLOSE))
            if found is not None:
                yield found
            return
        if self._whole:
            self._fail("truncated_stream", "XML ends inside the document")
        if not complete:
            self._fail("truncated_stream", "compressed data ends inside a stream")
        end = seg.find(_PAGE_CLOSE)
        if end < 0:
            if self.unit.wrap:
                self._fail("truncated_stream", "XML ends inside a page")
            self._lose("truncated_stream", len(seg))
            return
        end += len(_PAGE_CLOSE)
        found = self._segment(seg, 0, end)
        if found is not None:
            yield found
        if seg[end:].strip():
            self._lose("truncated_stream", len(seg) - end)  # the start of the next page

    def _segment(self, buf: bytes | bytearray, start: int, stop: int) -> tuple[RawPage, int] | None:
        """``buf[start:stop]``: a ``<page>`` element, then only whitespace. Returns the page
        and its size, or None when it is dropped as malformed (counted) or another share's."""
        self.segments += 1
        if self.owns is not None and not self.owns(self.segments - 1):
            return None
        self.tally("extract/read:pages")
        end = buf.rfind(_PAGE_CLOSE, start, stop)
        if end < 0:
            self._malformed(damage(bytes(buf[start:stop]), None), stop - start)
            return None
        end += len(_PAGE_CLOSE)
        if end < stop and buf[end:stop].strip():
            self.tally("extract/read:pages")  # bytes after the last </page>: a damaged page
            self._malformed("invalid_xml", stop - end)
            stop = end
        try:
            elem = parse_element(buf, start, end)
        except ET.ParseError as e:
            first = buf.find(_PAGE_CLOSE, start, end) + len(_PAGE_CLOSE)
            if first == end:
                self._malformed(damage(bytes(buf[start:end]), e), end - start)
                return None
            # Two pages or more in one segment: the <page> tag of the next one is damaged.
            # Keep the first page if it is intact, drop the rest as one malformed page.
            self.tally("extract/read:pages")
            self._malformed("invalid_xml", end - first)
            end = first
            try:
                elem = parse_element(buf, start, end)
            except ET.ParseError as e:
                self._malformed(damage(bytes(buf[start:end]), e), end - start)
                return None
        page = read_page(elem, self._namespace_of, self._make_site)
        if page is None:
            self._malformed("missing_field", end - start)
            return None
        return page, end - start

    def _namespace_of(self, title: str) -> int:
        """The namespace of a page without ``<ns>``, from its title's prefix."""
        self._need_namespaces()
        prefix, colon, _ = title.partition(":")
        return self.namespaces.get(prefix, 0) if colon else 0

    def _need_namespaces(self) -> None:
        """The namespace names are about to be used (a page without ``<ns>``)."""

    def _make_site(self) -> WikiSite:
        """The unit's link vocabulary (built at its first page, after the header): its language,
        and the Media/File/Category names from its own header or, for a later stream of a
        multistream dump, from planning."""
        if self._site is None:
            names = {n for n, key in self.namespaces.items() if key in LINK_DROP_NS}
            self._site = site_for(self.unit.lang, tuple(sorted(names.union(self.unit.link_ns))))
        return self._site
