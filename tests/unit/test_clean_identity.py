"""The fast clean gives wikiextractor's text, exactly.

:mod:`corpus_pipeline.sources.wikipedia_fastclean` skips passes of wikiextractor's ``clean``
that cannot change the text and does others with less Python; wikiextractor's own ``clean``
(with its own ``Extractor``) is the reference. Compared on every page of the bundled enwiki
excerpt, on the localized-dump tests' pages, and on generated texts of tricky markup: tags
whose names only match case-insensitively, tags formed by dropping others, entities that
decode to markup, unclosed and doubled links, nested templates and tables, <nowiki>.
"""

from __future__ import annotations

import random

import pytest
import wikiextractor.extract as wx

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources import (
    wikipedia_clean,
    wikipedia_fastclean,
    wikipedia_pages,
    wikipedia_plan,
)
from corpus_pipeline.sources.wikipedia_guards import guard_markup
from tests.unit.test_wikipedia_localized import CASES, EN, _page_texts

CFG = ExtractConfig()

TEMPLATES = {
    "Template:T": "a {{{1}}} <b>b</b> {{{2|two}}} [[L|l]]",
    "Template:Tag": "&lt;ref&gt;{{{1}}}&lt;/ref&gt; <small>s</small>",
    "Template:Nest": "{{T|{{{1}}}|x}} {{#if:{{{1|}}}|yes|no}} __NOTOC__",
    "Template:Loop": "{{Loop}}",
    "Template:L [[x|y]]": "named with a link",  # "|" inside a link does not end a title
}


def _extractor(cls: type, title: str, templates: bool) -> wx.Extractor:
    e = cls(
        "7",
        "8",
        "",
        title,
        [],
        templates=dict(TEMPLATES) if templates else {},
        redirects={"Template:R": "Template:T"} if templates else {},
        templatePrefix="Template:",
        ignored_tag_patterns=wikipedia_clean._IGNORED_TAG_PATTERNS,
    )
    e.magicWords = wikipedia_clean._PinnedMagicWords("2021-02-03T04:05:06Z")
    return e


ALL = [(e, h, t) for e in (True, False) for h in (False, True) for t in (False, True)]
# (expand_templates, html_safe, templates defined): as clean_page calls it, and the other
# branch of each flag.
AS_CALLED = [(True, False, False), (False, True, False)]


def _assert_same(title: str, text: str, combos: list[tuple[bool, bool, bool]] = ALL) -> None:
    for expand, html_safe, templates in combos:
        reference = _extractor(wx.Extractor, title, templates)
        want = wx.clean(reference, text, expand, html_safe)
        fast = _extractor(wikipedia_fastclean.FastExtractor, title, templates)
        got = wikipedia_fastclean.clean(fast, text, expand, html_safe)
        assert got == want, (title, expand, html_safe, templates, text[:300])
        assert _counters(fast) == _counters(reference), text[:300]


def _counters(e: wx.Extractor) -> list[int]:
    return [v for k, v in sorted(vars(e).items()) if k.endswith("_errs")]


def _as_cleaned(text: str) -> str:
    # What clean_page hands to clean: the guarded page, escaped as in the dump.
    return wikipedia_clean._xml_escape(guard_markup(text))


def test_sample_excerpt_pages():
    pages = [
        p
        for u in wikipedia_plan.plan_units(SAMPLE_WIKI_DUMP, CFG)
        for p in wikipedia_pages.read_pages(u, CFG, count=lambda *a: None)
    ]
    assert len(pages) > 200
    for p in pages:
        _assert_same(p.title, _as_cleaned(p.text), AS_CALLED)


@pytest.mark.parametrize("lang", [*sorted(CASES), "en"])
def test_localized_pages(lang: str):
    case = EN if lang == "en" else CASES[lang]
    _, _, body, image, nested, _ = case
    for text in _page_texts(body or ("One sentence here.", "Another one."), image, nested):
        _assert_same("P", _as_cleaned(text))


