"""Wikipedia dumps: plan work units, stream raw pages, clean them into articles.

Three layers, each usable on its own:

1. :func:`plan_units` (launcher): looks at the dump once and cuts it into :class:`WorkUnit` s,
   small picklable byte ranges that a worker can read without the rest of the file. A
   multistream dump (``...-multistream.xml.bz2``) gives one unit per bz2 stream, found through
   its index (``offset:page_id:title`` lines) or, without one, by scanning for bz2 stream
   headers. Any other dump (``.xml``, ``.xml.bz2``, ``.gz``, ``.xz``) is one unit.
2. :func:`read_pages` / :func:`iter_page_chunks` (workers): decompress the unit's byte range as
   a stream, cut it at each ``<page>`` and parse every page on its own (one damaged page is
   dropped, the reader resynchronises at the next ``<page>``), so memory stays bounded by
   one page (one bz2 stream for multistream units) whatever the dump size. A single-stream
   dump cannot be decompressed in parallel, so it is cut into chunks of ``pages_per_chunk``
   raw pages that the pipeline reshuffles: cleaning, the expensive part, still runs on every
   worker.
3. :func:`clean_page` (pure): one raw page to one :class:`~corpus_pipeline.records.Article`
   through wikiextractor's library (``Extractor.clean_text``), with the same choices as its
   CLI: only the article namespace, no redirects, templates expanded, links and lists
   dropped.

Bad input is a one-line :class:`~corpus_pipeline.errors.InputFormatError` when it is found on
the launcher (missing file, not XML, not a MediaWiki export, an index that does not match its
dump) and a counter when it is found on a worker, where raising would kill the whole job for
one bad stream: ``extract/dropped:truncated_stream``, ``extract/dropped:corrupt_stream``,
``extract/dropped:malformed_xml``, ``extract/dropped:malformed_page`` (with its reason,
``extract/malformed_page:<reason>``, see :func:`read_pages`). Volume counters
(``extract/read:*``, ``extract/lost:bytes``, ``extract/lost_pages:*``) say what share of the
input such damage cost. A page of unclosed
markup that would make wikiextractor's regexes quadratic has it escaped first, and is counted
(``extract/escaped:unclosed_markup``).
"""

from __future__ import annotations

import bz2
import codecs
import html
import logging
import lzma
import os
import pyexpat
import queue
import re
import threading
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Protocol

from wikiextractor.extract import (
    _DEFAULT_IGNORED_TAG_PATTERNS,
    EXT_LINK_URL_CLASS,
    Extractor,
    MagicWords,
    clean,
    compact,
    ignoreTag,
    redirectKeywords,
    resolve_template_page,
    wgUrlProtocols,
)

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.records import Article

Count = Callable[..., None]

log = logging.getLogger(__name__)

SOURCE = "wikipedia"

# Compressed bytes read per call. Small enough that the pages decoded before a corrupt or
# truncated spot are kept, large enough that the per-call overhead is nothing.
_READ_BYTES = 1 << 18
# Decompressed bytes handed to the XML parser per call: bounds memory on highly compressible
# input (a bz2 stream of repeated text inflates ~100x).
_INFLATE_BYTES = 1 << 20
# How much decompressed data the launcher reads looking for the root element.
_PROBE_BYTES = 16 << 20
# Raw bytes at the start of a .bz2 file searched for a second stream (the multistream test).
_MULTISTREAM_PROBE_BYTES = 4 << 20
# Raw bytes per read while scanning a multistream file for stream headers.
_SCAN_BYTES = 16 << 20
# Raw bytes fed to a fresh decompressor to check a candidate stream header.
_VERIFY_BYTES = 1024  # ~0.04 ms each: the header tables are in the first bytes

COMPRESSIONS = ("none", "bz2", "gz", "xz")

# A bz2 stream starts with "BZh" + block size digit; its first block with the 48-bit magic
# 0x314159265359 ("1AY&SY", the BCD digits of pi). Streams are byte-aligned, blocks inside a
# stream are not, so at a byte offset the 10-byte pair marks a stream start (a random match
# in compressed data has probability 2^-80 per byte; candidates are still verified).
_BZ2_STREAM_RE = re.compile(rb"BZh[1-9]1AY&SY")

# Namespace numbers of the canonical (English) namespace names, for the rare export versions
# (before 0.5) whose pages have no <ns> element.
_CANONICAL_NAMESPACES = {
    "Media": -2,
    "Special": -1,
    "Talk": 1,
    "User": 2,
    "User talk": 3,
    "Wikipedia": 4,
    "Wikipedia talk": 5,
    "File": 6,
    "Image": 6,
    "File talk": 7,
    "MediaWiki": 8,
    "MediaWiki talk": 9,
    "Template": 10,
    "Template talk": 11,
    "Help": 12,
    "Help talk": 13,
    "Category": 14,
    "Category talk": 15,
    "Portal": 100,
    "Portal talk": 101,
    "Draft": 118,
    "Draft talk": 119,
    "Module": 828,
    "Module talk": 829,
}

TEMPLATE_NS = 10
MODULE_NS = 828


class _Opener(Protocol):
    def __call__(self, path: str) -> BinaryIO: ...


def open_local(path: str) -> BinaryIO:
    """Default opener: a local file in binary mode (seekable)."""
    return open(path, "rb")


# ----------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class WorkUnit:
    """A byte range of a dump that one worker reads on its own (a Beam element).

    Attributes:
        path: The dump file.
        compression: ``none``, ``bz2``, ``gz`` or ``xz`` (from the file's magic bytes).
        start: First byte of the range in the (compressed) file.
        end: End of the range (exclusive); ``None`` reads to the end of the file.
        wrap: The range holds ``<page>`` elements without their ``<mediawiki>`` root (a bz2
            stream after the first one of a multistream dump): the reader adds a root.
        encoding: The dump's character encoding, declared to the parser when ``wrap`` is set.
        stream: Position of the unit in the dump (0 for a single-stream dump).
        lang: The wiki's language code from its ``<siteinfo>`` (:func:`dump_language`), ``""``
            when the header does not name one.
    """

    path: str
    compression: str = "none"
    start: int = 0
    end: int | None = None
    wrap: bool = False
    encoding: str = "utf-8"
    stream: int = 0
    lang: str = ""

    def describe(self) -> str:
        """``path[start:end]`` for messages."""
        if self.start == 0 and self.end is None:
            return self.path
        return f"{self.path}[{self.start}:{'' if self.end is None else self.end}]"


