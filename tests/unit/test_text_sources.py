"""User corpora (``sources/text.py``): every record read, every bad one counted by reason."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus_pipeline.beam.extract_plan import ExtractTask, apply_max_docs, plan_tasks
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.sources import text
from corpus_pipeline.sources.text import TextUnit, input_kind, read_unit


def _read(unit: TextUnit, cfg: ExtractConfig | None = None) -> tuple[list, Counter]:
    counts: Counter = Counter()

    def count(name: str, n: int = 1) -> None:
        counts[name] += n

    return list(read_unit(unit, cfg or ExtractConfig(), count=count)), counts


def _write_jsonl(path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz", "c.jsonl.zst"])
def test_jsonl_text_key_plain_gz_zst(tmp_path, name):
    path = tmp_path / name
    _write_jsonl(path, [json.dumps({"text": f"Line {i}. Second one."}) for i in range(3)])
    records, counts = _read(TextUnit(str(path), "jsonl", name))
    assert [a.id for a in records] == [f"{name}:1", f"{name}:2", f"{name}:3"]
    assert records[1].text == "Line 1. Second one." and records[1].source == "text"
    assert counts["extract/records"] == 3 and counts["extract/articles"] == 3


def test_bad_records_are_counted_by_reason(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"text": "Good one."}),
        json.dumps({"body": "no text key"}),
        "{this is not json",
        json.dumps({"text": 42}),
        json.dumps({"text": None}),
        json.dumps({"text": "  \n \n"}),
        json.dumps(["a", "list"]),
        "",  # blank lines are no records
        json.dumps({"text": "Good two."}),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "\xff\xfe"}\n')
    records, counts = _read(TextUnit(str(path), "jsonl", "bad.jsonl"))
    good = [r for r in records if r is not None]
    assert [g.text for g in good] == ["Good one.", "Good two."]
    assert len(records) == 9  # one per record, None for a dropped one (blank line: none)
    assert counts["extract/dropped:missing_key"] == 1
    assert counts["extract/dropped:invalid_json"] == 1
    assert counts["extract/dropped:not_string"] == 2
    assert counts["extract/dropped:empty"] == 1
    assert counts["extract/dropped:not_object"] == 1
    assert counts["extract/dropped:invalid_encoding"] == 1
    assert counts["extract/records"] == 9


def test_id_key_and_custom_text_key(tmp_path):
    path = tmp_path / "k.jsonl"
    rows = [{"content": "A b.", "uid": "x1"}, {"content": "C d.", "uid": 7}, {"content": "E."}]
    _write_jsonl(path, [json.dumps(r) for r in rows] + [json.dumps({"content": "F.", "uid": []})])
    cfg = ExtractConfig(text_key="content", id_key="uid")
    records, counts = _read(TextUnit(str(path), "jsonl", "k.jsonl"), cfg)
    assert [r.id for r in records if r] == ["x1", "7"]
    assert counts["extract/dropped:missing_id"] == 1 and counts["extract/dropped:bad_id"] == 1


def test_truncated_gzip_is_counted_not_raised(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    data = gzip.compress(
        "\n".join(json.dumps({"text": f"Record {i} here."}) for i in range(2000)).encode()
    )
    path.write_bytes(data[: len(data) // 2])
    records, counts = _read(TextUnit(str(path), "jsonl", "t.jsonl.gz"))
    assert 0 < len(records) < 2000
    assert counts["extract/dropped:truncated_stream"] == 1


def test_parquet_text_and_id_columns(tmp_path):
    path = tmp_path / "d.parquet"
    table = pa.table(
        {
            "body": ["First doc. Yes.", None, "Third doc.", ""],
            "doc_id": ["a", "b", "c", "d"],
            "other": [1, 2, 3, 4],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    cfg = ExtractConfig(text_key="body", id_key="doc_id")
    records, counts = _read(TextUnit(str(path), "parquet", "d.parquet"), cfg)
    assert [r.id for r in records if r] == ["a", "c"]
    assert counts["extract/dropped:not_string"] == 1 and counts["extract/dropped:empty"] == 1
    # Default ids: file name + row number; a missing column: every row counted.
    records, counts = _read(
        TextUnit(str(path), "parquet", "d.parquet"), ExtractConfig(text_key="x")
    )
    assert counts["extract/dropped:missing_key"] == 4 and not any(records)
    records, _ = _read(TextUnit(str(path), "parquet", "d.parquet"), ExtractConfig(text_key="body"))
    assert [r.id for r in records if r] == ["d.parquet:0", "d.parquet:2"]


def test_txt_blank_lines_separate_documents(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("\ufeffOne a.\nOne b.\n\n\n  \nTwo a.\r\n\r\nThree.", encoding="utf-8")
    records, counts = _read(TextUnit(str(path), "txt", "sub/t.txt"))
    assert [(r.id, r.text) for r in records] == [
        ("sub/t.txt:1", "One a.\nOne b."),
        ("sub/t.txt:6", "Two a."),
        ("sub/t.txt:8", "Three."),
    ]
    assert counts["extract/records"] == 3


def test_txt_doc_per_file_and_binary(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("A wrapped line that goes\non here.\n\nSecond paragraph.\n", encoding="utf-8")
    records, _ = _read(TextUnit(str(path), "txt", "t.txt"), ExtractConfig(doc_per_file=True))
    assert len(records) == 1 and records[0].id == "t.txt" and records[0].title == "t"
    assert "Second paragraph." in records[0].text.split("\n")
    path.write_bytes(b"\x00\x01\x02\x03" * 100)
    records, counts = _read(TextUnit(str(path), "txt", "t.txt"), ExtractConfig(doc_per_file=True))
    assert records == [None] and counts["extract/dropped:binary"] == 1


def test_input_kind_by_extension():
    assert input_kind("a.jsonl") == input_kind("s3://b/A.JSONL.ZST") == "jsonl"
    assert input_kind("x.jsonl.gz") == "jsonl" and input_kind("d.parquet") == "parquet"
    assert input_kind("enwiki.xml.bz2") is None and input_kind("dump.xml") is None


def test_plan_tasks_text_inputs_and_max_docs(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write_jsonl(a, [json.dumps({"text": f"A {i} text."}) for i in range(3)] + ["{bad"])
    _write_jsonl(b, [json.dumps({"text": f"B {i} text."}) for i in range(3)])
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "x.txt").write_text("X one.\n\nX two.\n")
    (folder / "notes.md").write_text("ignored")
    inputs = [(str(a), None), (str(b), None), (str(folder), None)]
    tasks = plan_tasks(inputs, [], ExtractConfig())
    assert [(t.source_index, t.kind, t.limit) for t in tasks] == [
        (0, "text", None),
        (1, "text", None),
        (2, "text", None),
        (2, "skip", None),
    ]
    cut = plan_tasks(inputs, [], ExtractConfig(max_docs=5))
    # a.jsonl: 3 documents (+ a bad line, read too); b.jsonl: the first 2 records.
    assert [(t.unit.name, t.limit) for t in cut] == [("a.jsonl", None), ("b.jsonl", 2)]
    more = apply_max_docs(iter(tasks), ExtractConfig(max_docs=100), SentenceConfig())
    assert more == tasks  # fewer documents than asked: everything


def test_empty_text_dir_is_one_line(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(UserError, match="no .txt files"):
        plan_tasks([(str(tmp_path), None)], [], ExtractConfig())


def test_max_docs_must_be_positive():
    with pytest.raises(UserError, match="--max-docs"):
        ExtractConfig(max_docs=0)


def test_task_dataclass_default_limit():
    assert ExtractTask(0, 0, "text", TextUnit("p", "jsonl", "p")).limit is None
    assert text.SOURCE == "text"
