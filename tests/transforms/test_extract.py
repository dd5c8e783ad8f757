"""``ExtractDocuments`` (extract + sentence splitting + document shards) on a TestPipeline.

The inputs are built here: a five-page dump (three articles, a redirect, a talk page) as one
stream and as a multistream dump with its index, a JSON-lines file, a folder of ``.txt``
documents and a books folder. The documents are written out by hand, so the test fails if
cleaning, splitting, sharding or the shard files are wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import BeamAssertException, assert_that

from corpus_pipeline.beam.extract import ExtractDocuments
from corpus_pipeline.beam.extract_plan import plan_tasks, skipped_book_files
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import Document
from corpus_pipeline.testing.multistream import build_multistream
from tests.transforms.conftest import load, run_graph, save

DUMP = """\
<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
<siteinfo><sitename>Wikipedia</sitename><dbname>enwiki</dbname><namespaces>
<namespace key="0" case="first-letter" /><namespace key="1" case="first-letter">Talk</namespace>
</namespaces></siteinfo>
<page><title>Alpha</title><ns>0</ns><id>1</id><revision><id>11</id>
<text>'''Alpha''' is the first letter. It comes before [[Beta|beta]].</text></revision></page>
<page><title>Beta</title><ns>0</ns><id>2</id><revision><id>12</id>
<text>'''Beta''' is the second letter.

It follows alpha. Greeks wrote it.</text></revision></page>
<page><title>Talk:Alpha</title><ns>1</ns><id>3</id><revision><id>13</id>
<text>Talk pages are not articles.</text></revision></page>
<page><title>A</title><ns>0</ns><id>4</id><redirect title="Alpha" /><revision><id>14</id>
<text>#REDIRECT [[Alpha]]</text></revision></page>
<page><title>Gamma</title><ns>0</ns><id>5</id><revision><id>15</id>
<text>'''Gamma''' is the third letter. Dr. Smith said so.</text></revision></page>
</mediawiki>
"""

ARTICLES = [
    Document(
        "wiki:1", "Alpha", "wikipedia", ["Alpha is the first letter.", "It comes before beta."]
    ),
    Document(
        "wiki:2",
        "Beta",
        "wikipedia",
        ["Beta is the second letter.", "It follows alpha.", "Greeks wrote it."],
    ),
    Document("wiki:5", "Gamma", "wikipedia", ["Gamma is the third letter.", "Dr. Smith said so."]),
]
SHARDS = 4


def shard_of(doc_id: str, shards: int = SHARDS) -> int:
    """The documented rule of ``beam/extract.py``: a document's shard hashes its id."""
    return stable_hash("extract-shard", doc_id) % shards


def expected_shards(docs: list[Document], shards: int = SHARDS) -> list[list[Document]]:
    """Documents per shard, each shard in input order."""
    return [[d for d in docs if shard_of(d.id, shards) == s] for s in range(shards)]


