"""Wikipedia pages to articles (pure): wikiextractor's library with its CLI's choices.

:func:`clean_page` turns one raw page into an :class:`~corpus_pipeline.records.Article` through
``Extractor.clean_text``'s steps, with the same choices as wikiextractor's CLI: only the article
namespace, no redirects, templates expanded, links and lists dropped. A page of unclosed markup
that would make wikiextractor's regexes quadratic has it escaped first
(:mod:`~corpus_pipeline.sources.wikipedia_guards`), and is counted
(``extract/escaped:unclosed_markup``). wikiextractor's ``clean`` runs as
:mod:`~corpus_pipeline.sources.wikipedia_fastclean` does it: the same text, without the passes
that cannot change it.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Iterator

from wikiextractor.extract import (
    _DEFAULT_IGNORED_TAG_PATTERNS,
    MagicWords,
    compact,
    ignoreTag,
    resolve_template_page,
)

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.records import Article
from corpus_pipeline.sources.article_filter import passes_length_filters
from corpus_pipeline.sources.wikipedia_fastclean import FastExtractor, clean
from corpus_pipeline.sources.wikipedia_guards import guard_heading_lines, guard_markup
from corpus_pipeline.sources.wikipedia_records import (
    MODULE_NS,
    SOURCE,
    TEMPLATE_NS,
    Count,
    RawPage,
    TemplateStore,
    is_redirect,
    utf8_size_over,
)
from corpus_pipeline.sources.wikipedia_site import WikiSite, drops_link, site_for

log = logging.getLogger(__name__)


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


def _link_text(m: re.Match[str], site: WikiSite) -> str:
    target, label = m.group(1), m.group(2)
    if drops_link(target, label, site):
        return ""  # an image or category link: gone with its caption, as wikiextractor does
    return label if label is not None else target


def _scrub(text: str, site: WikiSite) -> str:
    """Remove markup left by wikiextractor: templates, links, tables, tags, entities."""
    for _ in range(8):  # innermost first; nesting deeper than this is left to the stray pass
        text, n = _TEMPLATE_RE.subn("", text)
        if not n:
            break
    for _ in range(4):
        text, n = _LINK_RE.subn(lambda m: _link_text(m, site), text)
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


def _join_paragraphs(paragraphs: list[str], site: WikiSite) -> str:
    text = "\n".join(s for s in (p.strip() for p in paragraphs) if s)
    if _RESIDUE_RE.search(text) is None:
        return text
    scrubbed = _scrub(text, site)
    # A line that was only markup is gone; one that became punctuation only is noise.
    return "\n".join(s for s in (p.strip() for p in scrubbed.split("\n")) if _has_word(s))


def _has_word(s: str) -> bool:
    return any(c.isalnum() for c in s)


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
            escaped so that wikiextractor's regexes stay linear on it (:func:`guard_markup`).
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
    if page.oversized or utf8_size_over(page.text, cfg.max_page_bytes):
        count("extract/dropped:too_large")
        return None
    store = templates if templates is not None else _NO_TEMPLATES
    extractor = FastExtractor(
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
    wikitext = guard_markup(page.text)
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
        compactable = guard_heading_lines(cleaned)
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
    text = _join_paragraphs(paragraphs, page.site or site_for(""))
    if not passes_length_filters(text, cfg, count, "extract"):
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
