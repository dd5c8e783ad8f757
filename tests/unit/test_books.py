"""Books: folder listing, decoding, Gutenberg stripping and reflow (real Sherlock + edges)."""

from __future__ import annotations

import codecs
from collections import Counter
from pathlib import Path

import pytest

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.records import Article
from corpus_pipeline.resources import SAMPLE_BOOK, SAMPLE_BOOKS_DIR
from corpus_pipeline.sources.books import (
    book_name,
    decode_book,
    list_books,
    read_book,
    reflow,
    scan_books,
    strip_gutenberg,
)


class Counts(Counter):
    """A counter callback backed by a Counter, as the stages expect."""

    def __call__(self, name: str, n: int = 1) -> None:
        self[name] += n


def read(data: bytes | Path, name: str = "book.txt", cfg: ExtractConfig | None = None):
    counts = Counts()
    article = read_book(data, name, cfg, count=counts)
    return article, counts


@pytest.fixture(scope="module")
def sherlock() -> tuple[Article, Counts]:
    article, counts = read(SAMPLE_BOOK, "sherlock.txt")
    assert article is not None
    return article, counts


# --- the real book ---------------------------------------------------------------------------


def test_sherlock_is_one_document_with_gutenberg_title(sherlock):
    article, counts = sherlock
    assert article.id == "book:sherlock.txt"
    assert article.title == "The Adventures of Sherlock Holmes"
    assert article.source == "books"
    assert counts == {
        "books/passed": 1,
        "books/characters": len(article.text),
        "books/gutenberg_stripped": 1,
    }


def test_sherlock_has_no_license_or_gutenberg_boilerplate(sherlock):
    text = sherlock[0].text
    for boilerplate in (
        "Gutenberg",
        "GUTENBERG",
        "LICENSE",
        "gutenberg.org",
        "gutenberg.net",
        "Produced by",
        "This eBook is for the use of anyone",
        "*** START",
        "*** END",
        "1661-8.txt",
        "Foundation",
    ):
        assert boilerplate not in text, boilerplate
    # The raw file does contain them: the test would fail without the stripping.
    raw = SAMPLE_BOOK.read_text(encoding="utf-8-sig")
    assert "PROJECT GUTENBERG LICENSE" in raw and "www.gutenberg.org" in raw


def test_sherlock_starts_and_ends_with_the_book(sherlock):
    text = sherlock[0].text
    assert text.startswith("THE ADVENTURES OF SHERLOCK HOLMES\nby\nSIR ARTHUR CONAN DOYLE\n")
    assert "ADVENTURE I. A SCANDAL IN BOHEMIA" in text
    assert text.endswith(
        "she is now the head of a private school at Walsall, "
        "where I believe that she has met with considerable success."
    )
    # The last story is there in full (its title and its final scene).
    assert "\nXII. THE ADVENTURE OF THE COPPER BEECHES\n" in text
    assert "And thus was solved the mystery of the sinister house" in text


def test_sherlock_bom_and_carriage_returns_are_gone(sherlock):
    assert SAMPLE_BOOK.read_bytes().startswith(codecs.BOM_UTF8)
    assert b"\r\n" in SAMPLE_BOOK.read_bytes()
    text = sherlock[0].text
    assert "\ufeff" not in text and "\r" not in text
    assert "\n\n" not in text and "\t" not in text and "  " not in text


def test_sherlock_hard_wraps_are_reflowed_but_the_table_of_contents_is_not(sherlock):
    lines = sherlock[0].text.split("\n")
    # In the file this paragraph is wrapped at ~65 columns; now it is one line.
    opening = [line for line in lines if line.startswith("To Sherlock Holmes she is always")]
    assert len(opening) == 1
    assert "I have seldom heard him mention her under any other name." in opening[0]
    assert opening[0].endswith("of dubious and questionable memory.")
    # Table of contents lines (indented, short) stay one entry per line.
    assert "II. The Red-headed League" in lines
    assert "XII. The Adventure of the Copper Beeches" in lines
    raw_lines = SAMPLE_BOOK.read_text(encoding="utf-8-sig").splitlines()
    assert max(map(len, raw_lines)) < 80 < max(map(len, lines))