FRAGMENTS = [
    "Plain words, then more. ",
    "{{T|x|y}}",
    "{{Nest|{{T|1}}}}",
    "{{Tag|note}}",
    "{{Loop}}",
    "{{R|via redirect}}",
    "{{cite web|title=t|url=http://x.org}}",
    "{{Template:T|q}}",
    "{{:T}}",
    "{{ |empty title}}",
    "{{:|colon title}}",
    "{{CURRENTYEAR}}",
    "{{L [[x|y]]}}",
    "{{subst:T|s}}",
    "{{lc:ABC}}",
    "{{t|lower first}}",
    "{{#if:x|[[A|b]]|c}}",
    "{{{1|d}}}",
    "{{unclosed",
    "}}",
    "{|\n| cell || cell\n|}",
    "{| nested {| x |} |}",
    "[[Link]]s",
    "[[Target|label]]",
    "[[File:x.jpg|thumb|a [[b]] c|caption]]",
    "[[[[doubled]]]]",
    "[[[[a]] b|c]]",
    "[[unclosed ",
    "]]",
    "[[:Category:x|y]]",
    "[[w:Page|w]]",
    "[http://example.com label]",
    "[//example.org]",
    "[HTTP://X.COM/a.png]",
    "__NOTOC__",
    "__",
    "\x00\x00",
    "\x00NOWIKI0\x00",
    "'''''bi''''' '''b''' ''i'' ''\"q\"'' \"\"qq\"\" ''",
    '&lt;ref name="a/b"&gt;r&lt;/ref&gt;',
    "&lt;ref name=x /&gt;",
    "&lt;references/&gt;",
    "&lt;br&gt;&lt;BR /&gt;&lt;hr&gt;",
    "&lt;p&gt;para&lt;/p&gt;",
    "&lt;center&gt;c&lt;/center&gt;",
    "&lt;!-- comment --&gt;",
    "&lt;!-- unclosed comment",
    "&lt;nowiki&gt;{{T}}[[x]]&lt;/nowiki&gt;",
    "&lt;NoWiki /&gt;",
    "&lt;math&gt;x^2&lt;/math&gt;",
    "&lt;code&gt;c()&lt;/code&gt;",
    "&lt;math&gt;a&lt;/math&gt;code&gt;",
    '&lt;span style="a &gt; b"&gt;s&lt;/span&gt;',
    "&lt;\u017fpan&gt;long s&lt;/\u017fpan&gt;",
    "&lt;d\u0131v&gt;dotless&lt;/DIV&gt;",
    "&lt;\u017fmall&gt;small&lt;/small&gt;",
    "&lt;\u212abd&gt;kelvin&lt;/kbd&gt;",
    "&lt;&lt;ref&gt;x&lt;/ref&gt;div&gt;joined&lt;/div&gt;",
    "&lt;&lt;br&gt;p&gt;joined by br",
    "&lt;table&gt;&lt;tr&gt;&lt;td&gt;t&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;",
    "&lt;/div&gt;",
    "&lt;noinclude&gt;n&lt;/noinclude&gt;&lt;/noinclude&gt;&lt;noinclude/&gt;",
    "&lt;includeonly&gt;i&lt;/includeonly&gt;",
    "&lt;gallery&gt;g.jpg&lt;/gallery&gt;",
    '&lt;syntaxhighlight lang="py"&gt;x = 1 &amp;lt; 2&lt;/syntaxhighlight&gt;',
    "&lt;a href=x&gt;anchor&lt;/a&gt;",
    "&lt;abbr&gt;ab&lt;/abbr&gt;",
    '&lt;templatestyles src="x" /&gt;',
    "&lt;section begin=x /&gt;",
    "&amp;lt;b&amp;gt;double&amp;lt;/b&amp;gt;",
    "&amp;nbsp;&amp;amp;&#x41;&#65;&#99999999999;&bogus;&amp",
    "&lt;&lt;guillemets&gt;&gt;",
    "a  b\t\tc .... d ( e ) f , g [ h ] \u00ab i \u00bb",
    "\n!!\n;;\n",
    ",, ,.",
    "\n== Heading ==\n",
    "\n* item\n# item\n: indent\n",
    "\n",
    "\n\n",
]


def test_generated_markup():
    rng = random.Random(20261207)
    for _ in range(400):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 30)))
        _assert_same("Stress", text)


# A tag that only exists once an earlier pass has dropped what stood inside it.
FORMED = [
    "x &lt;/&lt;gallery&gt;g&lt;/gallery&gt;ref&gt; z",  # a discarded element, a later one's close
    "x &lt;/&lt;span&gt;ref&gt; z",  # an ignored tag dropped as a span
    "a &lt;&lt;!-- c --&gt;table&gt;t&lt;/&lt;!-- c --&gt;table&gt; b",  # dropped comments
    "a &lt;&lt;br&gt;small&gt;s&lt;/&lt;br&gt;small&gt; b",  # a line break becomes " "
    "a &lt;&lt;p&gt;/gallery&gt; b",  # a block tag becomes a newline
    "a &lt;&lt;ref name=r/&gt;noinclude&gt; b",  # a self-closing tag dropped as a span
    "a &amp;lt;math&amp;gt;x&amp;lt;/math&amp;gt; b",  # decoded by the second unescape
    "a &lt;ma&lt;math&gt;1&lt;/math&gt;th&gt;2&lt;/math&gt; &lt;&lt;math&gt;2&lt;/math&gt;code&gt;",
]


@pytest.mark.parametrize("text", FORMED)
def test_tags_formed_by_earlier_passes(text: str):
    _assert_same("Formed", text)
