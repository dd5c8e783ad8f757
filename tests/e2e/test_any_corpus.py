"""Any corpus in: JSON-lines, Parquet and .txt folders through `extract`/`mask`/`run`, and
`--max-docs` (the first N documents, the same ones on any number of workers)."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus_pipeline import resources
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.testing.multistream import build_multistream
from tests.e2e.conftest import IN_PROCESS, run_cli


def _google_docs() -> list[str]:
    """The bundled sample: sentence-per-line documents separated by blank lines."""
    raw = resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8")
    return [" ".join(b.split("\n")) for b in raw.strip().split("\n\n") if b.strip()]


def _write_jsonl(path, records: list[str]) -> None:
    data = ("\n".join(records) + "\n").encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)


def _docs(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    docs = []
    for shard in manifest["shards"]:
        docs.extend(read_documents(folder / shard["path"]))
    return manifest, docs


def _extract(out, *args, workers=None):
    """``extract`` into 2 JSON-lines shards: in this process, or on ``workers`` processes."""
    runner = IN_PROCESS if workers is None else ("--workers", workers)
    return run_cli("extract", *args, "--output", out, "--format", "jsonl", "--shards", "2", *runner)


@pytest.mark.parametrize(
    "name",
    ["corpus.jsonl", pytest.param("corpus.jsonl.gz", marks=pytest.mark.soak), "corpus.jsonl.zst"],
)
def test_jsonl_text_is_extracted_and_masked(tmp_path, name):
    texts = _google_docs()
    src = tmp_path / name
    _write_jsonl(src, [json.dumps({"text": t}) for t in texts])
    docs_out = tmp_path / "docs"
    rc = run_cli("extract", "--input", src, "--output", docs_out, *IN_PROCESS)
    assert rc == 0
    manifest = json.loads((docs_out / "manifest.json").read_text())
    assert manifest["documents"] == len(texts)
    assert manifest["config"]["extract"]["text_key"] == "text"
    assert all(s["path"].startswith("text_") for s in manifest["shards"])
    masked = tmp_path / "masked"
    rc = run_cli(
        "mask",
        "--input",
        docs_out,
        "--output",
        masked,
        "--preset",
        "phase1",
        "--dupe-factor",
        "1",
        "--format",
        "hdf5",
        "--shards",
        "1",
        *IN_PROCESS,
    )
    assert rc == 0
    mmanifest = json.loads((masked / "manifest.json").read_text())
    assert mmanifest["totals"]["instances"] > 0


def test_bad_records_are_counted_and_named_exit_0(tmp_path, capsys):
    src = tmp_path / "mixed.jsonl"
    _write_jsonl(
        src,
        [
            json.dumps({"text": "A fine first record. It has two sentences."}),
            json.dumps({"content": "This record has no text key."}),
            '{"text": "unterminated',
            json.dumps({"text": "A fine last record."}),
        ],
    )
    out = tmp_path / "docs"
    assert _extract(out, "--input", src) == 0
    manifest, docs = _docs(out)
    assert sorted(d.id for d in docs) == ["mixed.jsonl:1", "mixed.jsonl:4"]
    assert manifest["counters"]["extract/dropped:missing_key"] == 1
    assert manifest["counters"]["extract/dropped:invalid_json"] == 1
    captured = capsys.readouterr()
    assert "extract/dropped:missing_key" in captured.out
    assert "extract/dropped:invalid_json" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_parquet_with_text_and_id_keys(tmp_path):
    texts = _google_docs()
    src = tmp_path / "train-00000-of-00001.parquet"
    ids = [f"doc-{i}" for i in range(len(texts))]
    pq.write_table(pa.table({"content": texts, "uid": ids}), src)
    out = tmp_path / "docs"
    assert _extract(out, "--input", src, "--text-key", "content", "--id-key", "uid") == 0
    manifest, docs = _docs(out)
    assert sorted(d.id for d in docs) == sorted(ids)
    assert manifest["config"]["extract"]["id_key"] == "uid"
    first = next(d for d in docs if d.id == "doc-0")
    assert len(first.sentences) > 1  # sentence-split like any other source


def test_text_dir_blank_lines_and_doc_per_file(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(
        resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8"), encoding="utf-8"
    )
    (folder / "sub" / "b.txt").write_text("Only one document here. Really.\n", encoding="utf-8")
    (folder / "README.md").write_text("not a text file")
    out = tmp_path / "blank"
    assert _extract(out, "--text-dir", folder) == 0
    manifest, docs = _docs(out)
    n_sample = len(_google_docs())
    assert manifest["documents"] == n_sample + 1
    assert "sub/b.txt:1" in {d.id for d in docs}
    assert manifest["counters"]["extract/skipped:not_txt"] == 1
    out = tmp_path / "per_file"
    assert _extract(out, "--text-dir", folder, "--doc-per-file") == 0
    manifest, docs = _docs(out)
    assert sorted(d.id for d in docs) == ["a.txt", "sub/b.txt"]
    assert manifest["config"]["extract"]["doc_per_file"] is True


def _ids_in_order(folder):
    manifest, docs = _docs(folder)
    return manifest, sorted(d.id for d in docs)


def test_max_docs_same_documents_with_1_and_2_workers(tmp_path):
    """One worker is this process's runner (no worker process to start), two are processes."""
    dump, _ = build_multistream(resources.SAMPLE_WIKI_DUMP, tmp_path, pages_per_stream=20)
    results = []
    for workers in (None, 2):
        out = tmp_path / f"w{workers or 1}"
        assert _extract(out, "--input", dump, "--max-docs", "7", workers=workers) == 0
        manifest, ids = _ids_in_order(out)
        assert manifest["documents"] == 7 and len(ids) == 7
        assert manifest["config"]["extract"]["max_docs"] == 7
        results.append((ids, [s["sha256"] for s in manifest["shards"]]))
    assert results[0] == results[1]
    # The first 7 articles of the dump, in dump order (single-stream reader, whole dump).
    out = tmp_path / "all"
    assert _extract(out, "--input", resources.SAMPLE_WIKI_DUMP, "--max-docs", "7") == 0
    assert _ids_in_order(out)[1] == results[0][0]
    # JSON-lines across two files: the first file's 3 documents, then 2 of the second.
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write_jsonl(a, [json.dumps({"text": f"Record a{i} is here."}) for i in range(3)])
    _write_jsonl(b, [json.dumps({"text": f"Record b{i} is here."}) for i in range(3)])
    out = tmp_path / "jsonl"
    assert _extract(out, "--input", a, "--input", b, "--max-docs", "5") == 0
    assert _ids_in_order(out)[1] == sorted(
        ["a.jsonl:1", "a.jsonl:2", "a.jsonl:3", "b.jsonl:1", "b.jsonl:2"]
    )


def test_run_with_jsonl_input(tmp_path, capsys):
    src = tmp_path / "corpus.jsonl"
    texts = [f"Copy {i}. {t}" for i in range(3) for t in _google_docs()]  # 9 documents
    _write_jsonl(src, ["{broken", *(json.dumps({"text": t}) for t in texts)])
    out = tmp_path / "run"
    rc = run_cli(
        "run",
        "--input",
        src,
        "--output",
        out,
        "--preset",
        "phase1",
        "--dupe-factor",
        "1",
        "--format",
        "hdf5",
        "--shards",
        "1",
        "--doc-shards",
        "2",
        *IN_PROCESS,
        "--max-docs",
        "4",
    )
    assert rc == 0
    docs = json.loads((out / "docs" / "manifest.json").read_text())
    assert docs["documents"] == 4 and docs["config"]["extract"]["max_docs"] == 4
    unpacked = json.loads((out / "unpacked" / "manifest.json").read_text())
    assert unpacked["totals"]["instances"] > 0
    assert "Traceback" not in capsys.readouterr().err
