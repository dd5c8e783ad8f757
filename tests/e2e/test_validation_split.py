"""``--validation-docs``: whole documents held out into a ``validation/`` dataset.

Run on the bundled Wikipedia excerpt with the real CLI: the held-out documents' sentences
never reach the training instances, ``verify`` accepts the layout, the trainer evaluates on
it, and the split is the same bytes with any worker count.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from corpus_pipeline import resources
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.manifest import read_manifest
from corpus_pipeline.formats.mmap import read_megatron_sentences
from tests.e2e.conftest import IN_PROCESS, run_cli

HELD = 6
NGRAM = 8


@pytest.fixture(scope="module")
def split_run(tmp_path_factory) -> Path:
    """``run`` on the excerpt, 6 documents held out, unpacked + packed, HDF5 + mmap."""
    out = tmp_path_factory.mktemp("split") / "out"
    rc = run_cli(
        "run",
        "--input",
        resources.SAMPLE_WIKI_DUMP,
        "--output",
        out,
        "--preset",
        "phase1",
        "--dupe-factor",
        "1",
        "--format",
        "hdf5,mmap",
        "--pack",
        "--doc-shards",
        "2",
        "--shards",
        "2",
        *IN_PROCESS,  # worker counts: the last test
        "--validation-docs",
        str(HELD),
    )
    assert rc == 0
    return out


def _restored(out: Path) -> list[np.ndarray]:
    """Every instance of an unpacked dataset with its masked tokens put back."""
    m = read_manifest(str(out))
    rows = []
    for inst in registry.iter_dataset(str(out), m, "hdf5"):
        ids = inst.input_ids.copy()
        ids[inst.masked_lm_positions] = inst.masked_lm_ids
        rows.append(ids)
    return rows


def _ngrams(rows: list[np.ndarray]) -> set[bytes]:
    grams = set()
    for ids in rows:
        a = ids.astype(np.int32)
        for i in range(len(a) - NGRAM + 1):
            grams.add(a[i : i + NGRAM].tobytes())
    return grams


def _found(sentence: np.ndarray, grams: set[bytes]) -> bool:
    """The whole sentence is in some instance: every one of its n-grams is."""
    a = sentence.astype(np.int32)
    return all(a[i : i + NGRAM].tobytes() in grams for i in range(len(a) - NGRAM + 1))


def _sentences(dataset: Path) -> list[np.ndarray]:
    """The long sentences of an unpacked dataset's Megatron sentence dataset."""
    docs = read_megatron_sentences(dataset / "mmap", "wiki")
    return [s for d in docs for s in d.sentences if len(s) >= 3 * NGRAM]


def test_held_out_documents_never_reach_training(split_run):
    train, held = split_run / "unpacked", split_run / "validation" / "unpacked"
    tm, vm = read_manifest(str(train)), read_manifest(str(held))
    docs = read_manifest(str(split_run / "docs"))
    assert vm["split"]["role"] == "validation" and tm["split"]["role"] == "training"
    assert vm["split"]["validation_docs"] == HELD
    assert vm["totals"]["documents"] == HELD == vm["megatron"]["documents"]
    assert tm["totals"]["documents"] + HELD == docs["documents"]
    assert vm["totals"]["instances"] > 0 and vm["statistics"]["instances"] > 0
    assert tm["statistics"]["instances"] == tm["totals"]["instances"]
    train_grams = _ngrams(_restored(train))
    held_grams = _ngrams(_restored(held))
    held_sentences, train_sentences = _sentences(held), _sentences(train)
    assert len(held_sentences) > 50
    # Controls: each side's sentences are found in its own instances...
    assert sum(_found(s, held_grams) for s in held_sentences) > 0.5 * len(held_sentences)
    assert sum(_found(s, train_grams) for s in train_sentences) > 0.5 * len(train_sentences)
    # ... and no held-out sentence is in a training instance (not even as a random next).
    assert [s for s in held_sentences if _found(s, train_grams)] == []
    assert [s for s in train_sentences if _found(s, held_grams)] == []


