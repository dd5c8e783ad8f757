r"""Guard against unclosed markup that would make wikiextractor's regexes quadratic.

wikiextractor matches markup with regexes that scan forward from every opener to its closer.
Where the closer never comes, each opener scans to the end of the text (or of the line) and
fails: quadratic work, cubic for some. A vandalised page of 100-200 kB of such junk held a
worker for one to ten minutes. The openers, the regex that scans from them, and what fixes it:

- ``<`` + a tag name with no ``>`` before the next ``<`` (``<ref <ref ...``), where a quoted
  attribute counts as running to its closing quote as wikiextractor's patterns read it: the
  ignored, self-closing, line-break and block tag patterns and ``dropNested`` of the discarded
  elements (``<\s*ref\b(?:...)*>``, ``<span\b.*?>``) all scan on to a later ``>``. The ``<``
  is escaped (``&lt;``): text, the way a browser shows it.
- ``<math>`` / ``<code>`` with no closing tag after them: the placeholder patterns
  (``<\s*math(...)>.*?</math>``) scan to the end. They run after wikiextractor's second
  unescape, so the ``<`` is escaped twice; the scrub of :mod:`~corpus_pipeline.sources.wikipedia_clean` decodes what is left.
- ``<syntaxhighlight `` with no ``</syntaxhighlight>`` after it: wikiextractor's
  ``syntaxhighlight`` regex retries every later ``>`` (cubic). The ``<`` is escaped.
- ``<!--`` with no ``-->`` after it: the ``comment`` regex scans to the end. Dropped, as the
  scrub drops a stray ``<!--`` from the output today.
- ``[`` + URL with no reachable ``]`` (``[http://x [http://x ...``): ``ExtLinkBracketedRegex``
  scans the rest of the line for every opener, once per shorter URL prefix. The ``[`` becomes
  ``&#91;``, which wikiextractor turns back into ``[`` after its link passes.
- Headings: ``section`` (``(==+)\s*(.*?)\s*\1``, matched by ``compact`` on every line) is
  cubic in a long leading ``=`` run and in long whitespace runs (``&nbsp;``, U+3000 are not
  collapsed). See :func:`guard_heading_lines`.

Every opener above is one that can never match (or, for ``<``, one no well-formed tag has),
and the edit changes what the page shows only where wikiextractor would have run a pattern
across it. Still, each family is edited only when its estimated regex work on the page is
over _GUARD_BUDGET (character steps; ~200 ns each in wikiextractor's patterns): a normal page
is never edited, so its text stays byte-identical to wikiextractor's CLI, and a page that is
edited is counted (``extract/escaped:unclosed_markup``).
"""

from __future__ import annotations

import re

from wikiextractor.extract import EXT_LINK_URL_CLASS, wgUrlProtocols

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


def guard_markup(text: str) -> str:
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


def guard_heading_lines(text: str) -> str:
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
