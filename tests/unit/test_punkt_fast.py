"""Our Punkt splitter (stages/punkt.py) gives exactly nltk's spans, on real and generated text.

The reference is nltk's ``PunktSentenceTokenizer`` with the same bundled parameters, called as
``stages/sentences.py`` called it before (``span_tokenize`` with its default
``realign_boundaries=True``) on the same whitespace-normalised paragraphs. Raw text (tabs,
newlines, Unicode whitespace) and ``realign_boundaries=False`` are held to nltk too.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.records import Article
from corpus_pipeline.resources import SAMPLE_BOOK, SAMPLE_WIKI_DUMP
from corpus_pipeline.sources import wikipedia_clean, wikipedia_pages, wikipedia_plan
from corpus_pipeline.sources.books import read_book
from corpus_pipeline.stages import punkt
from corpus_pipeline.stages import sentences as sentences_module
from corpus_pipeline.stages.punkt import PunktParams, PunktSplitter
from corpus_pipeline.stages.sentences import get_tokenizer, split_sentences
from corpus_pipeline.testing import punkt_stress


def _no_count(name: str, n: int = 1) -> None:
    pass


def nltk_tokenizer(params: PunktParams) -> PunktSentenceTokenizer:
    p = PunktParameters()
    p.abbrev_types = set(params.abbrev_types)
    p.collocations = set(params.collocations)
    p.sent_starters = set(params.sent_starters)
    p.ortho_context = defaultdict(int, params.ortho_context)
    return PunktSentenceTokenizer(p)


@pytest.fixture(scope="module")
def ours() -> PunktSplitter:
    return PunktSplitter(get_tokenizer().params)


@pytest.fixture(scope="module")
def reference() -> PunktSentenceTokenizer:
    return nltk_tokenizer(get_tokenizer().params)


@pytest.fixture(scope="module")
def wiki_texts() -> list[str]:
    """The article texts of the bundled enwiki excerpt (paragraphs on lines)."""
    cfg = ExtractConfig()
    texts = []
    for unit in wikipedia_plan.plan_units(str(SAMPLE_WIKI_DUMP), cfg):
        for page in wikipedia_pages.read_pages(unit, cfg, count=_no_count):
            article = wikipedia_clean.clean_page(page, cfg, count=_no_count)
            if article is not None:
                texts.append(article.text)
    assert len(texts) > 50
    return texts


@pytest.fixture(scope="module")
def book_text() -> str:
    article = read_book(SAMPLE_BOOK, "sherlock.txt", count=_no_count)
    assert article is not None
    return article.text


def normalised_paragraphs(texts: list[str]) -> list[str]:
    """The paragraphs as split_paragraph hands them to Punkt: single spaces, stripped."""
    return [p for t in texts for p in (" ".join(line.split()) for line in t.split("\n")) if p]


def assert_identical(
    ours: PunktSplitter,
    reference: PunktSentenceTokenizer,
    paragraphs: list[str],
    realign_boundaries: bool = True,
) -> int:
    """Every paragraph splits into the same sentences (and spans); returns the sentence count."""
    total = 0
    for i, text in enumerate(paragraphs):
        want = list(reference.span_tokenize(text, realign_boundaries))
        got = ours.span_tokenize(text, realign_boundaries)
        if got != want:
            want_s = [text[a:b] for a, b in want]
            got_s = [text[a:b] for a, b in got]
            first = next(
                (j for j, (w, g) in enumerate(zip(want_s, got_s, strict=False)) if w != g),
                min(len(want_s), len(got_s)),
            )
            pytest.fail(
                f"paragraph {i} differs from nltk at sentence {first} "
                f"(realign_boundaries={realign_boundaries}):\n{text!r}\n"
                f"nltk: {want_s[first : first + 3]!r}\nours: {got_s[first : first + 3]!r}"
            )
        total += len(want)
    return total


# --- the engine's character classes ------------------------------------------------------------


def test_whitespace_class_is_the_regex_engines():
    # The hot patterns run on `re` with `\s` spelled out; nltk's engine is `regex`.
    every_char = "".join(map(chr, range(0x110000)))
    spelled = set(re.findall(punkt._S, every_char))
    assert spelled == set(regex.findall(r"\s", every_char))
    assert set(re.sub(punkt._NOT_S, "", every_char)) == spelled


# --- real text ---------------------------------------------------------------------------------


def test_wikipedia_excerpt_is_identical_to_nltk(ours, reference, wiki_texts):
    paragraphs = normalised_paragraphs(wiki_texts)
    assert assert_identical(ours, reference, paragraphs) > 15_000


def test_wikipedia_articles_raw_with_newlines_are_identical_to_nltk(ours, reference, wiki_texts):
    # Whole articles as one string: candidates across lines, nltk's line-by-line tokens.
    assert_identical(ours, reference, wiki_texts[::3])
    assert_identical(ours, reference, wiki_texts[1::6], realign_boundaries=False)


def test_book_is_identical_to_nltk(ours, reference, book_text):
    assert assert_identical(ours, reference, normalised_paragraphs([book_text])) > 5_000
    assert_identical(ours, reference, [book_text])
    assert_identical(ours, reference, normalised_paragraphs([book_text]), False)


def test_split_sentences_is_unchanged_from_the_nltk_splitter(monkeypatch, wiki_texts, book_text):
    texts = [*wiki_texts[:20], book_text]
    articles = [Article(f"t:{i}", "T", "test", t) for i, t in enumerate(texts)]
    cfg = SentenceConfig()
    ours_docs = [split_sentences(a, cfg, count=_no_count) for a in articles]
    monkeypatch.setattr(
        sentences_module, "_tokenizers", {"english": nltk_tokenizer(get_tokenizer().params)}
    )
    assert [split_sentences(a, cfg, count=_no_count) for a in articles] == ours_docs


# --- generated text ----------------------------------------------------------------------------


def test_stress_text_is_identical_to_nltk(ours, reference):
    normalised = normalised_paragraphs(punkt_stress.stress_text(seed=1, paragraphs=150))
    assert assert_identical(ours, reference, normalised) > 2_500
    assert_identical(ours, reference, normalised, realign_boundaries=False)
    raw = punkt_stress.stress_text(seed=2, paragraphs=150, raw=True)
    assert_identical(ours, reference, raw)
    assert_identical(ours, reference, raw, realign_boundaries=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Smith went to Washington. He arrived at 5 p.m. on Jan. 3. It was cold.",
            ["Dr. Smith went to Washington.", "He arrived at 5 p.m. on Jan. 3.", "It was cold."],
        ),
        ("Very bad acting!!! I promise.", ["Very bad acting!!!", "I promise."]),
        ("(Sent1.) Sent2.", ["(Sent1.)", "Sent2."]),
        ('He said "Go." Then he left.', ['He said "Go."', "Then he left."]),
        ("Music by J. S. Bach. The end.", ["Music by J. S. Bach.", "The end."]),
        ("It was the 3. place. Then", ["It was the 3. place.", "Then"]),
        ("Wait... What? Yes!", ["Wait... What?", "Yes!"]),  # "What" is no sentence starter
        ("Wait... The end.", ["Wait...", "The end."]),
        ("", []),
        ("   ", []),
        ("No boundary here", ["No boundary here"]),
        ("Ends. ", ["Ends."]),
    ],
)
def test_known_cases(ours, reference, text, expected):
    assert reference.tokenize(text) == expected
    assert ours.tokenize(text) == expected
    assert ours.span_tokenize(text, False) == list(reference.span_tokenize(text, False))


def test_caches_are_bounded_and_do_not_change_decisions(monkeypatch, reference):
    monkeypatch.setattr(punkt, "_MAX_CACHED", 50)
    small = PunktSplitter(get_tokenizer().params)
    paragraphs = punkt_stress.stress_text(seed=3, paragraphs=100)
    assert_identical(small, reference, paragraphs)
    assert len(small._decisions) <= 50 and len(small._tokens) <= 50


def test_other_parameters_are_applied_like_nltk(reference):
    # Our splitter holds no English-specific table: empty and odd tables follow nltk too.
    rng = random.Random(4)
    paragraphs = punkt_stress.stress_text(seed=4, paragraphs=60)
    params = get_tokenizer().params
    for tables in (
        PunktParams(),
        PunktParams(
            abbrev_types=frozenset({"word", "end", "ok", "a.b.c", "holmes"}),
            collocations=frozenset({("##number##", "he"), ("dr", "smith"), ("j", "bach")}),
            sent_starters=frozenset({"smith", "bach", "and", "london"}),
            ortho_context={k: rng.randrange(128) for k in sorted(params.ortho_context)[:3000]}
            | {"he": 2, "smith": 16, "bach": 64, "the": 4 | 16, "in": 8 | 32},
        ),
    ):
        assert_identical(PunktSplitter(tables), nltk_tokenizer(tables), paragraphs)


# --- fuzz --------------------------------------------------------------------------------------

_VOCABULARY = sorted(
    {
        *punkt_stress.PERIOD_WORDS,
        *punkt_stress.NEXT_WORDS,
        *punkt_stress.FILLER,
        *punkt_stress.MARKS,
        *(c for c in punkt_stress.CLOSERS if c),
        "Mr",
        "Holmes",
        "U.S",
        ". .",
        "?!",
    }
)
_SEPARATORS = [" ", " ", " ", "", "  ", "\t", "\n", "\n\n", "\xa0", "\x1c", "\u2028", " \r\n"]
_piece = st.tuples(
    st.one_of(st.sampled_from(_VOCABULARY), st.text(max_size=3)), st.sampled_from(_SEPARATORS)
)
_paragraphs = st.lists(_piece, max_size=40).map(lambda ps: "".join(w + s for w, s in ps))


def _check_fuzz(ours: PunktSplitter, reference: PunktSentenceTokenizer, text: str) -> None:
    for realign in (True, False):
        assert ours.span_tokenize(text, realign) == list(reference.span_tokenize(text, realign)), (
            text
        )
    normalised = " ".join(text.split())
    assert ours.span_tokenize(normalised) == list(reference.span_tokenize(normalised)), normalised


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_paragraphs)
def test_fuzz_random_paragraphs_are_identical_to_nltk(ours, reference, text):
    _check_fuzz(ours, reference, text)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@settings(
    max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_paragraphs)
def test_soak_fuzz_random_paragraphs_are_identical_to_nltk(ours, reference, text):
    _check_fuzz(ours, reference, text)
