"""wikiextractor's ``clean`` without the passes that cannot change the text.

:func:`clean` is ``wikiextractor.extract.clean`` step for step, in the same order and with the
same functions and patterns, except that a step is skipped when its pattern cannot match the
text as it stands at that step (each skip says why it is exact), and a few steps are done the
same way with less Python per match. :class:`FastExtractor` does the same for template
expansion. wikiextractor itself is not changed: its ``clean`` stays the reference that
``tests/unit/test_clean_identity.py`` compares this module with, page for page.

Most passes of wikiextractor's ``clean`` look for one HTML tag each (about 120 full-text
regex scans per page); a page names a handful of tags, so the names after each ``<`` are
collected once (:func:`_tag_names`) and a tag's passes run only when its name is among them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import wikiextractor.extract as wx

# Every tag name a pass of wikiextractor's clean looks for.
_PASS_TAGS = frozenset(
    (
        *wx.selfClosingTags,
        *wx.ignoredTags,
        "a",
        *wx.discardElements,
        *wx.lineBreakTags,
        *wx.blockSeparatorTags,
        *wx.placeholder_tags,
        "noinclude",
    )
)
# Case-insensitive, as those passes match a name: with re.IGNORECASE a name can match other
# characters than its ASCII letters ("\u017f" matches "s", "\u212a" matches "k", "\u0131"
# matches "i"), so a name is compared with the same flag, never with str.lower().
_PASS_TAG_RES = {tag: re.compile(tag, re.IGNORECASE) for tag in _PASS_TAGS}
# Every pass for a tag needs "<", optional spaces and "/", then the tag's name as a whole word
# (the name is followed by \b, \s, "/", ">" or " " in each pattern, never by a word character).
# Each "<" starts one attempt (a match holds no other "<"), and \w+ takes the whole word.
_TAG_WORD_RE = re.compile(r"<\s*/?\s*(\w+)")
_WORD_TAGS: dict[str, frozenset[str]] = {}
_WORD_TAGS_MAX = 1 << 16


def _tag_names(text: str) -> frozenset[str]:
    """The names in :data:`_PASS_TAGS` that some tag of the text has (a superset of those
    whose passes can match: a pass also needs the rest of its tag)."""
    if "<" not in text:
        return frozenset()
    found: set[str] = set()
    for word in set(_TAG_WORD_RE.findall(text)):
        tags = _WORD_TAGS.get(word)
        if tags is None:
            tags = frozenset(t for t, r in _PASS_TAG_RES.items() if r.fullmatch(word))
            if len(_WORD_TAGS) < _WORD_TAGS_MAX:
                _WORD_TAGS[word] = tags
        found |= tags
    return frozenset(found)


_SELF_CLOSING = tuple(zip(wx.selfClosingTags, wx.selfClosing_tag_patterns, strict=True))
_LINE_BREAK_TAGS = frozenset(wx.lineBreakTags)
_BLOCK_TAGS = frozenset(wx.blockSeparatorTags)
_PLACEHOLDERS = tuple(
    zip(wx.placeholder_tags, wx.placeholder_tag_patterns, strict=True)
)  # dict order: the same pairs as wikiextractor builds
_IGNORED_LEFT = r"<%s\b.*?>"
_IGNORED_RIGHT = r"</\s*%s\s*>"


_IGNORED_TAGS: dict[tuple[re.Pattern[str], re.Pattern[str]], str | None] = {}


def _ignored_tag(left: re.Pattern[str], right: re.Pattern[str]) -> str | None:
    """The tag of a pair made by ``wikiextractor.extract.ignoreTag``; None for any other pair
    (its passes always run)."""
    key = (left, right)
    if key not in _IGNORED_TAGS:
        _IGNORED_TAGS[key] = _tag_of_pair(left, right)
    return _IGNORED_TAGS[key]


def _tag_of_pair(left: re.Pattern[str], right: re.Pattern[str]) -> str | None:
    p = left.pattern
    if not (p.startswith("<") and p.endswith(r"\b.*?>")):
        return None
    tag = p[1 : -len(r"\b.*?>")]
    if tag not in _PASS_TAGS or p != _IGNORED_LEFT % tag or right.pattern != _IGNORED_RIGHT % tag:
        return None
    if not left.flags & re.IGNORECASE or not right.flags & re.IGNORECASE:
        return None
    return tag


# Discarded elements: the same patterns as wikiextractor's loop builds, compiled once.
_DISCARD = tuple(
    (
        tag,
        rf"""<\s*{tag}\b(?:(?=("[^"]*"|'[^']*'|[^>]))\1)*(?<!/)>""",
        rf"<\s*/\s*{tag}\s*>",
        re.compile(rf"<\s*/\s*{tag}\s*>", re.IGNORECASE),
    )
    for tag in wx.discardElements
)
_NOINCLUDE_OPEN = re.compile(r"<\s*noinclude\s*/?\s*>", re.IGNORECASE)
_NOINCLUDE_CLOSE = re.compile(r"<\s*/\s*noinclude\s*>", re.IGNORECASE)
_TABLE_OPEN = r"{\|"
_TABLE_CLOSE = r"\|}"