def extract(
    out: Path,
    inputs: list[tuple[str, str | None]],
    books: list[str] = (),  # type: ignore[assignment]
    *,
    ecfg: ExtractConfig | None = None,
    shards: int = SHARDS,
    name: str = "wiki",
) -> tuple[dict[str, int], list[dict]]:
    """Plan and run ``ExtractDocuments``; returns the counters and the shard summaries.

    The summaries are checked inside the graph: one per shard, each naming a file that holds
    the number of documents it says, with the sha256 it says.
    """
    ecfg = ecfg or ExtractConfig()
    scfg = SentenceConfig()
    tasks = plan_tasks(inputs, books, ecfg, scfg)
    out.mkdir()
    saved = out.parent / f"{out.name}-summaries.pickle"

    def check(got: list[dict]) -> None:
        for s in got:
            data = (out / s["path"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != s["sha256"]:
                raise BeamAssertException(f"{s['path']}: sha256 differs from its summary")
            if len(list(read_documents(out / s["path"]))) != s["documents"]:
                raise BeamAssertException(f"{s['path']}: not {s['documents']} documents")
        if sorted(s["shard"] for s in got) != list(range(shards)):
            raise BeamAssertException(f"one summary per shard expected, got {got}")

    def build(p: beam.Pipeline) -> None:
        written = p | ExtractDocuments(
            tasks,
            str(out),
            ecfg,
            scfg,
            shards,
            name,
            "jsonl",
            Progress(None),
            skipped_book_files(books),
        )
        assert_that(written, check)
        _ = written | beam.combiners.ToList() | beam.Map(save, str(saved))

    counts = run_graph(build)
    return counts, sorted(load(saved), key=lambda s: s["shard"])


def documents_of(out: Path, summaries: list[dict]) -> list[list[Document]]:
    return [list(read_documents(out / s["path"])) for s in summaries]


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dump") / "tiny-pages-articles.xml"
    path.write_text(DUMP, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single_stream(
    tmp_path_factory: pytest.TempPathFactory, dump: Path
) -> tuple[Path, dict[str, int], list[dict]]:
    """The dump read in chunks of two pages (SplitIntoChunks -> reshuffle -> CleanChunk)."""
    out = tmp_path_factory.mktemp("single") / "docs"
    counts, summaries = extract(out, [(str(dump), None)], ecfg=ExtractConfig(pages_per_chunk=2))
    return out, counts, summaries


def test_single_stream_dump_gives_the_articles_in_their_shards(single_stream) -> None:
    out, counts, summaries = single_stream
    want = expected_shards(ARTICLES)
    assert any(not s for s in want), "the setup should leave a shard empty"
    assert documents_of(out, summaries) == want
    # An empty shard is still a file (every shard exists, whatever the input).
    assert [s["path"] for s in summaries] == [f"wiki_{i:05d}.jsonl" for i in range(SHARDS)]
    assert [s["documents"] for s in summaries] == [len(s) for s in want]
    assert counts["extract/read:pages"] == 5
    assert counts["extract/documents"] == 3
    assert counts["extract/redirects"] == 1
    assert counts["extract/dropped:namespace"] == 1
    assert counts["split/sentences"] == 7


def test_multistream_units_give_the_same_shard_bytes(
    tmp_path: Path, dump: Path, single_stream
) -> None:
    """Two pages per bz2 stream: each stream is a unit read whole (ExtractUnit), not chunked."""
    ref_out, _, ref = single_stream
    multi, index = build_multistream(dump, tmp_path, pages_per_stream=2, name="tiny")
    tasks = plan_tasks([(str(multi), str(index))], [], ExtractConfig(), SentenceConfig())
    assert len(tasks) == 4  # the <siteinfo> stream and three streams of pages
    out = tmp_path / "docs"
    counts, summaries = extract(out, [(str(multi), str(index))])
    assert counts["extract/read:units"] == 4
    assert [s["sha256"] for s in summaries] == [s["sha256"] for s in ref]
    assert documents_of(out, summaries) == documents_of(ref_out, ref)


def test_max_docs_keeps_the_first_documents_in_input_order(tmp_path: Path, dump: Path) -> None:
    ecfg = ExtractConfig(pages_per_chunk=2, max_docs=2)
    counts, summaries = extract(tmp_path / "docs", [(str(dump), None)], ecfg=ecfg)
    assert documents_of(tmp_path / "docs", summaries) == expected_shards(ARTICLES[:2])
    assert counts["extract/documents"] == 2


def test_json_lines_text_folder_and_books_with_skipped_files(tmp_path: Path) -> None:
    records = [{"text": "First record here. Second sentence."}, {"nope": 1}, {"text": "Third."}]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    txt = tmp_path / "txt"
    txt.mkdir()
    (txt / "a.txt").write_text("Doc one line. More.\n\nDoc two.\n", encoding="utf-8")
    (txt / "notes.md").write_text("not a .txt file", encoding="utf-8")
    books = tmp_path / "books"
    books.mkdir()
    (books / "tale.txt").write_text(
        "Once upon a time there was a fox. The fox ran.\n\nIt was fast.\n", encoding="utf-8"
    )
    (books / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    out = tmp_path / "docs"
    counts, summaries = extract(
        out, [(str(jsonl), None), (str(txt), None)], [str(books)], shards=2, name="mixed"
    )
    docs = [
        Document("c.jsonl:1", "c.jsonl:1", "text", ["First record here.", "Second sentence."]),
        Document("c.jsonl:3", "c.jsonl:3", "text", ["Third."]),
        Document("a.txt:1", "a.txt", "text", ["Doc one line.", "More."]),
        Document("a.txt:3", "a.txt", "text", ["Doc two."]),
        Document(
            "book:tale.txt",
            "tale",
            "books",
            ["Once upon a time there was a fox.", "The fox ran.", "It was fast."],
        ),
    ]
    assert documents_of(out, summaries) == expected_shards(docs, 2)
    assert counts["extract/documents"] == 5
    assert counts["extract/dropped:missing_key"] == 1
    assert counts["extract/skipped:not_txt"] == 1  # notes.md in the .txt folder
    assert counts["books/skipped:not_txt"] == 1  # cover.jpg in the books folder