@dataclass
class RawPage:
    """One ``<page>`` of a dump, as read (latest revision only).

    Attributes:
        id: Page id.
        title: Page title.
        ns: Namespace number (0 = articles).
        redirect: The page has a ``<redirect>`` element.
        text: Wikitext of the latest revision (XML entities decoded).
        revid: Revision id, if present.
        timestamp: Revision timestamp (``2014-10-26T04:50:23Z``), if present; pins the
            ``{{CURRENTYEAR}}``-style magic words so extraction does not depend on the day.
        oversized: The text was larger than ``ExtractConfig.max_page_bytes`` and was dropped
            when read (``text`` is empty); :func:`clean_page` counts it as too large.
    """

    id: int
    title: str
    ns: int
    redirect: bool
    text: str
    revid: int | None = None
    timestamp: str = ""
    oversized: bool = False


@dataclass(frozen=True)
class TemplateStore:
    """Template definitions for wikiextractor's template expansion.

    Attributes:
        templates: Full template title (``Template:Convert``) -> template body.
        redirects: Full template title -> target title.
        prefix: The template namespace prefix of the wiki (``Template:``).
        known_namespaces: Namespace names of the wiki (``Template``, ``Category``, ...).
    """

    templates: Mapping[str, str] = field(default_factory=dict)
    redirects: Mapping[str, str] = field(default_factory=dict)
    prefix: str = "Template:"
    known_namespaces: frozenset[str] = frozenset({"Template"})


# ----------------------------------------------------------------------------------------------
# Planning (launcher)


def plan_units(
    path: str | os.PathLike[str],
    cfg: ExtractConfig,
    index_path: str | os.PathLike[str] | None = None,
    *,
    opener: _Opener = open_local,
) -> list[WorkUnit]:
    """Cut a dump into work units, checking on the way that it is a readable MediaWiki dump.

    Args:
        path: The dump: ``.xml``, ``.xml.bz2`` (single- or multistream), ``.xml.gz``,
            ``.xml.xz``; the compression is read from the magic bytes, not the name.
        cfg: Extraction config (unused here today; kept for a uniform signature).
        index_path: Multistream index (``...-multistream-index.txt.bz2``). When ``None``, the
            index beside a ``...-multistream.xml.bz2`` dump is used if it is there; otherwise
            a bz2 dump is scanned for stream headers.
        opener: Opens a path as a seekable binary file (e.g. Beam's ``FileSystems.open`` with
            ``compression_type=UNCOMPRESSED`` for ``gs://`` paths).

    Returns:
        The units in file order: one per bz2 stream of a multistream dump (the first holds
        the ``<siteinfo>`` header), else one for the whole file.

    Raises:
        InputFormatError: the file is missing, empty, not XML, not a MediaWiki export, its
            compressed header is corrupt, or the index does not match it.
    """
    del cfg
    p = os.fspath(path)
    if opener is open_local:
        p = os.path.abspath(p)  # units travel to workers whose working folder differs
    size = _file_size(p, opener)
    with opener(p) as f:
        magic = f.read(8)
    compression = _compression_of(p, magic)
    encoding, lang = _probe_header(p, compression, opener)
    whole = [WorkUnit(p, compression, 0, None, False, encoding, 0, lang)]
    if compression != "bz2":
        return whole
    if index_path is None:
        index_path = find_index(p)
    if index_path is not None:
        offsets = _index_offsets(os.fspath(index_path), p, size, opener)
    else:
        offsets = _scan_stream_offsets(p, size, opener)
    if len(offsets) <= 1:
        return whole
    bounds = [*offsets, size]
    return [
        WorkUnit(p, "bz2", bounds[i], bounds[i + 1], bounds[i] != 0, encoding, i, lang)
        for i in range(len(offsets))
    ]


def needs_chunking(unit: WorkUnit) -> bool:
    """True when a unit is a whole single-stream file: cut it with :func:`iter_page_chunks`
    and reshuffle the chunks so cleaning parallelises though decompression cannot."""
    return unit.end is None


def find_index(path: str) -> str | None:
    """The ``-index.txt.bz2`` file beside a ``...-multistream.xml.bz2`` dump, if present."""
    name = os.path.basename(path)
    if "multistream" not in name:
        return None
    stem = re.sub(r"\.xml(\.bz2)?$", "", name)
    cand = os.path.join(os.path.dirname(path), stem + "-index.txt.bz2")
    return cand if os.path.isfile(cand) else None


def _file_size(path: str, opener: _Opener) -> int:
    if opener is open_local:
        if not os.path.exists(path):
            raise InputFormatError(f"{path}: no such file; give the path of a Wikipedia dump")
        if os.path.isdir(path):
            raise InputFormatError(f"{path}: is a directory, not a Wikipedia dump file")
    try:
        with opener(path) as f:
            size = f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        raise InputFormatError(f"{path}: no such file; give the path of a Wikipedia dump") from None
    except OSError as e:
        raise InputFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise InputFormatError(f"{path}: the file is empty; download the dump again")
    return size


def _compression_of(path: str, magic: bytes) -> str:
    if magic.startswith(b"BZh") and magic[3:4].isdigit():
        kind = "bz2"
    elif magic.startswith(b"\x1f\x8b"):
        kind = "gz"
    elif magic.startswith(b"\xfd7zXZ\x00"):
        kind = "xz"
    else:
        kind = "none"
    suffix = {".bz2": "bz2", ".gz": "gz", ".xz": "xz"}.get(os.path.splitext(path)[1].lower())
    if suffix is not None and suffix != kind:
        raise InputFormatError(
            f"{path}: the name says {suffix} but the content is not {suffix}-compressed "
            f"({'uncompressed' if kind == 'none' else kind}); rename it or download it again"
        )
    return kind


def _declared_encoding(head: bytes) -> str:
    """The document encoding from its BOM or XML declaration (expat decodes it; we need the
    name to declare it again when wrapping a later stream of a multistream dump)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(b"<\x00?\x00"):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE) or head.startswith(b"\x00<\x00?"):
        return "utf-16-be"
    m = re.match(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""", head)
    return m.group(1).decode("ascii").lower() if m else "utf-8"


# Project suffixes of MediaWiki database names (``jawiki``, ``dewiktionary``).
_DBNAME_RE = re.compile(
    r"^([a-z][a-z0-9_]*?)(?:wiki|wiktionary|wikibooks|wikinews|wikiquote|wikisource|"
    r"wikiversity|wikivoyage)$"
)
# Database names of wikis that are not in one language (commonswiki, metawiki, ...).
_NOT_A_LANGUAGE = frozenset({"commons", "meta", "species", "wikidata", "incubator", "sources"})
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def language_of(dbname: str, xml_lang: str = "") -> str:
    """The language code of a wiki from its database name (``jawiki`` -> ``ja``,
    ``zh_yuewiki`` -> ``zh-yue``, ``simplewiki`` -> ``en``), else from the root's
    ``xml:lang``; ``""`` when neither names one."""
    m = _DBNAME_RE.match(dbname.strip().lower())
    if m and m.group(1) not in _NOT_A_LANGUAGE:
        code = m.group(1).replace("_", "-")
        return "en" if code == "simple" else code
    return xml_lang.strip().lower().replace("_", "-")