# ' ([,:.)\]»])' -> r'\1' is deleting a space before one of those characters: the character
# is never a space, so no later match could have started inside the one consumed, and the
# lookahead form needs no per-match template expansion.
_SPACE_BEFORE_CLOSE = re.compile(r" (?=[,:.\)\]»])")
_SPACE_AFTER_OPEN = re.compile(r"([\[\(«]) ")  # wikiextractor's, compiled once
# wikiextractor's " {2,}" and r"\.{4,}" as a literal and a repeat: the same runs, greedy as
# before, and the regex engine can search for the literal prefix instead of trying each
# character.
_SPACES = re.compile("  +")
_DOTS = re.compile(r"\.\.\.\.+")
_PUNCT_LINE = re.compile(r"\n\W+?\n", re.U)
# Every behaviour switch magicWordsRE removes starts with "__".
_SWITCHES_START_WITH_UNDERSCORES = all(s.startswith("__") for s in wx.MagicWords.switches)


def _unescape(text: str) -> str:
    """``wikiextractor.extract.unescape`` with ``&lt;``, ``&gt;`` and ``&quot;`` replaced
    first by ``str.replace``. Exact: its pattern ``&#?\\w+;`` can only start at "&" and holds
    no other "&", so each of those three in the text is one of its matches and becomes "<",
    ">" or '"' there; those characters, like "&", are neither "#", a word character nor ";",
    so every other match attempt reads the same and ends the same way as before."""
    if "&" not in text:
        return text  # every match starts with "&"
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    if "&" not in text:
        return text
    return str(wx.unescape(text))


_LINK_DELIM = re.compile(r"\[\[|\]\]")
# The same delimiters, and first a whole link with no "[" or "]" inside (most links): a scan
# for the delimiters alone would find its "[[" and then, with no delimiter between, its "]]".
# No groups: the kind of a match is told by its first character and length (a pattern with
# groups scans about three times slower here).
_LINK_TOKEN = re.compile(r"\[\[[^\[\]]*\]\]|\[\[|\]\]")


def _balanced_links(text: str) -> Iterator[tuple[int, int]]:
    """``findBalanced(text, ['[['], [']]'])`` in one scan for both delimiters. The same pairs:
    with nothing open it searches "[[" only, so a "]]" found here then is skipped; "[[" and
    "]]" share no character, so skipping one never hides the other, and with something open
    it searches for both, as this scan does."""
    depth = 0
    start = 0
    for m in _LINK_DELIM.finditer(text):
        if m.group() == "[[":
            if not depth:
                start = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if not depth:
                yield start, m.end()


