"""Issue #12 item 9 (a)-(d) and item 10: small defects of pack, verify, inspect and the packed
HDF5 shard names. Each test failed before its fix."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from corpus_pipeline.cli import main
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.common import sha256_file
from corpus_pipeline.formats.documents import write_documents
from corpus_pipeline.formats.manifest import read_manifest, write_manifest
from corpus_pipeline.records import Document
from corpus_pipeline.testing.datasets import build_dataset
from corpus_pipeline.verify import run_verification


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str], list[str]]:
    """Run the CLI in this process: (exit code, stdout lines, stderr lines)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out.strip().splitlines(), captured.err.strip().splitlines()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    build_dataset(out)
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "out"
    build_dataset(out, packed=True)
    return out


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def documents_folder(out: Path, shards: int = 2) -> Path:
    """What `extract` writes: document shards + a documents manifest (same fields)."""
    out.mkdir(parents=True)
    entries = []
    for i in range(shards):
        name = f"wiki_{i:05d}.txt"
        docs = [
            Document(id=f"{i}-{j}", title="", source="t", sentences=[f"Doc {i} {j}.", "Two."])
            for j in range(3 + i)
        ]
        n = write_documents(out / name, docs, "text")
        entries.append(
            {"shard": i, "path": name, "documents": n, "sha256": sha256_file(out / name)}
        )
    write_manifest(
        str(out),
        {
            "kind": "documents",
            "format": "text",
            "inputs": [],
            "shards": entries,
            "documents": sum(e["documents"] for e in entries),
            "counters": {},
            "config": {},
        },
    )
    return out


# ------------------------------------------------------------------------------- (a) pack


def test_pack_of_a_documents_folder_is_one_line_exit_2(tmp_path, capsys):
    docs = documents_folder(tmp_path / "docs")
    rc, _, err = cli(capsys, "pack", "--input", docs, "--output", tmp_path / "packed")
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and "documents folder" in err[0] and "mask" in err[0]
    assert not (tmp_path / "packed").exists()


# ------------------------------------------------------------------- (b) verify documents


def test_verify_checks_a_documents_folder(tmp_path, capsys):
    docs = documents_folder(tmp_path / "docs")
    rc, out, _ = cli(capsys, "verify", docs)
    assert rc == 0 and out[-1].startswith("OK: 2 document shards") and "7 documents" in out[-1]
    # A changed shard, a document too many, a missing shard and an unlisted one.
    with open(docs / "wiki_00000.txt", "a", encoding="utf-8") as f:
        f.write("Extra document.\n\n")
    (docs / "wiki_00001.txt").rename(docs / "wiki_00009.txt")
    report = run_verification(docs)
    assert report.kind == "documents"
    p0, p1, p9 = (str(docs / f"wiki_0000{i}.txt") for i in (0, 1, 9))
    assert report.problems == [
        f"{p0}: sha256 {sha256_file(p0)[:16]}... differs from the manifest's "
        f"{read_manifest(str(docs))['shards'][0]['sha256'][:16]}...",
        f"{p0}: 4 documents, the manifest says 3",
        f"{p1}: shard 1: missing",
        f"{p9}: not listed in the manifest (consumers may read it): remove it",
    ]
    rc, _, err = cli(capsys, "verify", docs)
    assert rc == 1 and err[-1].startswith("FAILED: 4 problem(s)")


# ---------------------------------------------------------------- (c) signed manifests


