"""The typed manifest model (``formats/manifest_model.py``): every manifest we write reads back into
the model and out again unchanged, older manifests still read, bad ones are one line."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.formats.common import sha256_file
from corpus_pipeline.formats.documents import write_documents
from corpus_pipeline.records import Document
from corpus_pipeline.testing.datasets import build_dataset
from corpus_pipeline.train.dataset import open_dataset
from corpus_pipeline.verify import run_verification


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "out"
    build_dataset(out, packed=True, megatron=True)
    return out


def raw(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def test_a_dataset_manifest_round_trips_through_the_model(packed: Path) -> None:
    data = raw(packed)
    m = mf.load_manifest(str(packed))
    assert isinstance(m, mf.DatasetManifest)
    assert m.packed and m.max_per_pack == 3 and m.version == mf.VERSION
    assert m.megatron is not None and m.megatron.files[0].path.endswith(".bin")
    assert m.shards[1].files["hdf5"][0] == mf.FileEntry(
        "hdf5/sample_part_00001.hdf5", sha256_file(packed / "hdf5/sample_part_00001.hdf5")
    )
    assert m.signature is not None and m.signature.sha256 == data["signature"]["sha256"]
    assert m.to_json() == data
    # Written again from the model: the same content, hence (same time) the same signature.
    again = packed.parent / "again"
    again.mkdir()
    mf.write_manifest(str(again), m)
    rewritten = raw(again)
    assert mf.without_timestamps(rewritten) == mf.without_timestamps(data)
    rewritten["created"] = data["created"]
    assert mf.content_sha256(rewritten) == data["signature"]["sha256"]


def _documents_manifest() -> mf.DocumentsManifest:
    return mf.DocumentsManifest(
        format="text",
        lang="en",
        inputs=["/data/dump.xml.bz2"],
        shards=[mf.DocumentShard(0, "wiki_00000.txt", 3, "ab" * 32)],
        documents=3,
        counters={"extract/passed": 3},
        loss=mf.Loss(
            pages_read=5,
            pages_dropped=1,
            pages_dropped_by_reason={"bad_xml": 1},
            bytes_read=100,
            bytes_dropped=7,
            streams_read=1,
            streams_damaged=0,
            streams_damaged_by_problem={},
            share=0.2,
            share_of="pages",
            max_loss=0.001,
        ),
        config={"extract": {}, "sentences": {}},
        fingerprint=mf.Fingerprint("cd" * 32, "extract", "0.1.0", {"shards": 1}),
    )


def test_a_documents_manifest_round_trips_and_keeps_the_fields_it_was_given(
    tmp_path: Path,
) -> None:
    m = _documents_manifest()
    mf.write_manifest(str(tmp_path), m)
    data = raw(tmp_path)
    assert data["kind"] == "documents" and data["version"] == mf.VERSION
    assert data["fingerprint"] == {"sha256": "cd" * 32, "verb": "extract", "version": "0.1.0",
                                   "shards": 1}  # fmt: skip
    back = mf.load_manifest(str(tmp_path))
    assert isinstance(back, mf.DocumentsManifest)
    assert back.loss == m.loss and back.shards == m.shards and back.fingerprint == m.fingerprint
    assert back.to_json() == data
    # Without counters (run's docs/ folder) the key is absent, not null.
    mf.write_manifest(str(tmp_path), dataclasses.replace(m, counters=None))
    assert "counters" not in raw(tmp_path)


def test_keys_this_version_does_not_know_are_kept(packed: Path, tmp_path: Path) -> None:
    data = raw(packed)
    data["future_field"] = {"x": 1}
    data["shards"][0]["future_shard_field"] = [1, 2]
    data["vocab"]["future_vocab_field"] = "y"
    m = mf.parse_manifest(data, "manifest.json")
    assert isinstance(m, mf.DatasetManifest)
    assert m.extra == {"future_field": {"x": 1}}
    assert m.to_json() == data


def test_an_old_manifest_without_version_or_signature_still_reads(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the first versions wrote: no version, no signature, no vocab.cased/strip_accents,
    no warnings, inputs or fingerprint."""
    out = tmp_path / "old"
    shutil.copytree(packed, out)
    data = raw(packed)
    for key in ("version", "signature", "warnings", "inputs", "fingerprint", "created"):
        data.pop(key, None)
    data["vocab"] = {k: data["vocab"][k] for k in ("file", "sha256", "size")}
    (out / "manifest.json").write_text(json.dumps(data, indent=2))

    m = mf.load_manifest(str(out))
    assert isinstance(m, mf.DatasetManifest)
    assert m.version is None and m.signature is None and m.vocab.cased is None
    assert m.to_json() == data  # nothing invented on the way through
    report = run_verification(out, quick=True)
    assert report.problems == []
    assert len(report.warnings) == 1 and "unsigned manifest" in report.warnings[0]
    # The trainer reads it too (case from the bundled vocabularies' sha256: uncased here).
    info = open_dataset(out)
    assert info.packed and info.max_per_pack == 3 and info.vocab_cased is False
    # Written again, it gains the version and a signature.
    mf.write_manifest(str(out), m)
    assert raw(out)["version"] == mf.VERSION and mf.is_signed(raw(out))


def test_an_old_documents_manifest_reads(tmp_path: Path) -> None:
    name = "wiki_00000.txt"
    docs = [Document(id="1", title="", source="t", sentences=["One.", "Two."])]
    n = write_documents(tmp_path / name, docs, "text")
    entry = {"shard": 0, "path": name, "documents": n, "sha256": sha256_file(tmp_path / name)}
    data = {"kind": "documents", "format": "text", "inputs": [], "shards": [entry],
            "documents": n, "counters": {}, "config": {}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    m = mf.load_manifest(str(tmp_path))
    assert isinstance(m, mf.DocumentsManifest) and m.loss is None and m.lang is None
    assert m.to_json() == data
    report = run_verification(tmp_path)
    assert report.problems == [] and report.kind == "documents"
    assert "unsigned manifest" in report.warnings[0]


def test_a_newer_schema_version_is_refused_in_one_line(packed: Path, tmp_path: Path) -> None:
    data = raw(packed)
    data["version"] = mf.VERSION + 1
    mf.write_manifest(str(tmp_path), data)
    with pytest.raises(UserError, match="written by a newer corpus-pipeline") as e:
        mf.load_manifest(str(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.pop("max_seq_length"), "max_seq_length"),
        (lambda m: m["vocab"].pop("size"), "vocab.size"),
        (lambda m: m["shards"][0].update(records="12"), "shards[].records"),
        (lambda m: m["totals"].update(instances=None), "totals.instances"),
    ],
    ids=["top", "vocab", "shard", "totals"],
)
def test_an_incomplete_manifest_names_the_field(
    packed: Path, tmp_path: Path, edit: Any, field: str
) -> None:
    data = raw(packed)
    edit(data)
    mf.write_manifest(str(tmp_path), data)  # honestly signed, but incomplete
    with pytest.raises(UserError, match="incomplete manifest") as e:
        mf.load_manifest(str(tmp_path))
    assert f"missing or bad {field})" in str(e.value)
    with pytest.raises(UserError, match=re.escape(f"missing or bad {field})")):
        open_dataset(tmp_path)


def test_a_documents_folder_is_not_a_dataset(tmp_path: Path) -> None:
    mf.write_manifest(str(tmp_path), _documents_manifest())
    with pytest.raises(UserError, match="is a documents folder"):
        mf.load_dataset_manifest(str(tmp_path))
