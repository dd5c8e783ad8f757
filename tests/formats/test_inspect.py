"""``corpus-pipeline inspect``: statistics, decoded samples, the PNG report, foreign folders.

The statistics are checked against numbers computed here, with plain loops, from the very
instances ``testing.datasets`` wrote (``make_instances`` returns them without writing).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from corpus_pipeline import resources
from corpus_pipeline.commands import inspect as inspect_cmd
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.manifest import read_manifest
from corpus_pipeline.inspect_data import (
    Vocabulary,
    dataset_statistics,
    decode_instance,
    histogram_table,
)
from corpus_pipeline.records import Instance
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked
from corpus_pipeline.testing.datasets import SampleData, build_dataset, make_instances

S, P, K = 128, 20, 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(load_vocab_checked(resources.UNCASED_VOCAB), str(resources.UNCASED_VOCAB))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    build_dataset(out)
    return out


@pytest.fixture(scope="module")
def plain_data() -> SampleData:
    return make_instances()


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "out"
    build_dataset(out, packed=True)
    return out


@pytest.fixture(scope="module")
def packed_data() -> SampleData:
    return make_instances(packed=True)


def expected_statistics(data: SampleData, mask_id: int) -> dict[str, Any]:
    """The statistics, computed the slow and obvious way."""
    instances = data.instances
    n = len(instances)
    tokens = sum(len(i.input_ids) for i in instances)
    lengths = [0] * (S + 1)
    masked_counts = [0] * (P + 1)
    shown_mask = kept = rand = masked = random_next = 0
    for inst in instances:
        lengths[len(inst.input_ids)] += 1
        masked_counts[len(inst.masked_lm_positions)] += 1
        random_next += inst.next_sentence_label
        for pos, orig in zip(inst.masked_lm_positions, inst.masked_lm_ids, strict=True):
            masked += 1
            shown = int(inst.input_ids[pos])
            if shown == mask_id:
                shown_mask += 1
            elif shown == int(orig):
                kept += 1
            else:
                rand += 1
    out: dict[str, Any] = {
        "instances": n,
        "tokens": tokens,
        "length_histogram": lengths,
        "masked_count_histogram": masked_counts,
        "masked": masked,
        "random_next_fraction": random_next / n,
        "masked_per_instance": masked / n,
        "masked_fraction": masked / tokens,
        "mask_token_fraction": shown_mask / masked,
        "kept_fraction": kept / masked,
        "random_fraction": rand / masked,
    }
    if data.packs is not None:
        packs = [p for shard in data.packs for p in shard]
        sizes = [0] * (K + 1)
        for p in packs:
            sizes[len(p.instances)] += 1
        out["packs"] = len(packs)
        out["pack_size_histogram"] = sizes
        out["packing_efficiency"] = tokens / (len(packs) * S)
        out["padding_fraction"] = 1 - tokens / (len(packs) * S)
    else:
        out["packs"] = None
        out["padding_fraction"] = 1 - tokens / (n * S)
    return out


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert got[key] == value, key


# ------------------------------------------------------------------------------------------
# Statistics


def test_statistics_equal_those_of_the_written_instances(
    plain: Path, plain_data: SampleData, vocab: Vocabulary
) -> None:
    assert read_manifest(str(plain))["totals"]["instances"] == len(plain_data.instances)
    stats = dataset_statistics(plain)
    assert stats["manifest"] is True
    assert set(stats["formats"]) == {"hdf5", "tfrecord", "mmap"}
    want = expected_statistics(plain_data, vocab.mask_id)
    for fmt, got in stats["formats"].items():
        assert got["kind"] == "instances" and got["max_seq_length"] == S, fmt
        assert got["records"] == want["instances"] and got["shards"] == 2
        assert_matches(got, want)
    # The 80/10/10 rule shows through (a few hundred instances: loose bounds).
    hdf5 = stats["formats"]["hdf5"]
    assert 0.7 < hdf5["mask_token_fraction"] < 0.9
    assert 0.05 < hdf5["kept_fraction"] < 0.15 and 0.05 < hdf5["random_fraction"] < 0.15


def test_packed_statistics_equal_those_of_the_written_packs(
    packed: Path, packed_data: SampleData, vocab: Vocabulary
) -> None:
    want = expected_statistics(packed_data, vocab.mask_id)
    assert want["pack_size_histogram"][2] > 0 and want["pack_size_histogram"][3] > 0
    stats = dataset_statistics(packed)
    for fmt, got in stats["formats"].items():
        assert got["kind"] == "packed" and got["max_per_pack"] == K, fmt
        assert got["records"] == want["packs"]
        assert_matches(got, want)
    # Packing fills the rows: far less padding than the same instances unpacked.
    unpacked_padding = 1 - want["tokens"] / (want["instances"] * S)
    assert stats["formats"]["hdf5"]["padding_fraction"] < unpacked_padding / 5


def test_statistics_of_one_format(plain: Path) -> None:
    stats = dataset_statistics(plain, "tfrecord")
    assert list(stats["formats"]) == ["tfrecord"]
    with pytest.raises(UserError, match="has no parquet shards"):
        dataset_statistics(plain, "parquet")


# ------------------------------------------------------------------------------------------
# Decoding


def _restore(inst: Instance) -> Instance:
    ids = inst.input_ids.copy()
    ids[inst.masked_lm_positions] = inst.masked_lm_ids
    return Instance(ids, inst.segment_ids, inst.masked_lm_positions[:0], inst.masked_lm_ids[:0], 0)


def test_decoding_marks_every_masked_position_with_its_original(
    plain_data: SampleData, vocab: Vocabulary
) -> None:
    marker = re.compile(r"\[(?:MASK→|~\S+?→|=)(\S+?)\]")
    seen = {"mask": 0, "kept": 0, "random": 0}
    for inst in plain_data.shards[0][:20]:
        segments = decode_instance(inst, vocab)
        assert len(segments) == 2  # A and B
        text = " ".join(segments)
        seen["mask"] += text.count("[MASK→")
        seen["kept"] += text.count("[=")
        seen["random"] += text.count("[~")
        assert len(marker.findall(text)) == len(inst.masked_lm_positions)
        # Markers replaced by their original tokens give the unmasked text.
        restored = marker.sub(r"\1", text).replace(" ##", "")
        assert restored == " ".join(decode_instance(_restore(inst), vocab)).replace(" ##", "")
    assert all(seen.values()), seen


def test_decoding_the_first_sample_sentence(plain_data: SampleData, vocab: Vocabulary) -> None:
    # Google's sample_text.txt opens the first document; its instance decodes to that text.
    firsts = [
        " ".join(decode_instance(_restore(i), vocab))
        for shard in plain_data.shards
        for i in shard
        if "unicode is handled properly" in " ".join(decode_instance(_restore(i), vocab))
    ]
    assert firsts and firsts[0].startswith("this text is included to make sure unicode")


# ------------------------------------------------------------------------------------------
# CLI and report


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    inspect_cmd.add_parser(parser.add_subparsers())
    args, rest = parser.parse_known_args(["inspect", *argv])
    return inspect_cmd.run(args, rest)


def test_cli_prints_statistics_samples_and_writes_the_report(
    plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "copy"
    shutil.copytree(plain, out_dir)
    assert run_cli([str(out_dir), "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "hdf5: 2 shard(s), instances, S=128, P=20" in out
    assert "same statistics as hdf5" in out  # tfrecord and mmap agree with hdf5
    assert "NSP random next" in out and "masked -> [MASK]" in out
    assert out.count("NSP: ") == 3 and "[MASK→" in out
    report = out_dir / "report.png"
    data = report.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert f"report: {report}" in out


def test_cli_packed_custom_report_and_json(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.png"
    assert run_cli([str(packed), "--format", "mmap", "--report", str(report), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["formats"]) == ["mmap"]
    assert doc["formats"]["mmap"]["packing_efficiency"] > 0.9
    assert report.read_bytes().startswith(PNG_MAGIC)
    assert not (packed / "report.png").exists()


def test_cli_no_report_and_vocab_warning(plain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([str(plain), "--no-report", "--vocab", str(resources.CASED_VOCAB)]) == 0
    captured = capsys.readouterr()
    assert "sha256 differs from the manifest's vocabulary" in captured.err
    assert not (plain / "report.png").exists()
    with pytest.raises(UserError, match="--show"):
        run_cli([str(plain), "--show", "-1"])


def test_histogram_table() -> None:
    lines = histogram_table([0, 0, 5, 0, 10], buckets=4)
    assert lines[0].split()[:3] == ["length", "2", "5"]
    assert lines[-1].split()[:3] == ["length", "4", "10"]
    assert histogram_table([0, 0]) == ["  (empty)"]


# ------------------------------------------------------------------------------------------
# Folders without a manifest


def test_foreign_hdf5_folder_without_manifest(
    plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "dle"
    foreign.mkdir()
    for p in sorted((plain / "hdf5").glob("*.hdf5")):
        shutil.copy(p, foreign / p.name)
    # DLE's loader ignores names without "training": so do we.
    shutil.copy(foreign / "sample_training_00000.hdf5", foreign / "sample_validation.hdf5")
    stats = dataset_statistics(foreign)
    assert stats["manifest"] is False and list(stats["formats"]) == ["hdf5"]
    got = stats["formats"]["hdf5"]
    assert (got["max_seq_length"], got["max_predictions"]) == (S, P)  # from the shapes
    assert got["derived_widths"] is False
    reference = dataset_statistics(plain, "hdf5")["formats"]["hdf5"]
    assert got == reference
    assert run_cli([str(foreign), "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert "no manifest: detected from the files" in out and "[MASK→" in out
    assert (foreign / "report.png").read_bytes().startswith(PNG_MAGIC)


def test_foreign_packed_tfrecord_folder_without_manifest(packed: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "graphcore"
    foreign.mkdir()
    for p in sorted((packed / "tfrecord").glob("*.tfrecord")):
        shutil.copy(p, foreign / p.name)  # no .index, no manifest
    got = dataset_statistics(foreign)["formats"]["tfrecord"]
    assert (got["kind"], got["max_seq_length"], got["max_predictions"], got["max_per_pack"]) == (
        "packed",
        S,
        P,
        K,
    )
    reference = dataset_statistics(packed, "tfrecord")["formats"]["tfrecord"]
    assert got == reference


def test_foreign_mmap_folder_without_manifest(plain: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mm"
    shutil.copytree(plain / "mmap", foreign)
    got = dataset_statistics(foreign)["formats"]["mmap"]
    reference = dataset_statistics(plain, "mmap")["formats"]["mmap"]
    assert got["derived_widths"] is True
    assert got["max_seq_length"] == max(i for i, c in enumerate(reference["length_histogram"]) if c)
    for key in ("instances", "tokens", "masked", "random_next_fraction", "kept_fraction"):
        assert got[key] == reference[key], key


def test_folder_without_shards_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UserError, match="no manifest.json and no shards"):
        dataset_statistics(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        dataset_statistics(tmp_path / "missing")