def test_path_and_bytes_give_the_same_article():
    from_path, _ = read(SAMPLE_BOOK, "sherlock.txt")
    from_bytes, _ = read(SAMPLE_BOOK.read_bytes(), "sherlock.txt")
    assert from_path == from_bytes


# --- folder listing --------------------------------------------------------------------------


def test_list_books_on_the_sample_folder():
    assert list_books(SAMPLE_BOOKS_DIR) == [SAMPLE_BOOK]
    assert book_name(SAMPLE_BOOK, SAMPLE_BOOKS_DIR) == "sherlock.txt"


def test_scan_books_is_recursive_sorted_and_reports_skipped(tmp_path):
    for rel in ("b.txt", "a.TXT", "sub/c.txt", "notes.md", "sub/cover.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    listing = scan_books(tmp_path)
    assert [book_name(p, tmp_path) for p in listing.books] == ["a.TXT", "b.txt", "sub/c.txt"]
    assert [book_name(p, tmp_path) for p in listing.skipped] == ["notes.md", "sub/cover.jpg"]
    assert list_books(tmp_path) == listing.books


def test_single_txt_file_is_a_collection_of_one():
    assert list_books(SAMPLE_BOOK) == [SAMPLE_BOOK]


@pytest.mark.parametrize("content", [[], ["readme.md"]], ids=["empty", "no-txt"])
def test_folder_without_books_is_a_user_error(tmp_path, content):
    for name in content:
        (tmp_path / name).write_text("x")
    with pytest.raises(UserError, match=f"{tmp_path}: no .txt books"):
        list_books(tmp_path)


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        list_books(tmp_path / "nope")


def test_missing_book_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read book"):
        read(tmp_path / "gone.txt")


# --- decoding edges --------------------------------------------------------------------------


def test_latin1_bytes_are_replaced_and_counted():
    data = "Café crème.\nNaïve reader.".encode("latin-1")
    article, counts = read(data, "french/notes.txt")
    assert article is not None
    assert article.text == "Caf\ufffd cr\ufffdme. Na\ufffdve reader."
    assert counts["books/replaced_bytes"] == 3
    assert article.title == "notes" and article.id == "book:french/notes.txt"


def test_replaced_bytes_counts_bytes_not_sequences():
    # A truncated 3-byte sequence (2 bytes) and a lone continuation byte: 3 bad bytes.
    text, replaced = decode_book(b"ok \xe2\x82 then \x80 end")
    assert replaced == 3
    assert text is not None and text.count("\ufffd") == 3


def test_valid_utf8_with_and_without_bom_has_nothing_replaced():
    body = "Über naïve café — “quoted”."
    for data in (body.encode("utf-8"), codecs.BOM_UTF8 + body.encode("utf-8")):
        article, counts = read(data)
        assert article is not None and article.text == body
        assert "books/replaced_bytes" not in counts


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files(encoding):
    body = "Naïve text.\r\nWrapped line of the same paragraph.\r\n\r\nSecond paragraph."
    data = body.encode(encoding)  # "utf-16"/"utf-32" write a BOM; -le/-be have none
    article, counts = read(data)
    assert article is not None, counts
    expected, _ = read(body.encode("utf-8"))
    assert expected is not None and article.text == expected.text
    assert "\ufeff" not in article.text and "Second paragraph." in article.text
    assert "books/replaced_bytes" not in counts


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        b"PK\x03\x04" + bytes(range(1, 32)) * 40,  # no NUL, but control characters only
    ],
    ids=["nul-bytes", "control-chars"],
)
def test_binary_file_is_dropped(data):
    article, counts = read(data)
    assert article is None
    assert counts == {"books/dropped:binary": 1}


