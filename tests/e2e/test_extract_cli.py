"""`corpus-pipeline extract` end to end: real dump, real book, real Beam runner."""

from __future__ import annotations

import bz2
import json
import re
import subprocess
import sys

from corpus_pipeline import resources
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.testing.multistream import build_multistream
from tests.e2e.conftest import IN_PROCESS, WIKI_EXTRACT, run_cli

MARKUP = ("[[", "{{", "|}", "&lt;", "<ref")


def _docs(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    docs = []
    for shard in manifest["shards"]:
        docs.extend(read_documents(folder / shard["path"]))
    return manifest, docs


def test_wiki_and_book_to_jsonl(tmp_path, capsys):
    out = tmp_path / "docs"
    rc = run_cli(
        "extract",
        "--input",
        resources.SAMPLE_WIKI_DUMP,
        "--books",
        resources.SAMPLE_BOOKS_DIR,
        "--output",
        out,
        "--format",
        "jsonl",
        "--shards",
        "3",
        *IN_PROCESS,
    )
    assert rc == 0
    manifest, docs = _docs(out)
    wiki = [d for d in docs if d.source == "wikipedia"]
    books = [d for d in docs if d.source == "books"]
    assert len(wiki) == 105
    assert len(books) == 1 and books[0].title == "The Adventures of Sherlock Holmes"
    assert manifest["documents"] == 106 and len(manifest["shards"]) == 3
    assert all(s["documents"] > 0 for s in manifest["shards"])
    assert manifest["counters"]["extract/redirects"] >= 99
    ids = {d.id for d in wiki}
    assert len(ids) == 105 and all(re.fullmatch(r"wiki:\d+", i) for i in ids)
    titles = {d.title for d in wiki}
    assert "Anarchism" in titles and "Autism" in titles
    for d in docs:
        text = "\n".join(d.sentences)
        assert not any(m in text for m in MARKUP), (d.title, [m for m in MARKUP if m in text])
        assert all("\n" not in s and s.strip() == s and s for s in d.sentences)
    book = "\n".join(books[0].sentences)
    assert "Project Gutenberg" not in book and "START OF" not in book
    summary = capsys.readouterr().out
    assert "106 documents in 3 shards" in summary and "split/sentences" in summary


def test_text_format_is_google_input_format(wiki_docs):
    manifest, docs = _docs(wiki_docs)
    assert sum(s["documents"] for s in manifest["shards"]) == 105 == len(docs)
    raw = (wiki_docs / manifest["shards"][0]["path"]).read_text(encoding="utf-8")
    # One sentence per line, one blank line between documents, nothing else.
    assert "\n\n\n" not in raw and raw.endswith("\n\n")
    blocks = raw.strip("\n").split("\n\n")
    assert len(blocks) == manifest["shards"][0]["documents"]


def test_same_shards_with_one_and_two_workers(tmp_path, wiki_docs):
    """Two worker processes (``wiki_docs``); one is this process's runner."""
    out = tmp_path / "w1"
    assert run_cli(*WIKI_EXTRACT, "--output", out, *IN_PROCESS) == 0
    one = json.loads((out / "manifest.json").read_text())["shards"]
    two = json.loads((wiki_docs / "manifest.json").read_text())["shards"]
    assert [s["sha256"] for s in one] == [s["sha256"] for s in two]


def test_multistream_dump_is_split_by_stream_and_gives_the_same_articles(tmp_path, wiki_docs):
    (tmp_path / "ms").mkdir()
    dump, index = build_multistream(
        resources.SAMPLE_WIKI_DUMP, tmp_path / "ms", copies=1, pages_per_stream=50
    )
    out = tmp_path / "docs"
    assert (
        run_cli(
            "extract",
            "--input",
            dump,
            "--output",
            out,
            "--shards",
            "2",
            *IN_PROCESS,
            "--format",
            "jsonl",
        )
        == 0
    )
    manifest, docs = _docs(out)
    _, single = _docs(wiki_docs)
    assert sorted("\n".join(d.sentences) for d in docs) == sorted(
        "\n".join(d.sentences) for d in single
    )
    # The index beside the dump was found: one work unit per bz2 stream.
    assert manifest["counters"]["extract/pages"] == 206


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys):
    notxml = tmp_path / "notes.xml"
    notxml.write_text("just some text, not a dump\n")
    utf16 = tmp_path / "dump16.xml"
    xml = bz2.decompress(resources.SAMPLE_WIKI_DUMP.read_bytes()).decode("utf-8")
    empty_books = tmp_path / "nobooks"
    empty_books.mkdir()
    cases = [
        ["--input", tmp_path / "missing.xml.bz2"],
        ["--input", notxml],
        ["--books", empty_books],
        [],
    ]
    for extra in cases:
        rc = run_cli("extract", *extra, "--output", tmp_path / "out", *IN_PROCESS)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, extra
        assert len(err) == 1 and err[0].startswith("error: "), err
    # A UTF-16 dump is decoded, not rejected.
    utf16.write_bytes(
        xml[:200000].rsplit("</page>", 1)[0].encode("utf-16")
        + "</page></mediawiki>".encode("utf-16-le")
    )
    rc = run_cli("extract", "--input", utf16, "--output", tmp_path / "o16", *IN_PROCESS)
    assert rc == 0
    _, docs = _docs(tmp_path / "o16")
    assert len(docs) >= 1


def test_truncated_bz2_keeps_what_came_before(tmp_path):
    data = resources.SAMPLE_WIKI_DUMP.read_bytes()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "docs"
    # A cut dump is loss: over --max-loss (default 0.1%) it exits 1; lifted here.
    argv = ["extract", "--input", cut, "--output", out, *IN_PROCESS]
    assert run_cli(*argv, "--max-loss", "1") == 0
    manifest, docs = _docs(out)
    assert 10 < len(docs) < 105
    assert manifest["counters"]["extract/dropped:truncated_stream"] == 1


def test_worker_processes_keep_the_terminal_quiet(tmp_path):
    """A local run's stderr holds no Beam worker logging: left alone, each worker prints ~20
    INFO lines (channels, harness start and exit) and two warnings. The work still happens in
    worker processes (2 here), and their summary reaches stdout."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "corpus_pipeline", "extract", "--books"]
    cmd += [str(resources.SAMPLE_BOOKS_DIR), "--output", str(out), "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    assert proc.stdout.startswith("extract: 1 documents")
    assert (out / "manifest.json").exists()
