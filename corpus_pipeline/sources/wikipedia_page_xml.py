"""One ``<page>`` of a Wikipedia dump: its XML parsed, its fields read, or why it is malformed.

``wikipedia_pages.py`` cuts the decompressed dump into the bytes of single pages; this module
turns those bytes into a :class:`RawPage` (:func:`parse_element`, :func:`read_page`) or names
the reason it is dropped (:func:`damage`, one of :data:`MALFORMED_REASONS`). The namespace of
a page comes from its ``<ns>``, or for old exports from its title's prefix and the names the
header declares (:func:`siteinfo_namespaces`, :data:`CANONICAL_NAMESPACES`).
"""

from __future__ import annotations

import pyexpat
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from corpus_pipeline.sources.wikipedia_records import RawPage, local_name
from corpus_pipeline.sources.wikipedia_site import WikiSite

# Namespace numbers of the canonical (English) namespace names, for the rare export versions
# (before 0.5) whose pages have no <ns> element.
CANONICAL_NAMESPACES = {
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


def siteinfo_namespaces(elem: ET.Element) -> dict[str, int]:
    """The namespace names and numbers a dump's ``<siteinfo>`` declares."""
    names: dict[str, int] = {}
    for sub in elem.iter():
        if local_name(sub.tag) == "namespace" and sub.text:
            key = sub.get("key")
            if key is not None and key.lstrip("-").isdigit():
                names[sub.text] = int(key)
    return names


def read_page(
    elem: ET.Element, namespace_of: Callable[[str], int], site: Callable[[], WikiSite]
) -> RawPage | None:
    """The fields of a parsed ``<page>`` element, or None when its title or numeric id is missing.

    Args:
        elem: The element.
        namespace_of: The namespace of a title, for the old exports whose pages have no
            ``<ns>`` (before 0.5).
        site: The dump's link vocabulary (built on first need, after the header).
    """
    # The text of each child (the last of a name wins), and of each child of the revisions.
    fields: dict[str, str | None] = {}
    revision: dict[str, str | None] = {}
    for child in elem:
        name = local_name(child.tag)
        if name != "revision":
            fields[name] = child.text
            continue
        # Full-history dumps list every revision: the last one is the current text.
        for sub in child:
            revision[local_name(sub.tag)] = sub.text
    title = (fields["title"] or "") if "title" in fields else None
    pid, ns, revid = fields.get("id"), fields.get("ns"), revision.get("id")
    if title is None or pid is None or not pid.strip().isdigit():
        return None
    if ns is not None and ns.strip().lstrip("-").isdigit():
        ns_num = int(ns)
    elif ns is None:
        ns_num = namespace_of(title)
    else:
        return None
    return RawPage(
        id=int(pid),
        title=title,
        ns=ns_num,
        redirect="redirect" in fields,
        text=revision.get("text") or "",
        revid=int(revid) if revid and revid.strip().isdigit() else None,
        timestamp=revision.get("timestamp") or "",
        site=site(),
    )


def parse_element(buf: bytes | bytearray, start: int, end: int) -> ET.Element:
    """Parse ``buf[start:end]`` as one XML element (no copy of the bytes)."""
    parser = ET.XMLParser()
    with memoryview(buf) as view:
        parser.feed(view[start:end])
    return parser.close()


def damage(data: bytes, err: ET.ParseError | None) -> str:
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


__all__ = [
    "CANONICAL_NAMESPACES",
    "MALFORMED_REASONS",
    "damage",
    "parse_element",
    "read_page",
    "siteinfo_namespaces",
]