@pytest.mark.parametrize("data", [b"", b" \r\n\t\n", codecs.BOM_UTF16_LE])
def test_empty_file_is_dropped(data):
    article, counts = read(data)
    assert article is None
    assert counts == {"books/dropped:empty": 1}


def test_gutenberg_boilerplate_only_is_empty():
    data = (
        b"Title: Nothing\n\n*** START OF THE PROJECT GUTENBERG EBOOK NOTHING ***\n\n\n"
        b"*** END OF THE PROJECT GUTENBERG EBOOK NOTHING ***\nlicense text\n"
    )
    article, counts = read(data)
    assert article is None
    assert counts["books/dropped:empty"] == 1


def test_min_article_chars_applies_to_books():
    article, counts = read(b"Short.", cfg=ExtractConfig(min_article_chars=100))
    assert article is None and counts == {"books/dropped:short": 1}


# --- Gutenberg variants and reflow -----------------------------------------------------------

MODERN = """The Project Gutenberg eBook of A Long Book

This ebook is for the use of anyone anywhere in the United States.

Title: A Long Book About
       Many Things

Author: Someone

*** START OF THE PROJECT GUTENBERG EBOOK A LONG BOOK ABOUT
MANY THINGS ***

Produced by Some Volunteer and the Online Distributed
Proofreading Team at https://www.pgdp.net

CHAPTER I

It was a dark night.

*** END OF THE PROJECT GUTENBERG EBOOK A LONG BOOK ABOUT MANY THINGS ***

Section 1. General Terms of Use of the Project Gutenberg License.
"""

OLD = """The Project Gutenberg Etext of Old Stories
**Welcome To The World of Free Plain Vanilla Electronic Texts**
*****These eBooks Were Prepared By Thousands of Volunteers!*****

Title: Old Stories

**The Legal Small Print**
You may not distribute copies of this etext.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

This etext was prepared by A. Volunteer.

Once upon a time.

End of Project Gutenberg's Old Stories
"""


def test_modern_gutenberg_header_footer_credits_and_wrapped_title():
    parts = strip_gutenberg(MODERN)
    assert parts.title == "A Long Book About Many Things"
    assert parts.stripped
    assert parts.body.split() == ["CHAPTER", "I", "It", "was", "a", "dark", "night."]


def test_old_gutenberg_small_print_and_footer():
    parts = strip_gutenberg(OLD)
    assert parts.title == "Old Stories"
    assert parts.body.split() == ["Once", "upon", "a", "time."]
    article, counts = read(OLD.encode(), "old.txt")
    assert article is not None and article.text == "Once upon a time."
    assert article.title == "Old Stories" and counts["books/gutenberg_stripped"] == 1


def test_text_without_gutenberg_markers_is_kept_whole():
    text = "Title: Not a header\n\nMy own book mentions Project Gutenberg once."
    parts = strip_gutenberg(text)
    assert parts.body == text and parts.title is None and not parts.stripped
    article, counts = read(text.encode(), "mine.txt")
    assert article is not None and article.title == "mine"
    assert "books/gutenberg_stripped" not in counts


def test_reflow_joins_wrapped_prose_and_keeps_short_lines():
    prose = (
        "It was the best of times, it was the worst of times, it was the age\n"
        "of wisdom, it was the age of foolishness, it was the epoch of belief,\n"
        "it was the epoch of incredulity.\n"
        "\n"
        "   Roses are red,\n"
        "   Violets are blue.\n"
        "\n\n\n"
        "The end, with   extra   spaces."
    )
    assert reflow(prose).split("\n") == [
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
        "Roses are red,",
        "Violets are blue.",
        "The end, with extra spaces.",
    ]


def test_reading_is_deterministic(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(MODERN.encode("utf-16"))
    first, second = read(path), read(path)
    assert first == second and first[0] is not None
