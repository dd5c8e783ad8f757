"""Wikipedia dumps, launcher side: probe a dump and cut it into work units.

:func:`plan_units` looks at the dump once and cuts it into
:class:`~corpus_pipeline.sources.wikipedia_records.WorkUnit` s, small picklable byte ranges that a
worker can read without the rest of the file. A multistream dump (``...-multistream.xml.bz2``)
gives one unit per bz2 stream, found through its index (``offset:page_id:title`` lines) or,
without one, by scanning for bz2 stream headers. Any other dump (``.xml``, ``.xml.bz2``, ``.gz``,
``.xz``) is one unit.

Bad input found here is a one-line :class:`~corpus_pipeline.errors.InputFormatError` (missing
file, not XML, not a MediaWiki export, an index that does not match its dump).
"""

from __future__ import annotations

import bz2
import codecs
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.sources.wikipedia_inflate import (
    CorruptData,
    Inflater,
    read_range,
)
from corpus_pipeline.sources.wikipedia_records import (
    Opener,
    WorkUnit,
    local_name,
    open_local,
)
from corpus_pipeline.sources.wikipedia_site import LINK_DROP_NS

log = logging.getLogger(__name__)


# How much decompressed data the launcher reads looking for the root element.
_PROBE_BYTES = 16 << 20
# Raw bytes at the start of a .bz2 file searched for a second stream (the multistream test).
_MULTISTREAM_PROBE_BYTES = 4 << 20
# Raw bytes per read while scanning a multistream file for stream headers.
_SCAN_BYTES = 16 << 20
# Decompressed bytes of a multistream index read first (the block then doubles up to
# _SCAN_BYTES): a --max-docs plan needs only its first lines.
_FIRST_INDEX_BLOCK = 64 << 10
# Raw bytes fed to a fresh decompressor to check a candidate stream header.
_VERIFY_BYTES = 1024  # ~0.04 ms each: the header tables are in the first bytes

COMPRESSIONS = ("none", "bz2", "gz", "xz")

# A bz2 stream starts with "BZh" + block size digit; its first block with the 48-bit magic
# 0x314159265359 ("1AY&SY", the BCD digits of pi). Streams are byte-aligned, blocks inside a
# stream are not, so at a byte offset the 10-byte pair marks a stream start (a random match
# in compressed data has probability 2^-80 per byte; candidates are still verified).
_BZ2_STREAM_RE = re.compile(rb"BZh[1-9]1AY&SY")