def dump_language(path: str | os.PathLike[str], *, opener: _Opener = open_local) -> str:
    """The language of a dump, read from its ``<siteinfo>`` (see :func:`language_of`).

    Raises:
        InputFormatError: as :func:`plan_units` (missing, empty, not a MediaWiki dump).
    """
    p = os.fspath(path)
    _file_size(p, opener)
    with opener(p) as f:
        magic = f.read(8)
    return _probe_header(p, _compression_of(p, magic), opener)[1]


def _probe_header(path: str, compression: str, opener: _Opener) -> tuple[str, str]:
    """Read the start of the dump: raise unless it is XML with a ``<mediawiki>`` root.

    A file that ends (truncated) before the root is not an error here: the reader counts it.
    Returns the document encoding and the wiki's language (:func:`language_of` of the
    ``<siteinfo>``'s ``<dbname>``, read up to the end of ``<siteinfo>`` or the first page).
    """
    parser: Any = ET.XMLPullParser(events=("start", "end"))
    head = b""
    seen = 0
    inflater = _Inflater(compression)
    xml_lang: str | None = None  # set once the root is seen
    with opener(path) as f:
        try:
            for data in inflater.inflate(_read_range(f, 0, None)):
                if len(head) < 512:
                    head += data[: 512 - len(head)]
                parser.feed(data)
                for event, elem in parser.read_events():
                    name = _local(elem.tag)
                    if xml_lang is None:
                        if name != "mediawiki":
                            raise InputFormatError(
                                f"{path}: not a MediaWiki XML dump (root element <{name}>, not "
                                "<mediawiki>); give a pages-articles dump from dumps.wikimedia.org"
                            )
                        xml_lang = elem.get(_XML_LANG) or ""
                    elif event == "end" and name == "dbname":
                        return _declared_encoding(head), language_of(elem.text or "", xml_lang)
                    elif (event == "start" and name == "page") or (
                        event == "end" and name in ("siteinfo", "mediawiki")
                    ):
                        return _declared_encoding(head), language_of("", xml_lang)
                seen += len(data)
                if seen > _PROBE_BYTES:
                    break
        except ET.ParseError as e:
            if xml_lang is not None:  # damage after the root: the reader counts it
                return _declared_encoding(head), language_of("", xml_lang)
            raise InputFormatError(
                f"{path}: not an XML file ({e}); give a Wikipedia dump (.xml, .xml.bz2)"
            ) from None
        except _CorruptData as e:
            if xml_lang is not None:
                return _declared_encoding(head), language_of("", xml_lang)
            raise InputFormatError(
                f"{path}: corrupt {compression} data at the start of the file ({e}); "
                "download it again"
            ) from None
    if xml_lang is not None:  # a root, then the end of the file or of the probe
        return _declared_encoding(head), language_of("", xml_lang)
    if seen > _PROBE_BYTES or inflater.complete:
        raise InputFormatError(
            f"{path}: no XML element in "
            f"{'the first ' + str(_PROBE_BYTES >> 20) + ' MiB' if seen else 'the file'}; "
            "not a MediaWiki dump"
        )
    return _declared_encoding(head), ""  # truncated before the root: the reader counts it


def _index_offsets(index: str, dump: str, size: int, opener: _Opener) -> list[int]:
    """Distinct stream offsets of a multistream index, checked against the dump.

    The enwiki index has ~23M lines; blocks are matched with one regex call each (a Python
    loop over lines would take minutes on the launcher).
    """
    try:
        with opener(index) as raw:
            magic = raw.read(4)
    except FileNotFoundError:
        raise InputFormatError(f"{index}: no such file (the multistream index of {dump})") from None
    found: set[bytes] = set()
    lineno = 0
    with opener(index) as raw:
        stream: Any = bz2.BZ2File(raw) if magic.startswith(b"BZh") else raw
        try:
            rest = b""
            while True:
                block = stream.read(_SCAN_BYTES)
                data = rest + block
                cut = data.rfind(b"\n") + 1 if block else len(data)
                part, rest = data[:cut], data[cut:]
                offs = _INDEX_OFFSET_RE.findall(part)
                n = part.count(b"\n") + (1 if part and not part.endswith(b"\n") else 0)
                if len(offs) != n:
                    _check_index_lines(index, part, lineno)
                found.update(offs)
                lineno += n
                if not block:
                    break
        except (OSError, EOFError) as e:
            raise InputFormatError(f"{index}: unreadable index ({e}); download it again") from None
    offsets = sorted(int(o) for o in found)
    if not offsets:
        raise InputFormatError(f"{index}: empty multistream index")
    if offsets[-1] >= size:
        raise InputFormatError(
            f"{index}: offset {offsets[-1]} is past the end of {dump} ({size} bytes); "
            "the index belongs to another dump"
        )
    with opener(dump) as f:
        for off in (offsets[0], offsets[-1]):
            f.seek(off)
            if not _BZ2_STREAM_RE.match(f.read(10)):
                raise InputFormatError(
                    f"{index}: offset {off} is not the start of a bz2 stream in {dump}; "
                    "the index belongs to another dump"
                )
    if offsets[0] != 0:
        offsets.insert(0, 0)  # the <siteinfo> header stream, which the index does not list
    return offsets


_INDEX_OFFSET_RE = re.compile(rb"^(\d+):", re.MULTILINE)


def _check_index_lines(index: str, part: bytes, first_lineno: int) -> None:
    """Raise for the first line of ``part`` that is neither blank nor ``offset:...``."""
    for i, line in enumerate(part.split(b"\n"), first_lineno + 1):
        if line.strip() and not _INDEX_OFFSET_RE.match(line):
            raise InputFormatError(
                f"{index}: line {i} is not 'offset:page_id:title'; "
                "give the -multistream-index.txt.bz2 that came with the dump"
            )


def _scan_stream_offsets(path: str, size: int, opener: _Opener) -> list[int]:
    """Offsets of the bz2 streams of a dump without index ([0] for a single-stream file)."""
    with opener(path) as f:
        head = f.read(_MULTISTREAM_PROBE_BYTES)
        if not any(m.start() > 0 for m in _BZ2_STREAM_RE.finditer(head)):
            return [0]  # a single-stream bz2 (or streams so large that splitting gains little)
        offsets = [0]
        f.seek(0)
        pos = 0
        tail = b""
        while True:
            chunk = f.read(_SCAN_BYTES)
            if not chunk:
                break
            buf = tail + chunk
            base = pos - len(tail)
            for m in _BZ2_STREAM_RE.finditer(buf):
                off = base + m.start()
                if off > offsets[-1] and _is_bz2_stream(f, off, size):
                    offsets.append(off)
            pos += len(chunk)
            tail = buf[-9:]  # a header cut by the chunk boundary is found in the next round
            f.seek(pos)
        if len(offsets) > 1 and not _starts_at_page(f, offsets[1], size):
            # Streams cut the XML anywhere (pbzip2 output): read the file as one unit.
            log.info("%s: bz2 streams are not page-aligned; reading it as one unit", path)
            return [0]
    return offsets