def _links_and_unclosed(text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """The outermost links of the text, as :func:`_balanced_links` finds them, and the
    positions of the "[[" that no "]]" closes, as ``findUnclosedLinkOpenPositions`` finds
    them (the same stack), in one scan. The links are right only when none is unclosed:
    then ``neutralizeUnclosedLinkOpens`` leaves the text as it is, and a link ends where
    the stack empties."""
    stack: list[int] = []
    links = []
    push = stack.append
    pop = stack.pop
    for m in _LINK_TOKEN.finditer(text):
        s, e = m.span()
        if text[s] == "]":  # "]]"
            if stack:
                start = pop()
                if not stack:
                    links.append((start, e))
        elif e - s > 2:  # a whole link with no bracket inside: opened and closed
            if not stack:
                links.append((s, e))
        else:  # "[["
            push(s)
    return links, stack


def _replace_internal_links(text: str, extractor: wx.Extractor) -> str:
    """``wikiextractor.extract.replaceInternalLinks``, the same steps with the link scanner
    above; a label without "[[" skips the nested scan (it finds nothing there)."""
    text = wx.collapseDoubledLinkBrackets(text)
    links, unclosed = _links_and_unclosed(text)
    if unclosed:
        text = wx.neutralizeUnclosedLinkOpens(text)
        links = list(_balanced_links(text))
    cur = 0
    res = []
    tail = wx.tailRE.match
    keep_links = extractor.keepLinks
    accepted = extractor.acceptedNamespaces
    for s, e in links:
        m = tail(text, e)
        if m:
            trail = m.group(0)
            end = m.end()
        else:
            trail = ""
            end = e
        inner = text[s + 2 : e - 2]
        pipe = inner.find("|")
        if pipe < 0:
            title = inner
            label = title
        else:
            title = inner[:pipe].rstrip()
            if "[[" in inner:
                curp = pipe + 1
                for s1, e1 in _balanced_links(inner):
                    last = inner.rfind("|", curp, s1)
                    if last >= 0:
                        pipe = last
                    curp = e1
            label = inner[pipe + 1 :].strip()
        res.append(text[cur:s])
        # makeInternalLink without keepLinks, inlined: a prefix before a colon that is not
        # an accepted namespace drops the link, and so does ":File:" at the start.
        colon = title.find(":")
        if keep_links:
            res.append(wx.makeInternalLink(title, label, extractor))
        elif colon > 0:
            if title[:colon] not in accepted:
                label = ""
            res.append(label)
        elif colon == 0:
            colon2 = title.find(":", 1)
            if colon2 > 1 and title[1:colon2] not in accepted:
                label = ""
            res.append(label)
        else:
            res.append(label)
        res.append(trail)
        cur = end
    res.append(text[cur:])
    return "".join(res).replace(wx.LINK_OPEN_PLACEHOLDER, "[[")


def _WX_DEBUG() -> bool:  # noqa: N802
    return bool(wx.logger.isEnabledFor(logging.DEBUG))


class FastExtractor(wx.Extractor):  # type: ignore[misc]
    """``Extractor`` whose template expansion returns at once for a text without "{{" and
    for a call of an undefined template that needs no parsing to be recognized."""

    def expandTemplates(self, wikitext: str) -> str:  # noqa: N802 (wikiextractor's name)
        # Without "{{" findMatchingBraces(text, 2) finds nothing and the text comes back as
        # it went in; "\x00" is excluded because <nowiki> masking writes placeholders with
        # it, and the recursion limit because past it the result is "" (and counted).
        if (
            "{{" not in wikitext
            and "\x00" not in wikitext
            and len(self.frame) < self.maxTemplateRecursionLevels
        ):
            return wikitext
        return str(super().expandTemplates(wikitext))

    def expandTemplate(self, body: str) -> str:  # noqa: N802 (wikiextractor's name)
        # A call of a template that is not defined expands to "" (no counter moves); this
        # answers that case directly when it can be told without wikiextractor's parsing, and
        # hands every other call to it unchanged. Without "{{" and "[[" its splitParts finds
        # no nested braces and splits at every "|", and the title part expands to itself
        # (no "{{", no "\x00"); a title that is a magic word or a parser function (a colon
        # after its second character, as in "subst:" and "safesubst:", even matched
        # case-insensitively) goes to wikiextractor, as does a call past
        # the recursion limit or with wikiextractor's debug log on (it logs each call).
        if (
            "{{" in body
            or "[[" in body
            or "\x00" in body
            or len(self.frame) >= self.maxTemplateRecursionLevels
            or _WX_DEBUG()
        ):
            return str(super().expandTemplate(body))
        title = body.split("|", 1)[0].strip()
        if title.lower() in self.magicWords.values or title.find(":") > 1:
            return str(super().expandTemplate(body))
        if not self.templates:
            # Nothing is defined: only the name's emptiness matters, which wikiextractor
            # counts as an error. fullyQualifiedTemplateTitle gives "" for "" and ":" only
            # (every other title keeps a character: ucfirst empties no string).
            return str(super().expandTemplate(body)) if title in ("", ":") else ""
        name = wx.fullyQualifiedTemplateTitle(title, self)
        if not name:
            return str(super().expandTemplate(body))
        name = self.redirects.get(name) or name
        if name in self.templates:
            return str(super().expandTemplate(body))
        return ""


def clean(extractor: Any, text: str, expand_templates: bool = False, html_safe: bool = True) -> str:
    """``wikiextractor.extract.clean(extractor, text, expand_templates, html_safe)``: the same
    text, faster (see the module docstring)."""
    if expand_templates:
        text = extractor.expandTemplates(text)
    elif "{{" in text:  # dropNested needs its open delimiter to change anything
        text = wx.dropNested(text, r"{{", r"}}")

    if "{|" in text:
        text = wx.dropNested(text, _TABLE_OPEN, _TABLE_CLOSE)

    if "[" in text:  # every external link starts with "["
        text = wx.replaceExternalLinks(text, extractor)

    # Without "[[" no link is found and nothing is collapsed; the placeholder it restores at
    # the end could only come from the text itself.
    if "[[" in text or wx.LINK_OPEN_PLACEHOLDER in text:
        text = _replace_internal_links(text, extractor)

    if not _SWITCHES_START_WITH_UNDERSCORES or "__" in text:
        text = wx.magicWordsRE.sub("", text)

    if "&lt;syntaxhighlight " in text:
        res = ""
        cur = 0
        for m in wx.syntaxhighlight.finditer(text):
            res += _unescape(text[cur : m.start()]) + m.group(1)
            cur = m.end()
        text = res + _unescape(text[cur:])
    else:  # the loop above with no match
        text = _unescape(text)

    if "''" in text:  # each pattern below starts with '' (or "" for the last)
        if extractor.HtmlFormatting:
            text = wx.bold_italic.sub(r"<b>\1</b>", text)
            text = wx.bold.sub(r"<b>\1</b>", text)
            text = wx.italic.sub(r"<i>\1</i>", text)
        else:
            text = wx.bold_italic.sub(r"\1", text)
            text = wx.bold.sub(r"\1", text)
            text = wx.italic_quote.sub(r'"\1"', text)
            text = wx.italic.sub(r'"\1"', text)
            if '""' in text:
                text = wx.quote_quote.sub(r'"\1"', text)
        text = text.replace("'''", "").replace("''", '"')
    elif '""' in text and not extractor.HtmlFormatting:
        text = wx.quote_quote.sub(r'"\1"', text)

    # From here on every pass but the comment one is for one tag, whose name it needs.
    names = _tag_names(text)
    if names & _LINE_BREAK_TAGS:
        text = wx.substituteLineBreakTag(wx.lineBreak_tag_pattern, text)
        names = _tag_names(text)
    if names & _BLOCK_TAGS:
        text = wx.substituteLineBreakTag(wx.block_separator_tag_pattern, text, separator="\n")
        names = _tag_names(text)

    if "<" in text:
        spans = []
        if "<!--" in text:
            for m in wx.comment.finditer(text):
                spans.append((m.start(), m.end()))
        for tag, pattern in _SELF_CLOSING:
            if tag in names:
                for m in pattern.finditer(text):
                    spans.append((m.start(), m.end()))
        for left, right in extractor.ignored_tag_patterns:
            tag = _ignored_tag(left, right)
            if tag is not None and tag not in names:
                continue
            for m in left.finditer(text):
                spans.append((m.start(), m.end()))
            for m in right.finditer(text):
                spans.append((m.start(), m.end()))
        if spans:  # dropSpans of no spans is the text itself
            text = wx.dropSpans(spans, text)
            names = _tag_names(text)

        # Dropping one element can join the text around it into a tag of another, so the
        # names are collected again after each change.
        for tag, open_pattern, close_pattern, close_re in _DISCARD:
            if tag not in names:
                continue
            new = wx.dropNested(text, open_pattern, close_pattern)
            new = close_re.sub("", new)
            if new is not text:
                text = new
                names = _tag_names(text)

        if "noinclude" in names:
            text = _NOINCLUDE_OPEN.sub("", text)
            text = _NOINCLUDE_CLOSE.sub("", text)

    if not extractor.HtmlFormatting:
        text = _unescape(text)

    names = _tag_names(text)
    for tag, (pattern, placeholder) in _PLACEHOLDERS:
        if tag not in names:
            continue
        # A match starts with "<" and becomes word characters, so a word after a "<" only
        # grows by them: no new tag name appears, and the names stay as they are.
        index = 1
        for match in pattern.finditer(text):
            text = text.replace(match.group(), f"{placeholder}_{index}")
            index += 1

    text = text.replace("<<", "«").replace(">>", "»")

    text = text.replace("\t", " ")
    if "  " in text:
        text = _SPACES.sub(" ", text)
    if "...." in text:
        text = _DOTS.sub("...", text)
    text = _SPACE_BEFORE_CLOSE.sub("", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = _PUNCT_LINE.sub("\n", text)
    text = text.replace(",,", ",").replace(",.", ".")
    if html_safe:
        text = wx.html.escape(text, quote=False)
    return text