def plan_units(
    path: str | os.PathLike[str],
    cfg: ExtractConfig,
    index_path: str | os.PathLike[str] | None = None,
    *,
    opener: Opener = open_local,
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
    return list(iter_units(path, cfg, index_path, opener=opener))


def iter_units(
    path: str | os.PathLike[str],
    cfg: ExtractConfig,
    index_path: str | os.PathLike[str] | None = None,
    *,
    opener: Opener = open_local,
) -> Iterator[WorkUnit]:
    """:func:`plan_units` one unit at a time, for a consumer that may stop early
    (``--max-docs``): a multistream index is then read only as far as the units taken need
    (the enwiki index is ~1 GB decompressed). An index line found bad, or an offset past the
    end of the dump, raises when reading reaches it; the last offset's stream header is
    checked when the index is read to its end.

    Raises:
        InputFormatError: as :func:`plan_units`, raised by the first ``next()`` for the
            dump itself.
    """
    del cfg
    p = os.fspath(path)
    if opener is open_local:
        p = os.path.abspath(p)  # units travel to workers whose working folder differs
    size = _file_size(p, opener)
    with opener(p) as f:
        magic = f.read(8)
    compression = _compression_of(p, magic)
    encoding, lang, link_ns = _probe_header(p, compression, opener)
    whole = WorkUnit(p, compression, 0, None, False, encoding, 0, lang, link_ns)
    if compression != "bz2":
        yield whole
        return
    if index_path is None:
        index_path = find_index(p)
    if index_path is not None:
        offsets: Iterable[int] = _index_offsets(os.fspath(index_path), p, size, opener)
    else:
        offsets = _scan_stream_offsets(p, size, opener)
    it = iter(offsets)
    start = next(it)
    i = 0
    for nxt in it:
        yield WorkUnit(p, "bz2", start, nxt, start != 0, encoding, i, lang, link_ns)
        start, i = nxt, i + 1
    if i == 0:
        yield whole
    else:
        yield WorkUnit(p, "bz2", start, size, True, encoding, i, lang, link_ns)


def needs_chunking(unit: WorkUnit) -> bool:
    """True when a unit is a whole single-stream file: read it in shares, one per worker
    (``wikipedia_shares.iter_share_chunks``), so that its work is spread though it is one unit."""
    return unit.end is None


def find_index(path: str) -> str | None:
    """The ``-index.txt.bz2`` file beside a ``...-multistream.xml.bz2`` dump, if present."""
    name = os.path.basename(path)
    if "multistream" not in name:
        return None
    stem = re.sub(r"\.xml(\.bz2)?$", "", name)
    cand = os.path.join(os.path.dirname(path), stem + "-index.txt.bz2")
    return cand if os.path.isfile(cand) else None


def _file_size(path: str, opener: Opener) -> int:
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


def dump_language(path: str | os.PathLike[str], *, opener: Opener = open_local) -> str:
    """The language of a dump, read from its ``<siteinfo>`` (see :func:`language_of`).

    Raises:
        InputFormatError: as :func:`plan_units` (missing, empty, not a MediaWiki dump).
    """
    p = os.fspath(path)
    _file_size(p, opener)
    with opener(p) as f:
        magic = f.read(8)
    return _probe_header(p, _compression_of(p, magic), opener).lang


class _Header(NamedTuple):
    encoding: str
    lang: str
    link_ns: tuple[str, ...] = ()


def _probe_header(path: str, compression: str, opener: Opener) -> _Header:
    """Read the start of the dump: raise unless it is XML with a ``<mediawiki>`` root.

    A file that ends (truncated) before the root is not an error here: the reader counts it.
    Returns the document encoding, the wiki's language (:func:`language_of` of the
    ``<siteinfo>``'s ``<dbname>``) and its names of the Media, File and Category namespaces,
    read up to the end of ``<siteinfo>`` or the first page.
    """
    parser: Any = ET.XMLPullParser(events=("start", "end"))
    head = b""
    seen = 0
    inflater = Inflater(compression)
    xml_lang: str | None = None  # set once the root is seen
    dbname = ""
    link_ns: list[str] = []

    def found() -> _Header:
        return _Header(
            _declared_encoding(head), language_of(dbname, xml_lang or ""), tuple(link_ns)
        )

    with opener(path) as f:
        try:
            for data in inflater.inflate(read_range(f, 0, None)):
                if len(head) < 512:
                    head += data[: 512 - len(head)]
                parser.feed(data)
                for event, elem in parser.read_events():
                    name = local_name(elem.tag)
                    if xml_lang is None:
                        if name != "mediawiki":
                            raise InputFormatError(
                                f"{path}: not a MediaWiki XML dump (root element <{name}>, not "
                                "<mediawiki>); give a pages-articles dump from dumps.wikimedia.org"
                            )
                        xml_lang = elem.get(_XML_LANG) or ""
                    elif event == "end" and name == "dbname":
                        dbname = elem.text or ""
                    elif event == "end" and name == "namespace":
                        key = (elem.get("key") or "").strip()
                        if key.lstrip("-").isdigit() and int(key) in LINK_DROP_NS and elem.text:
                            link_ns.append(elem.text)
                    elif (event == "start" and name == "page") or (
                        event == "end" and name in ("siteinfo", "mediawiki")
                    ):
                        return found()
                seen += len(data)
                if seen > _PROBE_BYTES:
                    break
        except ET.ParseError as e:
            if xml_lang is not None:  # damage after the root: the reader counts it
                return found()
            raise InputFormatError(
                f"{path}: not an XML file ({e}); give a Wikipedia dump (.xml, .xml.bz2)"
            ) from None
        except CorruptData as e:
            if xml_lang is not None:
                return found()
            raise InputFormatError(
                f"{path}: corrupt {compression} data at the start of the file ({e}); "
                "download it again"
            ) from None
    if xml_lang is not None:  # a root, then the end of the file or of the probe
        return found()
    if seen > _PROBE_BYTES or inflater.complete:
        raise InputFormatError(
            f"{path}: no XML element in "
            f"{'the first ' + str(_PROBE_BYTES >> 20) + ' MiB' if seen else 'the file'}; "
            "not a MediaWiki dump"
        )
    return _Header(_declared_encoding(head), "")  # truncated before the root: the reader counts it


def _index_offsets(index: str, dump: str, size: int, opener: Opener) -> Iterator[int]:
    """Distinct stream offsets of a multistream index, in file order, checked against the dump
    as they are read (0 first: the ``<siteinfo>`` stream, which the index does not list).

    The enwiki index has ~23M lines; blocks are matched with one regex call each (a Python
    loop over lines would take minutes on the launcher). Blocks start small and double, so a
    consumer that stops after a few units reads little of the index.
    """
    try:
        with opener(index) as raw:
            magic = raw.read(4)
    except FileNotFoundError:
        raise InputFormatError(f"{index}: no such file (the multistream index of {dump})") from None
    last = -1
    lineno = 0
    block_size = _FIRST_INDEX_BLOCK
    with opener(index) as raw, opener(dump) as f:
        stream: Any = bz2.BZ2File(raw) if magic.startswith(b"BZh") else raw
        rest = b""
        while True:
            try:
                block = stream.read(block_size)
            except (OSError, EOFError) as e:
                raise InputFormatError(
                    f"{index}: unreadable index ({e}); download it again"
                ) from None
            block_size = min(2 * block_size, _SCAN_BYTES)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            part, rest = data[:cut], data[cut:]
            offs = _INDEX_OFFSET_RE.findall(part)
            n = part.count(b"\n") + (1 if part and not part.endswith(b"\n") else 0)
            if len(offs) != n:
                _check_index_lines(index, part, lineno)
            lineno += n
            for raw_off in offs:
                off = int(raw_off)
                if off == last:
                    continue
                if off < last:
                    raise InputFormatError(
                        f"{index}: offset {off} comes after {last}: not in dump order; "
                        "give the -multistream-index.txt.bz2 that came with the dump"
                    )
                if off >= size:
                    raise InputFormatError(
                        f"{index}: offset {off} is past the end of {dump} ({size} bytes); "
                        "the index belongs to another dump"
                    )
                if last < 0:
                    _check_stream_start(f, index, dump, off)
                    if off != 0:
                        yield 0
                yield off
                last = off
            if not block:
                break
    if last < 0:
        raise InputFormatError(f"{index}: empty multistream index")
    with opener(dump) as f:
        _check_stream_start(f, index, dump, last)


def _check_stream_start(f: BinaryIO, index: str, dump: str, off: int) -> None:
    f.seek(off)
    if not _BZ2_STREAM_RE.match(f.read(10)):
        raise InputFormatError(
            f"{index}: offset {off} is not the start of a bz2 stream in {dump}; "
            "the index belongs to another dump"
        )


_INDEX_OFFSET_RE = re.compile(rb"^(\d+):", re.MULTILINE)


def _check_index_lines(index: str, part: bytes, first_lineno: int) -> None:
    """Raise for the first line of ``part`` that is neither blank nor ``offset:...``."""
    for i, line in enumerate(part.split(b"\n"), first_lineno + 1):
        if line.strip() and not _INDEX_OFFSET_RE.match(line):
            raise InputFormatError(
                f"{index}: line {i} is not 'offset:page_id:title'; "
                "give the -multistream-index.txt.bz2 that came with the dump"
            )


def _scan_stream_offsets(path: str, size: int, opener: Opener) -> list[int]:
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
    inflater = Inflater("bz2")
    try:
        for data in inflater.inflate(read_range(f, offset, size)):
            out += data
            if len(out.lstrip()) >= 12:
                break
    except CorruptData:
        return False
    body = out.lstrip()
    return body.startswith(b"<page") or body.startswith(b"</mediawiki")
