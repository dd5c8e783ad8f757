"""A Japanese dump with English books (issue 14): each source is split in its own language."""

from __future__ import annotations

import json

import pytest

from corpus_pipeline import resources
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.documents import read_documents
from tests.e2e.conftest import IN_PROCESS, run_cli
from tests.support.jawiki import JA_PAGES, JA_SENTENCES, write_jawiki

BOOKS = resources.DATA_DIR / "samples" / "books"


def _documents(folder):
    """(manifest, the book's sentences, the other documents' sentences, sorted).

    The text format keeps no source: the book is the document that is not a page.
    """
    manifest = json.loads((folder / "manifest.json").read_text())
    docs = [d.sentences for s in manifest["shards"] for d in read_documents(folder / s["path"])]
    (book,) = [d for d in docs if not any(p in d[0] for p, _, _ in JA_PAGES)]
    return manifest, book, sorted(s for d in docs if d is not book for s in d)


def test_run_splits_the_dump_as_japanese_and_the_books_as_english(tmp_path):
    dump = write_jawiki(tmp_path / "jawiki.xml")
    mixed = tmp_path / "mixed"
    args = ["--format", "hdf5", "--dupe-factor", "1", "--shards", "1", "--doc-shards", "1"]
    assert run_cli("run", "--input", dump, "--books", BOOKS, "--output", mixed, *args) == 0
    manifest, book, wiki = _documents(mixed / "docs")
    assert (manifest["lang"], manifest["books_lang"]) == ("ja", "en")
    assert manifest["config"]["sentences"]["books_language"] == "en"
    assert wiki == sorted(JA_SENTENCES)

    alone = tmp_path / "books_alone"
    assert run_cli("extract", "--books", BOOKS, "--output", alone, *IN_PROCESS) == 0
    manifest_alone, book_alone, _ = _documents(alone)
    assert (manifest_alone["lang"], manifest_alone["books_lang"]) == ("en", "en")
    # English Punkt: the same sentences as the book alone. The CJK rules split only at
    # 。！？, so the book's paragraphs would stay whole.
    assert book == book_alone
    assert "He is a Mr. Godfrey Norton, of the Inner Temple." in book


def test_books_language_is_the_users_choice(tmp_path):
    dump = write_jawiki(tmp_path / "jawiki.xml")
    book_dir = tmp_path / "books"
    book_dir.mkdir()
    (book_dir / "ja.txt").write_text("今日は晴れです。明日は雨です！\n", encoding="utf-8")
    out = tmp_path / "docs"
    argv = ["extract", "--input", dump, "--books", book_dir, "--output", out, *IN_PROCESS]
    assert run_cli(*argv, "--books-lang", "ja") == 0
    manifest, book, _ = _documents(out)
    assert (manifest["lang"], manifest["books_lang"]) == ("ja", "ja")
    assert book == ["今日は晴れです。", "明日は雨です！"]
    # A books-only run: --lang is the books' language (nothing else can be meant).
    only = tmp_path / "only"
    assert run_cli("extract", "--books", book_dir, "--output", only, "--lang", "ja") == 0
    manifest, book, _ = _documents(only)
    assert manifest["books_lang"] == "ja" and len(book) == 2


def test_a_bad_books_language_is_one_line_naming_the_flag(tmp_path):
    from corpus_pipeline import cli

    argv = ["extract", "--books", str(BOOKS), "--output", str(tmp_path / "o")]
    args = cli.build_parser("extract").parse_args([*argv, "--books-lang", "not a code"])
    from corpus_pipeline.commands import extract as extract_cmd

    with pytest.raises(UserError, match=r"^--books-language not a code: not a Wikipedia"):
        extract_cmd.configs_from_args(args, [])
