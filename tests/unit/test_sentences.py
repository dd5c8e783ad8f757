"""Sentence splitting with the bundled punkt parameters (real book, Google's sample, edges)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from nltk.tabdata import PunktDecoder
from nltk.tokenize.punkt import PunktSentenceTokenizer

from corpus_pipeline.config import SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.records import Article, Document
from corpus_pipeline.resources import PUNKT_DIR, SAMPLE_BOOK, SAMPLE_GOOGLE_TEXT
from corpus_pipeline.sources.books import read_book
from corpus_pipeline.stages import sentences as sentences_module
from corpus_pipeline.stages.sentences import (
    cut_long_sentence,
    get_tokenizer,
    load_punkt_parameters,
    split_paragraph,
    split_sentences,
)

CFG = SentenceConfig()
REQUIRED = "Dr. Smith went to Washington. He arrived at 5 p.m. on Jan. 3. It was cold."


class Counts(Counter):
    """A counter callback backed by a Counter, as the stages expect."""

    def __call__(self, name: str, n: int = 1) -> None:
        self[name] += n


def split(text: str, cfg: SentenceConfig = CFG) -> tuple[Document | None, Counts]:
    counts = Counts()
    return split_sentences(Article("t:1", "T", "test", text), cfg, count=counts), counts


def sentences_of(text: str, cfg: SentenceConfig = CFG) -> list[str]:
    doc, _ = split(text, cfg)
    return doc.sentences if doc is not None else []


def assert_clean(sentences: list[str], max_chars: int = CFG.max_sentence_chars) -> None:
    for s in sentences:
        assert s == s.strip() and s, repr(s)
        assert "\n" not in s and "\t" not in s and "\r" not in s and "  " not in s, repr(s)
        assert re.search(r"[^\W_]", s), f"punctuation-only sentence {s!r}"
        assert len(s) <= max_chars


# --- the bundled parameters are used ---------------------------------------------------------


def test_required_case_gives_exactly_three_sentences():
    doc, counts = split(REQUIRED)
    assert doc is not None
    assert doc.sentences == [
        "Dr. Smith went to Washington.",
        "He arrived at 5 p.m. on Jan. 3.",
        "It was cold.",
    ]
    assert doc.id == "t:1" and doc.title == "T" and doc.source == "test"
    assert counts == {
        "split/documents": 1,
        "split/sentences": 3,
        "split/characters": sum(map(len, doc.sentences)),
    }


def test_untrained_punkt_gets_abbreviations_wrong_so_the_params_matter():
    text = "Dr. Smith went to Washington. He arrived at 5 p.m. on Jan. 3."
    untrained = PunktSentenceTokenizer().tokenize(text)
    assert len(untrained) != 2  # splits after "Dr.", "p.m." and/or "Jan."
    assert "Dr." in untrained
    assert sentences_of(text) == [
        "Dr. Smith went to Washington.",
        "He arrived at 5 p.m. on Jan. 3.",
    ]


def test_parameters_match_nltk_own_punkt_tab_decoder():
    ours = load_punkt_parameters(PUNKT_DIR / "english")
    decoder = PunktDecoder()
    folder = PUNKT_DIR / "english"
    with open(folder / "abbrev_types.txt", encoding="utf-8") as f:
        assert ours.abbrev_types == decoder.txt2set(f)
    with open(folder / "sent_starters.txt", encoding="utf-8") as f:
        assert ours.sent_starters == decoder.txt2set(f)
    with open(folder / "collocations.tab", encoding="utf-8") as f:
        assert ours.collocations == set(decoder.tab2tups(f))
    with open(folder / "ortho_context.tab", encoding="utf-8") as f:
        assert ours.ortho_context == decoder.tab2intdict(f)
    assert {"dr", "p.m", "jan", "mr", "mrs"} <= ours.abbrev_types


def test_tokenizer_is_cached_per_process():
    assert get_tokenizer("english") is get_tokenizer("english")


def test_unknown_language_is_a_user_error():
    with pytest.raises(UserError, match="--lang klingon: not a Wikipedia language code"):
        split(REQUIRED, SentenceConfig(language="klingon"))


def test_broken_parameter_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unreadable punkt_tab parameters"):
        load_punkt_parameters(tmp_path)


# --- cleanup ---------------------------------------------------------------------------------


def test_whitespace_is_normalised_to_single_spaces():
    text = "  Tabs\tand   spaces\u00a0here.\x0bAnd a form\x0cfeed,\rcarriage return.  \n\t\n"
    got = sentences_of(text)
    assert got == ["Tabs and spaces here.", "And a form feed, carriage return."]
    assert_clean(got)


def test_control_characters_are_removed():
    assert sentences_of("Null\x00 byte and\u200b zero\ufeff width.") == [
        "Null byte and zero width."
    ]


def test_sentences_never_cross_paragraphs():
    assert sentences_of("A heading without a period\nThe first sentence. The second.") == [
        "A heading without a period",
        "The first sentence.",
        "The second.",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"Hello," he said. "Goodbye."', ['"Hello," he said.', '"Goodbye."']),
        ("(Then he left.) It rained.", ["(Then he left.)", "It rained."]),
        ("— yes, he did. No more.", ["— yes, he did.", "No more."]),
        ("... and so it ended. Fine.", ["... and so it ended.", "Fine."]),
        ('" He left. "', ['" He left. "']),
        ("'Tis the season.", ["'Tis the season."]),
    ],
)
def test_lines_starting_with_punctuation(line, expected):
    got = sentences_of(line)
    assert got == expected
    assert_clean(got)


def test_punctuation_only_pieces_attach_to_a_neighbour():
    counts = Counts()
    # Punkt alone returns these as "sentences" of their own.
    assert get_tokenizer().tokenize('He said: "Go." "') == ['He said: "Go."', '"']
    assert get_tokenizer().tokenize("Well. ... So.") == ["Well.", "...", "So."]
    assert split_paragraph('He said: "Go." "', CFG, count=counts) == ['He said: "Go." "']
    assert split_paragraph("Well. ... So.", CFG, count=counts) == ["Well. ...", "So."]
    assert split_paragraph("Hello! !!", CFG, count=counts) == ["Hello! !!"]
    # At the start of a paragraph they join the first real sentence.
    assert get_tokenizer().tokenize("!! Go now. Fine.") == ["!", "!", "Go now.", "Fine."]
    assert split_paragraph("!! Go now. Fine.", CFG, count=counts) == ["!! Go now.", "Fine."]
    assert split_paragraph("***. The end.", CFG, count=counts) == ["***. The end."]
    assert not counts


def test_punctuation_only_paragraphs_are_dropped_and_counted():
    doc, counts = split('* * * * *\n"\nReal text here.\n---')
    assert doc is not None and doc.sentences == ["Real text here."]
    assert counts["split/dropped:punctuation_only"] == 3


@pytest.mark.parametrize("text", ["", "\n\n  \n", "* * *\n...\n"])
def test_document_without_sentences_is_dropped(text):
    doc, counts = split(text)
    assert doc is None
    assert counts["split/dropped:empty"] == 1 and "split/documents" not in counts


def test_min_sentence_chars_drops_short_pieces():
    doc, counts = split("Ha! Ha! He laughed for a while.", SentenceConfig(min_sentence_chars=5))
    assert doc is not None and doc.sentences == ["He laughed for a while."]
    assert counts["split/dropped:short_sentence"] == 2


# --- runaway sentences -----------------------------------------------------------------------


def test_long_list_without_periods_is_cut_below_the_maximum():
    items = [f"item number {i} of the list" for i in range(200)]
    text = ", ".join(items)
    assert len(text) > 5000 and "." not in text
    doc, counts = split(text)
    assert doc is not None
    assert len(doc.sentences) >= 6
    assert_clean(doc.sentences)
    assert all(len(s) <= CFG.max_sentence_chars for s in doc.sentences)
    # Cut at the list's commas (the preferred boundary) and nothing is lost.
    assert all(s.endswith(",") for s in doc.sentences[:-1])
    assert " ".join(doc.sentences) == text
    assert counts["split/long_sentences_cut"] == 1
    assert counts["split/sentences"] == len(doc.sentences)


def test_cut_prefers_semicolons_then_commas_then_spaces():
    # Within the second half of the window, ";" wins over a later ",", "," over a later space.
    assert cut_long_sentence("aaaa bb; cc, dd ee ff", 13) == ["aaaa bb;", "cc, dd ee ff"]
    assert cut_long_sentence("aaaa bb cc, dd ee ff gg", 13) == ["aaaa bb cc,", "dd ee ff gg"]
    assert cut_long_sentence("aa bb cc dd ee ff gg", 10) == ["aa bb cc", "dd ee ff", "gg"]
    # A boundary in the first half would leave a tiny piece: the last space is used instead.
    assert cut_long_sentence("a, bbb ccc ddd eee", 12) == ["a, bbb ccc", "ddd eee"]
    # No whitespace at all (a long URL): cut hard at the maximum.
    assert cut_long_sentence("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert cut_long_sentence("short", 10) == ["short"]


def test_table_with_tabs_is_cut_and_normalised():
    row = "\t".join(f"cell{i}" for i in range(30))
    text = "\t".join([row] * 20)  # one 'sentence' of 600 tab-separated cells
    got = sentences_of(text, SentenceConfig(max_sentence_chars=200))
    assert_clean(got, max_chars=200)
    assert " ".join(got).split() == text.split()


# --- determinism and real text ---------------------------------------------------------------


def test_splitting_is_deterministic_across_fresh_tokenizers(monkeypatch):
    article = read_book(SAMPLE_BOOK, "sherlock.txt", count=Counts())
    assert article is not None
    first = split_sentences(article, CFG, count=Counts())
    # A fresh process builds a new tokenizer: simulate it by emptying the cache.
    monkeypatch.setattr(sentences_module, "_tokenizers", {})
    second = split_sentences(article, CFG, count=Counts())
    assert first == second


@pytest.fixture(scope="module")
def sherlock_doc() -> tuple[Document, Counts]:
    counts = Counts()
    article = read_book(SAMPLE_BOOK, "sherlock.txt", count=counts)
    assert article is not None
    doc = split_sentences(article, CFG, count=counts)
    assert doc is not None
    return doc, counts


def test_sherlock_sentences(sherlock_doc):
    doc, counts = sherlock_doc
    assert doc.id == "book:sherlock.txt"
    assert_clean(doc.sentences)
    assert counts["split/sentences"] == len(doc.sentences) > 5000
    assert counts["split/characters"] == sum(map(len, doc.sentences))
    got = set(doc.sentences)
    # Sentence boundaries at line wraps were reflowed, so these come out whole.
    assert "To Sherlock Holmes she is always THE woman." in got
    assert "I have seldom heard him mention her under any other name." in got
    assert (
        "Mr. Rucastle survived, but was always a broken man, kept alive solely through the "
        "care of his devoted wife." in got
    )
    # Titles are abbreviations, never sentence ends (Punkt alone splits 18 of them here), and
    # '"...?" asked Holmes.' is one sentence (Punkt alone cuts 190 such tags off).
    assert not [s for s in doc.sentences if re.search(r"\b(Mr|Mrs|Dr)\.$", s)]
    assert "asked Holmes." not in got and "he asked." not in got
    assert '"What do you make of that?" asked Holmes.' in got
    assert '"What can I do for you, Mr. Holmes?"' in got


def test_titles_and_dialogue_tags_do_not_end_sentences():
    text = "\"Is that your hat, Mr. Baker?\" he asked. 'Mr. Ferguson and I will go,' said she."
    punkt_alone = get_tokenizer().tokenize(text)
    assert "he asked." in punkt_alone
    assert any(s.endswith("Mr.") for s in punkt_alone)
    assert sentences_of(text) == [
        '"Is that your hat, Mr. Baker?" he asked.',
        "'Mr. Ferguson and I will go,' said she.",
    ]


def test_sherlock_text_is_preserved(sherlock_doc):
    doc, _ = sherlock_doc
    article = read_book(SAMPLE_BOOK, "sherlock.txt", count=Counts())
    assert article is not None
    # Every non-space character comes out once, in order (Punkt may split inside a
    # whitespace token such as "lady!'--you", so compare without whitespace).
    assert "".join("".join(doc.sentences).split()) == "".join(article.text.split())


def test_google_sample_resplit_gives_back_its_sentences():
    text = SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8")
    documents = [block.strip().split("\n") for block in text.split("\n\n") if block.strip()]
    assert len(documents) == 3
    lines = resplit = identical = 0
    for i, lines_of_doc in enumerate(documents):
        joined = " ".join(lines_of_doc)
        doc, _ = split(joined)
        assert doc is not None
        assert_clean(doc.sentences)
        # Nothing is lost or reordered, and the document stays one document.
        assert " ".join(doc.sentences) == joined, i
        lines += len(lines_of_doc)
        resplit += len(doc.sentences)
        identical += len(set(lines_of_doc) & set(doc.sentences))
    # Google's lines are mostly sentences (some hold two, some half of one): the count comes
    # back within 15% and most lines are reproduced exactly.
    assert abs(resplit - lines) <= 0.15 * lines
    assert identical >= 0.6 * lines