def _is_bz2_stream(f: BinaryIO, offset: int, size: int) -> bool:
    """Decompress the start of a candidate stream: a false header match fails quickly."""
    f.seek(offset)
    data = f.read(min(_VERIFY_BYTES, size - offset))
    try:
        bz2.BZ2Decompressor().decompress(data, 0)
    except (OSError, ValueError):
        return False
    return True


def _starts_at_page(f: BinaryIO, offset: int, size: int) -> bool:
    """Whether the stream at ``offset`` starts with a ``<page>`` (Wikimedia's layout)."""
    out = b""
    inflater = _Inflater("bz2")
    try:
        for data in inflater.inflate(_read_range(f, offset, size)):
            out += data
            if len(out.lstrip()) >= 12:
                break
    except _CorruptData:
        return False
    body = out.lstrip()
    return body.startswith(b"<page") or body.startswith(b"</mediawiki")


# ----------------------------------------------------------------------------------------------
# Reading (workers)


class _CorruptData(Exception):
    """Compressed data that cannot be decoded."""


def _read_range(f: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
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


class _Inflater:
    """Streaming decompression of concatenated streams (multistream bz2, multi-member gzip,
    concatenated xz), with bounded output per step.

    After :meth:`inflate` is exhausted, ``complete`` says whether the input ended at a stream
    boundary (False: truncated). A decoding error raises :class:`_CorruptData`; the data
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
                    raise _CorruptData(str(e)) from None
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
                raise _CorruptData(str(e)) from None
            if out:
                yield out
        self.complete = not started


class _Raised:
    """An exception crossing from the prefetch thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def _prefetched(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
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
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        thread.join()


def _local(tag: str) -> str:
    """Local name of a namespaced ElementTree tag (``{ns}page`` -> ``page``)."""
    return tag[tag.rfind("}") + 1 :]


_PAGE_OPEN = b"<page>"
_PAGE_CLOSE = b"</page>"
_ROOT_CLOSE = b"</mediawiki>"
# C0 control characters that XML 1.0 forbids (tab, newline and carriage return are allowed).
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_UNDEFINED_ENTITY = pyexpat.errors.codes[pyexpat.errors.XML_ERROR_UNDEFINED_ENTITY]
# Reasons a page is dropped as malformed (``extract/malformed_page:<reason>``).
MALFORMED_REASONS = (
    "invalid_encoding",
    "invalid_char",
    "undefined_entity",
    "invalid_xml",
    "missing_field",
)
# Stream-level problems, counted once per unit (``extract/dropped:<problem>``).
STREAM_PROBLEMS = ("truncated_stream", "corrupt_stream", "malformed_xml")


def _no_tally(name: str, n: int = 1) -> None:
    del name, n


def _is_utf8(encoding: str) -> bool:
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


def _to_utf8(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
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


def read_pages(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    count: Count,
    opener: _Opener = open_local,
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
    hold = unit.end is not None
    held: list[tuple[RawPage, int]] = []
    reader = _PageReader(unit, count, tally)
    tally("extract/read:units")
    with opener(unit.path) as f:
        # A whole file is read by one worker while the others wait for its chunks: decompress
        # it in a thread (bz2/zlib/lzma release the GIL), overlapped with the XML parsing
        # and with whatever the consumer does between pages.
        raw = _read_range(f, unit.start, unit.end)
        pages = reader.pages(raw, prefetch=unit.end is None)
        try:
            for page, size in pages:
                if _utf8_size_over(page.text, cfg.max_page_bytes):
                    # Dropped by clean_page anyway; blanked now so that a 50 MB text is not
                    # held in a chunk, pickled and copied through the shuffle on its way there.
                    page = replace(page, text="", redirect=is_redirect(page), oversized=True)
                if hold:
                    held.append((page, size))
                else:
                    yield page
        finally:
            pages.close()  # stops the prefetch thread before the file is closed
    for problem, detail in reader.problems:
        count(f"extract/dropped:{problem}")
        log.warning("%s: %s (%s)", unit.describe(), problem, detail)
    if any(problem == "corrupt_stream" for problem, _ in reader.problems):
        if held:
            tally("extract/lost_pages:corrupt_stream", len(held))
            tally("extract/lost:bytes", sum(size for _, size in held))
        return
    for page, _ in held:
        yield page


def iter_page_chunks(
    unit: WorkUnit,
    cfg: ExtractConfig,
    *,
    count: Count,
    opener: _Opener = open_local,
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

    def __init__(self, unit: WorkUnit, count: Count, tally: Count) -> None:
        self.unit = unit
        self.count = count
        self.tally = tally
        self.problems: list[tuple[str, str]] = []
        self.namespaces = dict(_CANONICAL_NAMESPACES)
        self._header: Any = None if unit.wrap else ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._root: ET.Element | None = None
        self._header_closed = False
        # A whole file must end with </mediawiki>; units of a multistream dump need not.
        self._whole = unit.end is None and not unit.wrap
        self._stray = bytearray()  # data before the first page of a later stream
        self._stray_bytes = 0

    def pages(
        self, raw: Iterable[bytes], prefetch: bool = False
    ) -> Generator[tuple[RawPage, int], None, None]:
        unit = self.unit
        inflater = _Inflater(unit.compression)
        chunks = inflater.inflate(raw)
        if prefetch and unit.compression != "none":
            chunks = _prefetched(chunks)
        if not _is_utf8(unit.encoding):
            chunks = _to_utf8(chunks, unit.encoding)
        buf = bytearray()
        in_pages = False  # buf starts at a <page>
        scan = 0  # where the search for the next <page> goes on
        keep = len(_PAGE_OPEN) - 1  # bytes kept back: a marker cut by a chunk boundary
        try:
            for data in chunks:
                self.tally("extract/read:bytes", len(data))
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
        except _CorruptData as e:
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
        self.tally("extract/read:pages")
        self.tally(f"extract/lost_pages:{problem}")
        self.tally("extract/lost:bytes", size)

    def _malformed(self, reason: str, size: int) -> None:
        self.count("extract/dropped:malformed_page")
        self.count(f"extract/malformed_page:{reason}")
        self.tally("extract/lost:bytes", size)

    def _check_stray(self, at_end: bool) -> None:
        """A later stream of a multistream dump holds pages, then ``</mediawiki>`` in the
        last one: anything else before its first page is damage (a page without its tag)."""
        body = self._stray.strip()
        if at_end and body == _ROOT_CLOSE:
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
                    name = _local(elem.tag)
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
                if _local(elem.tag) == "siteinfo":
                    self._siteinfo(elem)
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
        and its size, or None when it is dropped as malformed (counted)."""
        self.tally("extract/read:pages")
        end = buf.rfind(_PAGE_CLOSE, start, stop)
        if end < 0:
            self._malformed(_damage(bytes(buf[start:stop]), None), stop - start)
            return None
        end += len(_PAGE_CLOSE)
        if end < stop and buf[end:stop].strip():
            self.tally("extract/read:pages")  # bytes after the last </page>: a damaged page
            self._malformed("invalid_xml", stop - end)
            stop = end
        try:
            elem = _parse(buf, start, end)
        except ET.ParseError as e:
            first = buf.find(_PAGE_CLOSE, start, end) + len(_PAGE_CLOSE)
            if first == end:
                self._malformed(_damage(bytes(buf[start:end]), e), end - start)
                return None
            # Two pages or more in one segment: the <page> tag of the next one is damaged.
            # Keep the first page if it is intact, drop the rest as one malformed page.
            self.tally("extract/read:pages")
            self._malformed("invalid_xml", end - first)
            end = first
            try:
                elem = _parse(buf, start, end)
            except ET.ParseError as e:
                self._malformed(_damage(bytes(buf[start:end]), e), end - start)
                return None
        page = self._page(elem)
        if page is None:
            self._malformed("missing_field", end - start)
            return None
        return page, end - start

    def _siteinfo(self, elem: ET.Element) -> None:
        for sub in elem.iter():
            if _local(sub.tag) == "namespace" and sub.text:
                key = sub.get("key")
                if key is not None and key.lstrip("-").isdigit():
                    self.namespaces[sub.text] = int(key)

    def _page(self, elem: ET.Element) -> RawPage | None:
        title = ns = pid = revid = None
        redirect = False
        text = ""
        timestamp = ""
        for child in elem:
            name = _local(child.tag)
            if name == "title":
                title = child.text or ""
            elif name == "ns":
                ns = child.text
            elif name == "id":
                pid = child.text
            elif name == "redirect":
                redirect = True
            elif name == "revision":
                # Full-history dumps list every revision: the last one is the current text.
                for sub in child:
                    sname = _local(sub.tag)
                    if sname == "text":
                        text = sub.text or ""
                    elif sname == "id":
                        revid = sub.text
                    elif sname == "timestamp":
                        timestamp = sub.text or ""
        if title is None or pid is None or not pid.strip().isdigit():
            return None
        if ns is not None and ns.strip().lstrip("-").isdigit():
            ns_num = int(ns)
        elif ns is None:
            prefix, colon, _ = title.partition(":")
            ns_num = self.namespaces.get(prefix, 0) if colon else 0
        else:
            return None
        return RawPage(
            id=int(pid),
            title=title,
            ns=ns_num,
            redirect=redirect,
            text=text,
            revid=int(revid) if revid and revid.strip().isdigit() else None,
            timestamp=timestamp,
        )


def _parse(buf: bytes | bytearray, start: int, end: int) -> ET.Element:
    """Parse ``buf[start:end]`` as one XML element (no copy of the bytes)."""
    parser = ET.XMLParser()
    with memoryview(buf) as view:
        parser.feed(view[start:end])
    return parser.close()


def _damage(data: bytes, err: ET.ParseError | None) -> str:
    """Why a page does not parse (one of :data:`MALFORMED_REASONS`)."""
    if err is not None and getattr(err, "code", None) == _UNDEFINED_ENTITY:
        return "undefined_entity"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_encoding"
    if _CONTROL_RE.search(data):
        return "invalid_char"
    return "invalid_xml"


# ----------------------------------------------------------------------------------------------
# Cleaning (pure)

# Same as wikiextractor's CLI without --links: its default ignored tags plus <a>.
_IGNORED_TAG_PATTERNS = [*_DEFAULT_IGNORED_TAG_PATTERNS, ignoreTag("a")]

_NO_TEMPLATES = TemplateStore()

# Magic words that wikiextractor sets from the wall clock on every clean_text() call.
_CLOCK_WORDS = ("currentyear", "currentmonth", "currentday", "currenthour", "currenttime")
_TIMESTAMP_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)")


class _PinnedMagicWords(MagicWords):
    """Clock magic words fixed to the revision's timestamp: the same dump gives the same
    text whatever the day it is extracted on (wikiextractor reads the wall clock)."""

    def __init__(self, timestamp: str) -> None:
        super().__init__()
        m = _TIMESTAMP_RE.match(timestamp) or _TIMESTAMP_RE.match("1970-01-01T00:00:00")
        assert m is not None
        y, mo, d, h, mi, s = m.groups()
        pinned = (y, mo, d, h, f"{h}:{mi}:{s}")
        self.values.update(zip(_CLOCK_WORDS, pinned, strict=True))

    def __setitem__(self, name: str, value: str) -> None:
        if name not in _CLOCK_WORDS:
            self.values[name] = value


def _xml_escape(text: str) -> str:
    """Re-escape the text as it stands in the dump: wikiextractor works on the escaped form
    (its CLI never decodes the XML) and unescapes in its own order, so feeding it decoded
    text would change how tags inside templates and links are handled."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    return text.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# Markup wikiextractor can leave behind (seen on real pages: a template inside a construct
# its brace matcher skips, a stray <onlyinclude>). One scan finds whether a page needs the
# scrub below; most pages do not.
_RESIDUE_RE = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{\||\|\}|<[A-Za-z/!]|&[A-Za-z#][A-Za-z0-9]*;")
_TEMPLATE_RE = re.compile(r"\{\{[^{}]*\}\}")
_LINK_RE = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]")
_LINK_DROP_PREFIXES = ("file:", "image:", "category:", "media:")
_TAG_NAMES = (
    "a|abbr|b|bdi|big|blockquote|br|categorytree|ce|center|chem|cite|code|dd|del|dfn|div|dl|dt|"
    "em|font|gallery|graph|h[1-6]|hiero|hr|i|imagemap|includeonly|inputbox|ins|kbd|li|mapframe|"
    "math|nowiki|noinclude|ol|onlyinclude|p|poem|pre|q|ref|references|rp|rt|ruby|s|samp|score|"
    "section|small|source|span|strike|strong|sub|sup|syntaxhighlight|table|templatestyles|td|"
    "th|timeline|tr|tt|u|ul|var|wbr"
)
# A tag has no attributes or attributes with "=": "if a <b and c> d" in a formula stays.
_TAG_ONLY_RE = re.compile(
    rf"</?(?:{_TAG_NAMES})(?:\s+[^<>=]+=[^<>]*)?\s*/?>", re.IGNORECASE | re.DOTALL
)
_TAG_RE = re.compile(rf"{_TAG_ONLY_RE.pattern}|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_STRAY_RE = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{\||\|\}|<!--|-->")
_SPACES_RE = re.compile(r"[ \t]{2,}")


def _link_text(m: re.Match[str]) -> str:
    target, label = m.group(1), m.group(2)
    if target.strip().lower().startswith(_LINK_DROP_PREFIXES):
        return ""
    return label if label is not None else target


def _scrub(text: str) -> str:
    """Remove markup left by wikiextractor: templates, links, tables, tags, entities."""
    for _ in range(8):  # innermost first; nesting deeper than this is left to the stray pass
        text, n = _TEMPLATE_RE.subn("", text)
        if not n:
            break
    for _ in range(4):
        text, n = _LINK_RE.subn(_link_text, text)
        if not n:
            break
    if "&" in text:
        text = html.unescape(text)
    text = _strip_tags(text)
    text = _STRAY_RE.sub("", text)
    return _SPACES_RE.sub(" ", text)


def _strip_tags(text: str) -> str:
    """``_TAG_RE.sub("", text)`` in linear time: a ``<!--`` after the last ``-->`` can never
    match, yet each one would scan to the end of the text (quadratic on a page of unclosed
    comments). No match crosses the end of the last ``-->`` (a tag stops at its first ``>``),
    so the text after it only needs the tag half of the pattern: the result is identical."""
    last = text.rfind("-->")
    cut = last + 3 if last >= 0 else 0
    if text.find("<!--", cut) < 0:
        return _TAG_RE.sub("", text)
    return _TAG_RE.sub("", text[:cut]) + _TAG_ONLY_RE.sub("", text[cut:])


def _join_paragraphs(paragraphs: list[str]) -> str:
    text = "\n".join(s for s in (p.strip() for p in paragraphs) if s)
    if _RESIDUE_RE.search(text) is None:
        return text
    scrubbed = _scrub(text)
    # A line that was only markup is gone; one that became punctuation only is noise.
    return "\n".join(s for s in (p.strip() for p in scrubbed.split("\n")) if _has_word(s))


def _has_word(s: str) -> bool:
    return any(c.isalnum() for c in s)


def _utf8_size_over(text: str, limit: int) -> bool:
    """len(text.encode()) > limit, without encoding in the common case."""
    n = len(text)
    if n > limit:
        return True
    if n * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


# ----------------------------------------------------------------------------------------------
# Guard against unclosed markup
#
# wikiextractor matches markup with regexes that scan forward from every opener to its closer.
# Where the closer never comes, each opener scans to the end of the text (or of the line) and
# fails: quadratic work, cubic for some. A vandalised page of 100-200 kB of such junk held a
# worker for one to ten minutes. The openers, the regex that scans from them, and what fixes it:
#
# - ``<`` + a tag name with no ``>`` before the next ``<`` (``<ref <ref ...``), where a quoted
#   attribute counts as running to its closing quote as wikiextractor's patterns read it: the
#   ignored, self-closing, line-break and block tag patterns and ``dropNested`` of the discarded
#   elements (``<\s*ref\b(?:...)*>``, ``<span\b.*?>``) all scan on to a later ``>``. The ``<``
#   is escaped (``&lt;``): text, the way a browser shows it.
# - ``<math>`` / ``<code>`` with no closing tag after them: the placeholder patterns
#   (``<\s*math(...)>.*?</math>``) scan to the end. They run after wikiextractor's second
#   unescape, so the ``<`` is escaped twice; :func:`_scrub` decodes what is left.
# - ``<syntaxhighlight `` with no ``</syntaxhighlight>`` after it: wikiextractor's
#   ``syntaxhighlight`` regex retries every later ``>`` (cubic). The ``<`` is escaped.
# - ``<!--`` with no ``-->`` after it: the ``comment`` regex scans to the end. Dropped, as the
#   scrub drops a stray ``<!--`` from the output today.
# - ``[`` + URL with no reachable ``]`` (``[http://x [http://x ...``): ``ExtLinkBracketedRegex``
#   scans the rest of the line for every opener, once per shorter URL prefix. The ``[`` becomes
#   ``&#91;``, which wikiextractor turns back into ``[`` after its link passes.
# - Headings: ``section`` (``(==+)\s*(.*?)\s*\1``, matched by ``compact`` on every line) is
#   cubic in a long leading ``=`` run and in long whitespace runs (``&nbsp;``, U+3000 are not
#   collapsed). See :func:`_guard_heading_lines`.
#
# Every opener above is one that can never match (or, for ``<``, one no well-formed tag has),
# and the edit changes what the page shows only where wikiextractor would have run a pattern
# across it. Still, each family is edited only when its estimated regex work on the page is
# over _GUARD_BUDGET (character steps; ~200 ns each in wikiextractor's patterns): a normal page
# is never edited, so its text stays byte-identical to wikiextractor's CLI, and a page that is
# edited is counted (``extract/escaped:unclosed_markup``).
_GUARD_BUDGET = 2_000_000

_TAG_OPENER_RE = re.compile(r"<\s*[A-Za-z]")
# A tag opener that is not plainly closed before the next "<" (quoted values included): one
# C-speed pass; only these few get the exact reading of _tag_runs_on().
_SUSPECT_TAG_RE = re.compile(r"""<\s*[A-Za-z](?!(?:"[^"<]*"|'[^'<]*'|[^<>"'])*>)""")
_TAG_STOP_RE = re.compile(r"[>\"']")
_PLACEHOLDER_OPEN_RE = re.compile(r"<\s*(?:math|code)", re.IGNORECASE)
_PLACEHOLDER_RE = re.compile(r"<\s*(/\s*)?(math|code)", re.IGNORECASE)
_PLACEHOLDER_ENTITY_RE = re.compile(r"&lt;\s*(/\s*)?(math|code)", re.IGNORECASE)
_PLACEHOLDER_CLOSE_END_RE = re.compile(r"\s*(?:>|&gt;)")
_SYNTAXHIGHLIGHT_OPEN = "<syntaxhighlight "
_SYNTAXHIGHLIGHT_CLOSE = "</syntaxhighlight>"
_EXT_OPEN_RE = re.compile(
    r"\[(?=[A-Za-z/])(?:" + "|".join(map(re.escape, wgUrlProtocols)) + ")", re.IGNORECASE
)
_URL_RUN_RE = re.compile(EXT_LINK_URL_CLASS + "*")
_SPACE_RUN_RE = re.compile(r"\s*")
# What ends the label of a bracketed external link: its "]", or a character the label cannot
# hold (controls, newline included).
_EXT_LABEL_STOP_RE = re.compile(r"[\]\x00-\x08\x0a-\x1f]")

_Edits = dict[int, tuple[int, str]]  # position -> (length replaced, replacement)


def _guard_markup(text: str) -> str:
    """The page's wikitext with the openers that would make wikiextractor quadratic
    neutralised (see above), or ``text`` itself when its estimated work is normal."""
    edits: _Edits = {}
    if "<" in text or "&lt;" in text:
        _guard_angle_openers(text, edits)
    if "[" in text:
        _guard_external_links(text, edits)
    if not edits:
        return text
    out = []
    cur = 0
    for pos in sorted(edits):
        length, replacement = edits[pos]
        out.append(text[cur:pos])
        out.append(replacement)
        cur = pos + length
    out.append(text[cur:])
    return "".join(out)


def _tag_runs_on(text: str, p: int, nxt: int, last_quote: dict[str, int]) -> bool:
    """Does the tag opened at ``p`` run past ``nxt`` (the next ``<``) without a ``>``?

    Reads it as wikiextractor's tag patterns do: a quote jumps to the next same quote, if
    there is one, whatever lies between."""
    q = p + 1
    while True:
        m = _TAG_STOP_RE.search(text, q, nxt)
        if m is None:
            return True
        ch = m.group()
        if ch == ">":
            return False
        close = text.find(ch, m.end(), nxt)
        if close >= 0:
            q = close + 1
        elif last_quote[ch] > nxt:
            return True  # the quoted value runs over the next "<"
        else:
            q = m.end()  # no closing quote anywhere: a plain character


def _guard_angle_openers(text: str, edits: _Edits) -> None:
    n = len(text)
    last_quote = {'"': text.rfind('"'), "'": text.rfind("'")}
    dead_tags = []
    for m in _SUSPECT_TAG_RE.finditer(text):
        p = m.start()
        nxt = text.find("<", p + 1)
        if _tag_runs_on(text, p, n if nxt < 0 else nxt, last_quote):
            dead_tags.append(p)
    # Work: each dead opener is scanned on to about the next well-formed tag (or the end).
    work = 0
    following = n
    for i in range(len(dead_tags) - 1, -1, -1):
        p = dead_tags[i]
        after = _TAG_OPENER_RE.search(text, p + 1)
        if after is None:
            following = n
        elif i + 1 == len(dead_tags) or after.start() != dead_tags[i + 1]:
            following = after.start()
        work += following - p
    if work > _GUARD_BUDGET:
        for p in dead_tags:
            # <math and <code are matched again after wikiextractor's second unescape.
            edits[p] = (1, "&amp;lt;" if _PLACEHOLDER_OPEN_RE.match(text, p) else "&lt;")

    last_comment_end = text.rfind("-->")
    cut = last_comment_end + 1 if last_comment_end >= 0 else 0  # "<!--" needs "-->" at +4
    dead_comments = []
    p = text.find("<!--", cut)
    while p >= 0:
        dead_comments.append(p)
        p = text.find("<!--", p + 4)
    if sum(n - p for p in dead_comments) > _GUARD_BUDGET:
        for p in dead_comments:
            edits[p] = (4, "")

    last_close: dict[str, int] = {}
    openers: list[tuple[int, str, int]] = []
    regexes = (_PLACEHOLDER_RE, _PLACEHOLDER_ENTITY_RE) if "&lt;" in text else (_PLACEHOLDER_RE,)
    for regex in regexes:
        for m in regex.finditer(text):
            tag = m.group(2).lower()
            if m.group(1) is None:
                openers.append((m.start(), tag, 1 if text[m.start()] == "<" else 4))
            elif _PLACEHOLDER_CLOSE_END_RE.match(text, m.end()):
                last_close[tag] = max(last_close.get(tag, -1), m.start())
    dead = [(p, length) for p, tag, length in openers if last_close.get(tag, -1) < p]
    if sum(n - p for p, _ in dead) > _GUARD_BUDGET:
        for p, length in dead:
            edits[p] = (length, "&amp;lt;")

    if _SYNTAXHIGHLIGHT_OPEN in text:
        last = text.rfind(_SYNTAXHIGHLIGHT_CLOSE)
        first_dead = text.find(_SYNTAXHIGHLIGHT_OPEN, max(last, 0))
        if first_dead >= 0:
            # Each dead opener rescans the rest once per ">" after it.
            dead_sh = []
            p = first_dead
            while p >= 0:
                dead_sh.append(p)
                p = text.find(_SYNTAXHIGHLIGHT_OPEN, p + 1)
            gts = text.count(">", first_dead)
            work, prev = 0, first_dead
            for p in dead_sh:
                gts -= text.count(">", prev, p)
                prev = p
                work += (n - p) * (gts + 1)
            if work > _GUARD_BUDGET:
                for p in dead_sh:
                    edits.setdefault(p, (1, "&lt;"))


def _guard_external_links(text: str, edits: _Edits) -> None:
    n = len(text)
    dead: list[int] = []
    work = 0
    searched_from, stop = -1, -1  # the label stop found from searched_from (cached: c grows)
    for m in _EXT_OPEN_RE.finditer(text):
        p = m.start()
        url_end = _URL_RUN_RE.match(text, p + 1).end()  # type: ignore[union-attr]
        c = _SPACE_RUN_RE.match(text, url_end).end()  # type: ignore[union-attr]
        if not searched_from <= c <= stop:
            found = _EXT_LABEL_STOP_RE.search(text, c)
            searched_from, stop = c, (found.start() if found else n)
        if stop < n and text[stop] == "]":
            continue
        dead.append(p)
        work += (url_end - p) * (stop - p)
    if work > _GUARD_BUDGET:
        for p in dead:
            edits[p] = (1, "&#91;")


# Lines that compact() tests with wikiextractor's ``section`` regex.
_HEADING_LINE_RE = re.compile(r"^==[^\n]*", re.MULTILINE)
_LONG_EQUALS_RE = re.compile(r"={9,}")
_BLANK_RUN_RE = re.compile(r"[^\S\n]+")
_LONG_BLANK_RE = re.compile(r"([^\S\n])[^\S\n]+")


def _guard_heading_lines(text: str) -> str:
    """Cheap stand-ins for heading lines that would make ``section`` cubic.

    ``(==+)\\s*(.*?)\\s*\\1`` costs about L * n * (w + 1)^2 + L^3 / 48 on a line of n characters
    with a leading run of L ``=`` and whitespace runs of up to w. A line over the budget gets
    its ``=`` runs cut to 8 and its whitespace runs to one character: a heading stays a heading
    and a paragraph a paragraph (only runs of two or more ``=`` decide that), and the cost
    drops to ~32 n. Headings are not in the output (``keep_sections``: only their title)."""
    if "==" not in text:
        return text
    out = []
    cur = 0
    for m in _HEADING_LINE_RE.finditer(text):
        line = m.group()
        lead = len(line) - len(line.lstrip("="))
        blank = max((len(b) for b in _BLANK_RUN_RE.findall(line)), default=0)
        if lead * len(line) * (blank + 1) ** 2 + lead**3 // 48 <= _GUARD_BUDGET:
            continue
        line = _LONG_BLANK_RE.sub(r"\1", _LONG_EQUALS_RE.sub("=" * 8, line))
        out.append(text[cur : m.start()])
        out.append(line)
        cur = m.end()
    if not out:
        return text
    out.append(text[cur:])
    return "".join(out)


# The head of wikiextractor's redirectRE, built the same way (the keywords are regex text).
_REDIRECT_HEAD_RE = re.compile(r"#(?:" + "|".join(redirectKeywords) + r")\b", re.IGNORECASE)


def _redirect_text(text: str) -> bool:
    """``redirectRE.match(text) is not None`` in linear time.

    The regex, ``#REDIRECT\\b.*?\\[\\[([^\\]]*)]]``, retries every ``[[`` of the first line and
    scans from each to the first ``]`` of the text: quadratic on a first line of ``[[`` without
    ``]]``. It matches if, for some ``[[`` on the first line, that first ``]`` is a ``]]``."""
    m = _REDIRECT_HEAD_RE.match(text)
    if m is None:
        return False
    line_end = text.find("\n", m.end())
    if line_end < 0:
        line_end = len(text)
    close = -1
    i = text.find("[[", m.end(), line_end)
    while i >= 0:
        if close < i + 2:
            close = text.find("]", i + 2)
            if close < 0:
                return False
        if text.startswith("]]", close):
            return True
        i = text.find("[[", i + 1, line_end)
    return False


def is_redirect(page: RawPage) -> bool:
    """A ``<redirect>`` element, or (older dumps without it) ``#REDIRECT [[...]]`` text."""
    return page.redirect or (page.text[:1] == "#" and _redirect_text(page.text))


def clean_page(
    page: RawPage,
    cfg: ExtractConfig,
    *,
    count: Count,
    templates: TemplateStore | None = None,
    keep_sections: bool = False,
) -> Article | None:
    """Clean one raw page into an article with wikiextractor's library.

    Matches wikiextractor's CLI page for page (same namespace and redirect rules, same
    ``Extractor`` options as its defaults without ``--links``), with three differences, all
    for BERT pretraining text: section headings are dropped (the BERT paper: "we extract only
    the text passages and ignore lists, tables, and headers"; a heading kept as a line would
    be a one-word "sentence" in NSP pairs), HTML entities are not re-escaped, and markup that
    wikiextractor leaves behind is removed.

    Args:
        page: From :func:`read_pages`.
        cfg: ``namespaces``, ``max_page_bytes``, ``min_article_chars``, ``expand_templates``.
        count: Counter callback: ``extract/pages``; then exactly one of
            ``extract/dropped:namespace``, ``extract/redirects``, ``extract/dropped:too_large``,
            ``extract/dropped:extract_error``, ``extract/dropped:empty``,
            ``extract/dropped:short``, ``extract/articles`` (plus ``extract/characters``);
            and ``extract/escaped:unclosed_markup`` for a page whose unclosed markup was
            escaped so that wikiextractor's regexes stay linear on it (:func:`_guard_markup`).
        templates: Template definitions to expand (:func:`collect_templates`); none by default,
            so templates expand to nothing (parser functions and magic words still work).
        keep_sections: Keep section headings as their own lines (wikiextractor's default).

    Returns:
        ``Article(id="wiki:<page id>", title, "wikipedia", text)`` with paragraphs separated by
        newlines, or None when the page is dropped (counted).
    """
    count("extract/pages")
    if page.ns not in cfg.namespaces:
        count("extract/dropped:namespace")
        return None
    if is_redirect(page):
        count("extract/redirects")
        return None
    if page.oversized or _utf8_size_over(page.text, cfg.max_page_bytes):
        count("extract/dropped:too_large")
        return None
    store = templates if templates is not None else _NO_TEMPLATES
    extractor = Extractor(
        str(page.id),
        "" if page.revid is None else str(page.revid),
        "",
        page.title,
        [],
        templates=store.templates,
        redirects=store.redirects,
        templatePrefix=store.prefix,
        knownNamespaces=store.known_namespaces,
        ignored_tag_patterns=_IGNORED_TAG_PATTERNS,
        keepSections=keep_sections,
    )
    extractor.magicWords = _PinnedMagicWords(page.timestamp)
    wikitext = _guard_markup(page.text)
    guarded = wikitext is not page.text
    try:
        # Extractor.clean_text() with the heading guard between its two steps (the magic
        # words it sets from the wall clock are pinned above).
        extractor.magicWords["namespace"] = page.title[: max(0, page.title.find(":"))]
        extractor.magicWords["pagename"] = page.title
        extractor.magicWords["fullpagename"] = page.title
        cleaned = clean(
            extractor, _xml_escape(wikitext), expand_templates=cfg.expand_templates, html_safe=False
        )
        compactable = _guard_heading_lines(cleaned)
        guarded = guarded or compactable is not cleaned
        paragraphs = compact(compactable, mark_headers=False, extractor=extractor)
    except Exception as e:
        # wikiextractor is a heuristic parser: one pathological page must not fail the job.
        log.warning(
            "wiki:%s %r: wikiextractor failed (%s: %s)", page.id, page.title, type(e).__name__, e
        )
        count("extract/dropped:extract_error")
        return None
    if guarded:
        count("extract/escaped:unclosed_markup")
    text = _join_paragraphs(paragraphs)
    if not text:
        count("extract/dropped:empty")
        return None
    if len(text) < cfg.min_article_chars:
        count("extract/dropped:short")
        return None
    count("extract/articles")
    count("extract/characters", len(text))
    return Article(id=f"wiki:{page.id}", title=page.title, source=SOURCE, text=text)


def clean_pages(
    pages: Iterable[RawPage],
    cfg: ExtractConfig,
    *,
    count: Count,
    templates: TemplateStore | None = None,
) -> Iterator[Article]:
    """:func:`clean_page` over a chunk, keeping the articles."""
    for page in pages:
        article = clean_page(page, cfg, count=count, templates=templates)
        if article is not None:
            yield article


def template_definition(page: RawPage, prefix: str = "Template:") -> tuple[str, str, str] | None:
    """The template (or template redirect) a page defines, as wikiextractor's CLI loads it.

    Returns:
        ``("template", title, body)``, ``("redirect", title, target)`` or None for pages
        outside the Template and Module namespaces and empty definitions.
    """
    if page.ns not in (TEMPLATE_NS, MODULE_NS):
        return None
    result = resolve_template_page(page.title, [_xml_escape(page.text)])
    if result is None:
        return None
    kind, value = result
    return kind, page.title, value


def collect_templates(
    pages: Iterable[RawPage],
    prefix: str = "Template:",
    known_namespaces: Iterable[str] = ("Template",),
) -> TemplateStore:
    """A :class:`TemplateStore` from the template pages among ``pages`` (a first pass over
    the dump, as wikiextractor's CLI does before extracting)."""
    templates: dict[str, str] = {}
    redirects: dict[str, str] = {}
    for page in pages:
        d = template_definition(page, prefix)
        if d is None:
            continue
        kind, title, value = d
        (redirects if kind == "redirect" else templates)[title] = value
    return TemplateStore(templates, redirects, prefix, frozenset(known_namespaces))