def test_a_manifest_edited_to_drop_a_format_is_caught(plain, tmp_path, capsys):
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["formats"] = ["hdf5", "tfrecord"]  # mmap/ would go unchecked
    path.write_text(json.dumps(manifest, indent=2))
    problems = run_verification(out, quick=True).problems
    assert problems[0] == (
        f"{path}: manifest.json was edited after it was written (its content no longer matches "
        "its signature): re-run the command that wrote it, or restore the original"
    )
    assert f"{out / 'mmap'}: a mmap folder the manifest does not list" in problems[1]
    rc, _, err = cli(capsys, "verify", out, "--quick")
    assert rc == 1
    # Every reader refuses it in one line (the trainer, pack and inspect read through here).
    with pytest.raises(UserError, match="manifest.json was edited after it was written"):
        read_manifest(str(out))
    rc, _, err = cli(capsys, "inspect", out, "--no-report")
    assert rc == 2 and len(err) == 1 and "edited after it was written" in err[0]


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(seed=m["seed"] + 1),
        lambda m: m["statistics"].update(instances=1),
        lambda m: m["shards"][0]["files"]["hdf5"][0].update(sha256="0" * 64),
    ],
    ids=["seed", "statistics", "shard-sha256"],
)
def test_any_edit_breaks_the_signature(plain, tmp_path, edit):
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    problems = run_verification(out, quick=True).problems
    assert "edited after it was written" in problems[0]


def test_an_honest_manifest_without_a_format_still_flags_the_folder(plain, tmp_path):
    out = copy(plain, tmp_path)
    manifest = read_manifest(str(out))
    manifest["formats"] = ["hdf5", "tfrecord"]
    write_manifest(str(out), manifest)  # signed: only the folder is a problem
    assert run_verification(out, quick=True).problems == [
        f"{out / 'mmap'}: a mmap folder the manifest does not list (formats: hdf5, tfrecord): "
        "remove it, or re-run the command that wrote the dataset"
    ]


def test_an_unsigned_older_manifest_is_a_warning_not_a_failure(plain, tmp_path, capsys):
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["signature"]
    path.write_text(json.dumps(manifest))
    assert read_manifest(str(out))["name"] == "sample"
    rc, out_lines, err = cli(capsys, "verify", out, "--quick")
    assert rc == 0 and out_lines[-1].startswith("OK:")
    assert len(err) == 1 and err[0].startswith("warning: ") and "unsigned manifest" in err[0]