def test_layout_verifies_and_is_recorded(split_run, capsys):
    for d in ("unpacked", "packed", "validation/unpacked", "validation/packed"):
        assert run_cli("verify", split_run / d) == 0, d
    capsys.readouterr()
    assert run_cli("verify", split_run, "--quick") == 0  # the run folder: every dataset
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["docs", "packed", "unpacked", "validation/packed", "validation/unpacked"]
    run = json.loads((split_run / "run.json").read_text())
    assert run["datasets"] == {
        "docs": "docs",
        "unpacked": "unpacked",
        "packed": "packed",
        "validation/unpacked": "validation/unpacked",
        "validation/packed": "validation/packed",
    }
    assert run["fingerprint"]["config"]["mask"]["validation_docs"] == HELD
    packed = read_manifest(str(split_run / "validation" / "packed"))
    assert packed["kind"] == "packed" and packed["split"]["role"] == "validation"
    assert (
        packed["totals"]["instances"]
        == read_manifest(str(split_run / "validation" / "unpacked"))["totals"]["instances"]
    )


def test_trainer_evaluates_on_the_validation_dataset(split_run, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from corpus_pipeline.train import main as train_main

    torch.set_num_threads(1)  # tests share a couple of cores
    metrics = tmp_path / "m.jsonl"
    rc = train_main(
        [
            "--data",
            str(split_run / "packed"),
            "--eval-data",
            str(split_run / "validation" / "packed"),
            "--eval-every",
            "2",
            "--eval-batches",
            "2",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--preset",
            "tiny",
            "--output-dir",
            str(tmp_path / "train"),
            "--metrics",
            str(metrics),
        ]
    )
    assert rc in (0, None)
    evals = [r for r in map(json.loads, metrics.read_text().splitlines()) if r.get("split")]
    assert [r["step"] for r in evals] == [2, 3]
    assert all(r["masked"] > 0 for r in evals)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", "run.json")
    }


def test_mask_fraction_split_is_the_same_bytes_for_any_worker_count(wiki_docs, tmp_path):
    """One worker is this process's runner (no worker process to start), two are processes."""
    outs = []
    for workers in (IN_PROCESS, ("--workers", "2")):
        out = tmp_path / f"w{len(outs) + 1}"
        rc = run_cli(
            "mask",
            "--input",
            wiki_docs,
            "--output",
            out,
            "--dupe-factor",
            "1",
            "--format",
            "hdf5,mmap",
            "--shards",
            "2",
            "--validation-docs",
            "0.1",
            *workers,
        )
        assert rc == 0
        outs.append(out)
    assert _digests(outs[0]) == _digests(outs[1])
    assert any(k.startswith("validation/hdf5/") for k in _digests(outs[0]))
    vm = read_manifest(str(outs[0] / "validation"))
    tm = read_manifest(str(outs[0]))
    assert 0 < vm["totals"]["documents"] < tm["totals"]["documents"]
    assert vm["split"]["validation_docs"] == 0.1
    # The mask folder with its validation/ beside the format folders verifies, both levels.
    assert run_cli("verify", outs[0]) == 0
    assert run_cli("verify", outs[0] / "validation") == 0


def test_verify_of_a_run_folder_finds_a_damaged_validation_shard(split_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(split_run, out)
    shard = next((out / "validation" / "packed" / "hdf5").glob("*.hdf5"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert run_cli("verify", out) == 1
    captured = capsys.readouterr()
    assert str(shard) in captured.out
    assert "validation/unpacked: OK" in captured.out  # the others are still checked
    assert "validation/packed: " in captured.err


@pytest.mark.parametrize("value", ["0", "1.5", "-3", "1.0e9x"])
def test_bad_values_are_one_line(value, wiki_docs, tmp_path, capsys):
    try:
        rc = run_cli(
            "mask", "--input", wiki_docs, "--output", tmp_path / "o", "--validation-docs", value
        )
    except SystemExit as e:  # argparse: not a number
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "--validation-docs" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
