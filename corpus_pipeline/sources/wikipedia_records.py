"""Records shared by the Wikipedia layers: work units, raw pages, template stores, openers.

The planning (:mod:`~corpus_pipeline.sources.wikipedia_plan`), reading
(:mod:`~corpus_pipeline.sources.wikipedia_pages`) and cleaning
(:mod:`~corpus_pipeline.sources.wikipedia_clean`) modules exchange these; the redirect and size
tests live here because both reading and cleaning apply them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from wikiextractor.extract import redirectKeywords

from corpus_pipeline.sources.wikipedia_site import WikiSite

Count = Callable[..., None]

SOURCE = "wikipedia"

TEMPLATE_NS = 10
MODULE_NS = 828


class Opener(Protocol):
    """Opens a dump path as a seekable binary file."""

    def __call__(self, path: str) -> BinaryIO: ...


def open_local(path: str) -> BinaryIO:
    """Default opener: a local file in binary mode (seekable)."""
    return open(path, "rb")


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
        link_ns: The dump's names of its Media, File and Category namespaces (from its
            ``<siteinfo>``), for the units of a multistream dump that do not hold it.
    """

    path: str
    compression: str = "none"
    start: int = 0
    end: int | None = None
    wrap: bool = False
    encoding: str = "utf-8"
    stream: int = 0
    lang: str = ""
    link_ns: tuple[str, ...] = ()

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
        site: The link vocabulary of the page's wiki (its localized File, Category
            namespaces and image keywords); None reads it as English. Context, not content:
            not compared.
    """

    id: int
    title: str
    ns: int
    redirect: bool
    text: str
    revid: int | None = None
    timestamp: str = ""
    oversized: bool = False
    site: WikiSite | None = field(default=None, compare=False, repr=False)


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


def utf8_size_over(text: str, limit: int) -> bool:
    """len(text.encode()) > limit, without encoding in the common case."""
    n = len(text)
    if n > limit:
        return True
    if n * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


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


def local_name(tag: str) -> str:
    """Local name of a namespaced ElementTree tag (``{ns}page`` -> ``page``)."""
    return tag[tag.rfind("}") + 1 :]
