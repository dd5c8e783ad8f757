"""Generated text that exercises every Punkt decision (tests and ``bench/sentences.py``).

Paragraphs built from tricky tokens: known abbreviations (``Dr.``, ``p.m.``, ``ex-Gov.``),
initials (``J. S. Bach``), ellipses (``...``, ``. . .``, ``wait..``), numbers and ordinals
(``5.``, ``1,000.``, ``-3.5``, ``the 3. place``), quotes and brackets after periods (``."``,
``.)``, ``.\u201d``, ``.\xbb``), ``?!`` runs, frequent sentence starters and words whose
trained orthographic context says they start sentences, or never do, in upper and lower case,
Unicode punctuation and whitespace, and very long paragraphs. Deterministic for a seed.
"""

from __future__ import annotations

import random

# Words ending in a period that Punkt must decide on.
PERIOD_WORDS = (
    "Dr.", "Mr.", "Mrs.", "Ms.", "St.", "Jan.", "Feb.", "Sept.", "Oct.", "Inc.", "Co.", "Corp.",
    "Ltd.", "U.S.", "U.K.", "p.m.", "a.m.", "e.g.", "i.e.", "etc.", "vs.", "cf.", "No.",
    "ex-Gov.", "Gen.", "Col.", "Sen.", "Rep.", "Jr.", "Ph.D.", "approx.", "fig.", "vol.", "pp.",
    "J.", "S.", "A.", "K.", "x.", "\u00c9.", "\u00e9.", "1.", "5.", "23.", "1990.", "1,000.",
    "3.5.", "-2.", ".5.", "\u0663.", "II.", "iv.", "word.", "Washington.", "Holmes.", "end.",
    "ok.", "a.b.c.", "(ibid.", "[sic.", "says.", "\u00b2.", "##.", "...", "..", "....", "wait..",
    ".", "a-b.", "U.S.-based.", "n\u00ba.",
)  # fmt: skip
# Words after a candidate: sentence starters, always-capitalised names, lower-case words,
# numbers and punctuation.
NEXT_WORDS = (
    "He", "The", "In", "It", "But", "However", "This", "They", "She", "A", "An", "And", "he",
    "the", "in", "it", "but", "however", "and", "Smith", "Bach", "Washington", "London",
    "Holmes", "John", "January", "Street", "Company", "corporation", "million", "percent",
    "international", "rj", "commodities", "p.m.", "Jr.", "Inc.", "dollars", "years", "after",
    "before", "\u00c9mile", "\u00e9t\u00e9", "1990", "5", "3.5", "-2", "(see", "[1]", "\u2014",
    "--", "...", ",", ";", ":", "?", "!", "'", '"', "\u201cQuoted", "\u2018single",
    "\u00abGuillemet", "(Note", "[Edit", "{x}", "*", "@home", "&", "#1", "`tick", "\u00bfQu\u00e9",
    "\u00a1Hola", "\u0434\u0430", "\u0414\u0430", "\u4e2d\u6587", "x", "I", "i", "J.", "S.",
)  # fmt: skip
# What may close a sentence after its mark.
CLOSERS = (
    "", "", "", "", '"', "'", ")", "]", "}", "\u201d", "\u2019", "\xbb", '")', "')", "\u201d)",
    ".)", '."', "--", "\u2014", ":", ";", ",", "*", "@",
)  # fmt: skip
MARKS = (".", ".", ".", "?", "!", "?!", "!!", "...", ". . .", "?)", "!'", "")
FILLER = (
    "text", "of", "the", "words", "that", "were", "written", "long", "ago", "by", "many",
    "people", "with", "Capitals", "and", "numbers", "like", "42", "or", "3,000", "-", "\u2013",
    "co-operation", "don't", "it's", "(in", "brackets)", '"in', 'quotes"', "\u2018curly\u2019",
    "caf\u00e9", "na\u00efve", "\u00dcber", "stra\u00dfe", "\u03a3\u03bf\u03c6\u03af\u03b1",
)  # fmt: skip
# Separators: mostly one space; others test the word-before and realignment rules on raw text.
SPACES = (" ",) * 12 + ("  ", "\t", "\xa0", "\u2009", "\u3000", "\n", " \n ", "\x1c", "")


def sentence(rng: random.Random, raw: bool = False) -> str:
    """One generated sentence; ``raw`` mixes in Unicode and control whitespace."""
    words = [rng.choice(NEXT_WORDS)]
    for _ in range(rng.randint(0, 12)):
        r = rng.random()
        if r < 0.25:
            words.append(rng.choice(PERIOD_WORDS))
        elif r < 0.45:
            words.append(rng.choice(NEXT_WORDS))
        else:
            words.append(rng.choice(FILLER))
    words[-1] += rng.choice(MARKS) + rng.choice(CLOSERS)
    if not raw:
        return " ".join(words)
    return "".join(w + rng.choice(SPACES) for w in words).rstrip(" ")


def paragraph(rng: random.Random, sentences: int, raw: bool = False) -> str:
    """``sentences`` generated sentences joined as one paragraph."""
    sep = rng.choice(SPACES) if raw else " "
    return sep.join(sentence(rng, raw) for _ in range(sentences))


def stress_text(seed: int = 0, paragraphs: int = 400, raw: bool = False) -> list[str]:
    """Generated paragraphs: mostly short ones, some of a few hundred sentences.

    Args:
        seed: Any int; the same seed gives the same text.
        paragraphs: How many paragraphs.
        raw: Whitespace other than single spaces (tabs, newlines, NBSP, U+001C) inside them;
            ``sentences.split_paragraph`` normalises it away before Punkt sees it.
    """
    rng = random.Random(seed)
    out = []
    for i in range(paragraphs):
        n = rng.choice((300, 500)) if i % 50 == 49 else rng.randint(1, 12)
        out.append(paragraph(rng, n, raw))
    return out