def test_write_manifest_signs_and_identical_content_signs_identically(tmp_path):
    a = {"kind": "instances", "shards": [], "seed": 3, "timings": {"elapsed_seconds": 1.5}}
    write_manifest(str(tmp_path), a)
    first = json.loads((tmp_path / "manifest.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{64}", first["signature"]["sha256"])
    # Re-writing a manifest that was read back (signature included) re-signs it.
    write_manifest(str(tmp_path), {**first, "seed": 4})
    assert read_manifest(str(tmp_path))["seed"] == 4


# ---------------------------------------------------------------------- (d) inspect


def _foreign_hdf5(folder: Path, *, position: int | None = None, token: int | None = None) -> Path:
    """An NVIDIA DLE-schema shard (no manifest): 4 rows of 8 real tokens in S=16."""
    folder.mkdir()
    n, s, p = 4, 16, 3
    ids = np.zeros((n, s), np.int32)
    ids[:, :8] = [101, 2000, 2001, 103, 2003, 102, 2005, 102]
    mask = (ids != 0).astype(np.int8)
    pos = np.zeros((n, p), np.int32)
    mids = np.zeros((n, p), np.int32)
    pos[:, 0], mids[:, 0] = 3, 2002
    if position is not None:
        pos[1, 1], mids[1, 1] = position, 2010
    if token is not None:
        ids[2, 2] = token
    path = folder / "x_training_00000.hdf5"
    with h5py.File(path, "w") as f:
        f["input_ids"], f["input_mask"] = ids, mask
        f["segment_ids"] = np.zeros((n, s), np.int8)
        f["masked_lm_positions"], f["masked_lm_ids"] = pos, mids
        f["next_sentence_labels"] = np.zeros(n, np.int8)
    return path


def test_inspect_masked_position_past_the_row_end_is_one_line_exit_2(tmp_path, capsys):
    path = _foreign_hdf5(tmp_path / "dle", position=12)
    rc, _, err = cli(capsys, "inspect", tmp_path / "dle", "--no-report", "--show", "0")
    assert rc == 2 and len(err) == 1, err
    assert err[0] == (
        f"error: {path}: row 1: masked position 12 is outside its sequence of 8 tokens: not a "
        "valid BERT pretraining shard (run `corpus-pipeline verify` on folders we wrote)"
    )


def test_inspect_flags_token_ids_outside_the_vocabulary(tmp_path, capsys):
    path = _foreign_hdf5(tmp_path / "dle", token=40000)
    rc, _, err = cli(capsys, "inspect", tmp_path / "dle", "--no-report", "--show", "0")
    assert rc == 0
    assert len(err) == 1 and err[0].startswith("warning: hdf5: 1 token id(s) outside the vocab")
    assert f"first at {path} row 2" in err[0]
    rc, out, _ = cli(capsys, "inspect", tmp_path / "dle", "--no-report", "--json")
    assert json.loads("\n".join(out))["formats"]["hdf5"]["out_of_vocab_ids"] == 1


# ------------------------------------------------------- 10: names the NVIDIA loaders find


def dle_keeps(name: str) -> bool:
    """NVIDIA DeepLearningExamples PyTorch/LanguageModeling/BERT/run_pretraining.py:
    ``[f for f in os.listdir(args.input_dir) if os.path.isfile(...) and 'training' in f]``."""
    return "training" in name


def mlperf_keeps(name: str, epoch: int) -> bool:
    """NVIDIA's MLPerf BERT, mlcommons/training_results_v2.1
    NVIDIA/benchmarks/bert/implementations/pytorch-22.09/run_pretraining.py: the first epoch
    keeps ``'part_' in f`` of ``os.listdir(args.input_dir)``, later epochs ``'part' in f``."""
    return ("part_" if epoch == 0 else "part") in name


@pytest.mark.parametrize("index", [0, 7, 12345])
def test_packed_hdf5_names_pass_the_mlperf_filter_and_unpacked_the_dle_filter(index):
    packed = Path(registry.shard_files("hdf5", "wiki", index, True)[0]).name
    unpacked = Path(registry.shard_files("hdf5", "wiki", index, False)[0]).name
    assert mlperf_keeps(packed, 0) and mlperf_keeps(packed, 1)
    assert dle_keeps(unpacked)
    # MLPerf's unpacked mode reads variable-length rows: our padded DLE rows must not be
    # picked up by it (they would train with an all-ones input mask).
    assert not mlperf_keeps(unpacked, 1)


def test_a_packed_dataset_is_found_by_the_mlperf_loader_and_read_by_every_tool(packed, capsys):
    names = sorted(p.name for p in (packed / "hdf5").iterdir())
    kept = sorted(n for n in names if mlperf_keeps(n, 0))
    assert kept == names == ["sample_part_00000.hdf5", "sample_part_00001.hdf5"]
    assert run_verification(packed).problems == []
    rc, out, _ = cli(capsys, "inspect", packed, "--format", "hdf5", "--no-report", "--show", "1")
    assert rc == 0 and any("sample_part_00000.hdf5 row 0" in line for line in out)


def test_packed_hdf5_written_under_the_old_name_still_reads_and_verifies(packed, tmp_path):
    out = copy(packed, tmp_path)
    manifest = read_manifest(str(out))
    for shard in manifest["shards"]:
        old = f"hdf5/sample_training_{shard['index']:05d}.hdf5"
        (out / shard["files"]["hdf5"][0]["path"]).rename(out / old)
        shard["files"]["hdf5"][0]["path"] = old
    write_manifest(str(out), manifest)
    assert run_verification(out, formats=["hdf5"]).problems == []
    packs = list(registry.iter_dataset(str(out), manifest, "hdf5"))
    assert len(packs) == manifest["totals"]["records"]
