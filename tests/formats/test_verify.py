"""``corpus-pipeline verify``: good datasets pass, every kind of damage is caught and named.

The datasets are real (``testing.datasets.build_dataset``: Google's sample text and Sherlock
Holmes, WordPiece, static masking, written through the format registry). Each damage test
copies a good dataset, breaks one thing and checks that the problem line names the file at
fault and says what is wrong.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from corpus_pipeline.commands import verify as verify_cmd
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.example_proto import decode_example, encode_example
from corpus_pipeline.formats.manifest import read_manifest, write_manifest
from corpus_pipeline.formats.mmap import IndexedDatasetReader
from corpus_pipeline.formats.tfrecord import frame_record, iter_records
from corpus_pipeline.testing.datasets import build_dataset
from corpus_pipeline.verify import is_temp_name, run_verification, verify_dataset
from tests.support.terminal import on_a_terminal

V = 30522  # bert-base-uncased
S, P, K = 128, 20, 3

# One file of shard 1 per format: the damage targets.
TARGET = {
    "hdf5": "hdf5/sample_training_00001.hdf5",
    "tfrecord": "tfrecord/sample_00001.tfrecord",
    "mmap": "mmap/sample_00001_input_ids.bin",
}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    build_dataset(out, megatron=True)
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "out"
    build_dataset(out, packed=True, megatron=True)
    return out


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def lines_about(problems: list[str], path: Path) -> list[str]:
    return [p for p in problems if p.startswith(f"{path}:")]


def rewrite_tfrecord(path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    """Decode every record, let ``edit`` change them, write file and index back (valid CRCs)."""
    records = [decode_example(d) for d in iter_records(path)]
    edit(records)
    frames = [frame_record(encode_example(r)) for r in records]
    path.write_bytes(b"".join(frames))
    offsets = np.cumsum([0] + [len(f) for f in frames[:-1]])
    path.with_suffix(".index").write_text(
        "".join(f"{o} {len(f)}\n" for o, f in zip(offsets, frames, strict=True))
    )


# ------------------------------------------------------------------------------------------
# Good datasets


@pytest.mark.parametrize("quick", [False, True])
def test_good_unpacked_dataset_passes(plain: Path, quick: bool) -> None:
    report = run_verification(plain, quick=quick, workers=1)
    assert report.problems == []
    manifest = read_manifest(str(plain))
    n = manifest["totals"]["instances"]
    sentences = manifest["megatron"]["sentences"]
    # Every record of every format, plus the Megatron sentences, was read.
    assert report.records == 3 * n + sentences
    # 1 HDF5 + 2 TFRecord + 10 mmap files per shard, + the Megatron pair.
    assert report.files == 2 * 13 + 2
    assert report.summary().startswith("OK: 2 shards x 3 formats")


def test_good_packed_dataset_passes(packed: Path) -> None:
    manifest = read_manifest(str(packed))
    # The sample really is packed: some packs hold 2 and 3 sequences.
    assert manifest["totals"]["records"] < manifest["totals"]["instances"]
    report = run_verification(packed, workers=1)
    assert report.problems == []
    # 1 + 2 + 12 files per shard (pack_lengths added to mmap), + the Megatron pair.
    assert report.files == 2 * 15 + 2


def test_format_subset(plain: Path) -> None:
    report = run_verification(plain, formats=["hdf5"], workers=1)
    assert report.problems == [] and report.formats == ("hdf5",)
    assert report.files == 2


# ------------------------------------------------------------------------------------------
# Damage


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("fmt", ["hdf5", "tfrecord", "mmap"])
def test_truncated_shard_is_caught(plain: Path, tmp_path: Path, fmt: str, quick: bool) -> None:
    out = copy(plain, tmp_path)
    target = out / TARGET[fmt]
    truncate(target)
    problems = verify_dataset(out, quick=quick, workers=1)
    assert lines_about(problems, target), problems
    # Only the damaged shard is blamed.
    assert all("00001" in p for p in problems), problems


def test_tfrecord_truncated_at_a_record_boundary_is_caught_with_quick(
    plain: Path, tmp_path: Path
) -> None:
    out = copy(plain, tmp_path)
    target = out / TARGET["tfrecord"]
    index = target.with_suffix(".index")
    last_offset = int(index.read_text().splitlines()[-1].split()[0])
    target.write_bytes(target.read_bytes()[:last_offset])  # every remaining record is whole
    problems = verify_dataset(out, quick=True, workers=1)
    n = read_manifest(str(out))["shards"][1]["records"]
    assert f"{target}: {n - 1} records, the manifest says {n}" in problems
    assert any(p.startswith(f"{index}: 1 line(s) do not match") for p in problems)


@pytest.mark.parametrize("fmt", ["hdf5", "tfrecord", "mmap"])
def test_flipped_byte_is_caught(plain: Path, tmp_path: Path, fmt: str) -> None:
    out = copy(plain, tmp_path)
    target = out / TARGET[fmt]
    flip(target)
    problems = verify_dataset(out, workers=1)
    assert any("sha256" in p for p in lines_about(problems, target)), problems


def test_flipped_tfrecord_byte_is_caught_by_crc_even_with_quick(
    plain: Path, tmp_path: Path
) -> None:
    out = copy(plain, tmp_path)
    target = out / TARGET["tfrecord"]
    flip(target, 0.37)
    problems = verify_dataset(out, quick=True, workers=1)
    assert any("CRC mismatch" in p for p in lines_about(problems, target)), problems


def test_flipped_hdf5_data_byte_is_caught_by_fletcher32_with_quick(
    plain: Path, tmp_path: Path
) -> None:
    out = copy(plain, tmp_path)
    target = out / TARGET["hdf5"]
    # A byte inside the first chunk of input_ids (gzip data, checksummed by Fletcher-32).
    with h5py.File(target, "r") as f:
        offset = f["input_ids"].id.get_chunk_info(0).byte_offset
    data = bytearray(target.read_bytes())
    data[offset + 100] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = verify_dataset(out, quick=True, workers=1)
    assert any("cannot be read" in p for p in lines_about(problems, target)), problems


def test_wrong_hdf5_dtype_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    target = out / "hdf5/sample_training_00000.hdf5"
    with h5py.File(target, "r+") as f:
        ids = f["input_ids"][...]
        del f["input_ids"]
        f.create_dataset("input_ids", data=ids.astype(np.int64))
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [f"{target}: dataset 'input_ids' has dtype int64, expected int32"]


def test_missing_tfrecord_index_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    index = out / "tfrecord/sample_00000.index"
    index.unlink()
    assert verify_dataset(out, quick=True, workers=1) == [f"{index}: missing"]


def test_stale_tfrecord_index_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    index = out / "tfrecord/sample_00000.index"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:-1]))  # one record is not indexed
    problems = verify_dataset(out, quick=True, workers=1)
    assert len(problems) == 1 and problems[0].startswith(f"{index}: 1 line(s) do not match")


@pytest.mark.parametrize("field", ["segment_ids", "masked_lm_positions"])
def test_missing_mmap_idx_is_caught(plain: Path, tmp_path: Path, field: str) -> None:
    out = copy(plain, tmp_path)
    idx = out / f"mmap/sample_00000_{field}.idx"
    idx.unlink()
    assert verify_dataset(out, quick=True, workers=1) == [f"{idx}: missing"]


def test_instance_count_mismatch_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    shard = manifest["shards"][0]
    n = shard["instances"]
    shard["instances"] = shard["records"] = n + 1
    manifest["totals"]["instances"] += 1
    manifest["totals"]["records"] += 1
    write_manifest(str(out), manifest)  # a wrong but honestly written (signed) manifest
    problems = verify_dataset(out, quick=True, workers=1)
    want = [
        f"{out}/hdf5/sample_training_00000.hdf5: {n} records, the manifest says {n + 1}",
        f"{out}/tfrecord/sample_00000.tfrecord: {n} records, the manifest says {n + 1}",
        f"{out}/mmap/sample_00000_*: {n} records, the manifest says {n + 1}",
    ]
    for line in want:
        assert line in problems, problems
    assert len(problems) == 6  # records and instances, per format


def test_totals_mismatch_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["totals"]["instances"] += 5
    write_manifest(str(out), manifest)  # a wrong but honestly written (signed) manifest
    problems = verify_dataset(out, quick=True, workers=1)
    assert len(problems) == 1 and "totals.instances" in problems[0]


def _hdf5_token(f: h5py.File) -> None:
    f["input_ids"][3, 5] = V + 7


def _hdf5_position(f: h5py.File) -> None:
    row = f["masked_lm_positions"][2]
    # The last real prediction moved one past the last token (still sorted).
    row[np.count_nonzero(row) - 1] = int(f["input_mask"][2].sum())
    f["masked_lm_positions"][2] = row


def _hdf5_segment(f: h5py.File) -> None:
    f["segment_ids"][0, 1] = 2


def _hdf5_unsorted(f: h5py.File) -> None:
    for key in ("masked_lm_positions", "masked_lm_ids"):
        row = f[key][5]
        row[[0, 1]] = row[[1, 0]]
        f[key][5] = row


def _hdf5_gap(f: h5py.File) -> None:
    row = f["masked_lm_positions"][4]
    row[1] = 0  # DLE reads the predictions up to the first zero: the rest would be lost
    f["masked_lm_positions"][4] = row


@pytest.mark.parametrize(
    ("edit", "message", "row"),
    [
        (_hdf5_token, f"token id outside 0..{V - 1} in input_ids", 3),
        (_hdf5_position, "masked position outside 1..length-1", 2),
        (_hdf5_segment, "segment_ids not in {0, 1}", 0),
        (_hdf5_unsorted, "masked positions not sorted", 5),
        (_hdf5_gap, "masked_lm_positions: non-zero after the zero padding", 4),
    ],
)
def test_hdf5_value_out_of_range_is_caught(
    plain: Path, tmp_path: Path, edit: Callable[[h5py.File], None], message: str, row: int
) -> None:
    out = copy(plain, tmp_path)
    target = out / "hdf5/sample_training_00000.hdf5"
    with h5py.File(target, "r+") as f:
        edit(f)
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems[0].startswith(f"{target}: {message}"), problems
    assert problems[0].endswith(f"(1 record, first: record {row})")
    # A gap also leaves non-zero ids after the padding starts: at most that second line.
    assert len(problems) == (2 if edit is _hdf5_gap else 1), problems


def test_tfrecord_value_out_of_range_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    target = out / "tfrecord/sample_00000.tfrecord"

    def edit(records: list[dict[str, Any]]) -> None:
        records[4]["next_sentence_labels"] = np.array([2], np.int64)
        records[6]["masked_lm_ids"][0] = V

    rewrite_tfrecord(target, edit)
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [
        f"{target}: masked_lm_ids outside 0..{V - 1} (1 record, first: record 6)",
        f"{target}: next_sentence_labels not in {{0, 1}} (1 record, first: record 4)",
    ]


def test_tfrecord_wrong_feature_length_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    target = out / "tfrecord/sample_00000.tfrecord"

    def edit(records: list[dict[str, Any]]) -> None:
        records[1]["input_ids"] = records[1]["input_ids"][:-1]
        records[2]["extra"] = np.array([1], np.int64)

    rewrite_tfrecord(target, edit)
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [
        f"{target}: feature 'input_ids' has a length other than {S} (1 record, first: record 1)",
        f"{target}: unexpected feature 'extra' (1 record, first: record 2)",
    ]


def test_mmap_value_out_of_range_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    seg = out / "mmap/sample_00000_segment_ids.bin"
    data = bytearray(seg.read_bytes())
    data[200] = 3
    seg.write_bytes(bytes(data))
    lengths = IndexedDatasetReader(out / "mmap/sample_00000_segment_ids").lengths
    inst = int(np.searchsorted(np.cumsum(lengths), 200, side="right"))
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [
        f"{out}/mmap/sample_00000_*: segment_ids not in {{0, 1}} (1 instance, first: instance {inst})"
    ]


def _pack_rows(f: h5py.File) -> tuple[int, np.ndarray, np.ndarray]:
    """A pack with >= 2 sequences whose second sequence has masked positions."""
    lens = f["packed_input_len"]
    mlens = f["packed_masked_lm_len"]
    for r in range(lens.shape[0]):
        if lens[r].shape[0] >= 2 and mlens[r][1] > 0:
            return r, lens[r].astype(np.int64), mlens[r].astype(np.int64)
    raise AssertionError("no pack of two sequences")


def test_packed_hdf5_masked_position_on_cls_is_caught(packed: Path, tmp_path: Path) -> None:
    out = copy(packed, tmp_path)
    target = out / "hdf5/sample_part_00000.hdf5"
    with h5py.File(target, "r+") as f:
        r, lens, mlens = _pack_rows(f)
        pos = f["masked_lm_positions"][r].copy()
        # The first prediction of sequence 2 moved onto sequence 2's [CLS] (offset lens[0]).
        pos[mlens[0]] = lens[0]
        f["masked_lm_positions"][r] = pos
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [
        f"{target}: masked position outside its sequence (or on its [CLS]) (1 pack, first: pack {r})"
    ]


def test_packed_hdf5_too_long_pack_is_caught(packed: Path, tmp_path: Path) -> None:
    out = copy(packed, tmp_path)
    target = out / "hdf5/sample_part_00000.hdf5"
    with h5py.File(target, "r+") as f:
        r, lens, _ = _pack_rows(f)
        extra = S + 1 - int(lens.sum())
        ids = f["input_ids"][r]
        seg = f["segment_ids"][r]
        lens[-1] += extra
        f["input_ids"][r] = np.concatenate([ids, np.full(extra, 1000, np.int16)])
        f["segment_ids"][r] = np.concatenate([seg, np.ones(extra, np.int8)])
        f["packed_input_len"][r] = lens.astype(np.int16)
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [f"{target}: pack longer than max_seq_length {S} (1 pack, first: pack {r})"]


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ("packed_position_ids", "packed_position_ids are not 1..len-1 on bodies and 0 elsewhere"),
        ("packed_masked_lm_positions", "masked position outside the body of its sequence"),
        ("packed_input_mask", "packed_input_mask is not laid out as"),
    ],
)
def test_packed_tfrecord_layout_damage_is_caught(
    packed: Path, tmp_path: Path, feature: str, message: str
) -> None:
    out = copy(packed, tmp_path)
    target = out / "tfrecord/sample_00000.tfrecord"
    row = 3

    def edit(records: list[dict[str, Any]]) -> None:
        values = records[row][feature]
        if feature == "packed_masked_lm_positions":
            values[0] = S - 1  # the [CLS] slot of sequence 1
        elif feature == "packed_position_ids":
            values[2] += 1
        else:
            values[0] = 3 if values[0] != 3 else 2

    rewrite_tfrecord(target, edit)
    problems = verify_dataset(out, quick=True, workers=1)
    mine = [p for p in problems if message in p]
    assert mine and mine[0].startswith(f"{target}: ") and f"first: record {row})" in mine[0]
    assert all(p.startswith(f"{target}: ") for p in problems)


def test_packed_mmap_pack_lengths_mismatch_is_caught(packed: Path, tmp_path: Path) -> None:
    out = copy(packed, tmp_path)
    pl = out / "mmap/sample_00001_pack_lengths.bin"
    values = np.frombuffer(pl.read_bytes(), np.int16).copy()
    values[0] += 1
    pl.write_bytes(values.tobytes())
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [f"{pl}: values differ from the input_ids lengths"]


def test_megatron_sentence_dataset_is_checked(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    idx = out / "mmap/sample_text_sentence.idx"
    truncate(idx, 0.9)
    problems = verify_dataset(out, quick=True, workers=1)
    assert len(problems) == 1 and problems[0].startswith(f"{idx}: "), problems
    # With --format hdf5 the Megatron dataset (an mmap file) is not part of the check.
    assert verify_dataset(out, formats=["hdf5"], quick=True, workers=1) == []


def test_megatron_count_mismatch_is_caught(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["megatron"]["documents"] += 1
    write_manifest(str(out), manifest)  # a wrong but honestly written (signed) manifest
    problems = verify_dataset(out, quick=True, workers=1)
    assert len(problems) == 1 and "documents, the manifest says" in problems[0]


def test_stray_temp_and_unlisted_files_are_reported(plain: Path, tmp_path: Path) -> None:
    out = copy(plain, tmp_path)
    temp = out / "hdf5/.sample_training_00000.hdf5.tmp-0123456789ab.hdf5"
    temp.write_bytes(b"partial")
    root_temp = out / ".manifest.json.tmp-0123456789ab"
    root_temp.write_text("{")
    other = out / "hdf5/other_training_00009.hdf5"
    shutil.copy(out / TARGET["hdf5"], other)
    problems = verify_dataset(out, quick=True, workers=1)
    assert problems == [
        f"{root_temp}: stray temp file (a writer was killed): delete it",
        f"{temp}: stray temp file (a writer was killed): delete it",
        f"{other}: not listed in the manifest (consumers may read it): remove it",
    ]
    assert is_temp_name(temp.name) and not is_temp_name("sample_training_00000.hdf5")


def test_parallel_workers_give_the_same_problems_in_the_same_order(
    plain: Path, tmp_path: Path
) -> None:
    out = copy(plain, tmp_path)
    truncate(out / TARGET["mmap"])
    flip(out / "tfrecord/sample_00000.tfrecord")
    flip(out / TARGET["hdf5"], 0.8)
    serial = verify_dataset(out, workers=1)
    assert len(serial) >= 3
    assert verify_dataset(out, workers=2) == serial


def test_no_manifest_and_unknown_format_are_user_errors(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no manifest"):
        verify_dataset(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        verify_dataset(tmp_path / "missing")
    out = copy(plain, tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["formats"] = ["hdf5"]
    write_manifest(str(out), manifest)  # a wrong but honestly written (signed) manifest
    with pytest.raises(UserError, match="has no tfrecord shards"):
        verify_dataset(out, formats=["tfrecord"])


# ------------------------------------------------------------------------------------------
# CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    verify_cmd.add_parser(parser.add_subparsers())
    args, rest = parser.parse_known_args(["verify", *argv])
    return verify_cmd.run(args, rest)


def test_cli_ok_prints_one_line_and_exits_0(
    plain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([str(plain), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    manifest = read_manifest(str(plain))
    records = 3 * manifest["totals"]["instances"] + manifest["megatron"]["sentences"]
    assert out.splitlines() == [
        f"OK: 2 shards x 3 formats (hdf5, tfrecord, mmap), 28 files, {records} records checked, "
        "sha256 verified"
    ]
    assert err == ""


def test_cli_prints_one_line_per_problem_and_exits_1(
    plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = copy(plain, tmp_path)
    (out_dir / "tfrecord/sample_00000.index").unlink()
    truncate(out_dir / TARGET["hdf5"])
    assert run_cli([str(out_dir), "--quick", "--workers", "1"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines == verify_dataset(out_dir, quick=True, workers=1)
    assert len(lines) == 2
    assert all(line.startswith(str(out_dir)) for line in lines)
    assert err.startswith("FAILED: 2 problem(s)")
    # Restricted to a format without damage, the same folder passes.
    assert run_cli([str(out_dir), "--quick", "--format", "mmap", "--workers", "1"]) == 0


def test_cli_usage_errors(plain: Path) -> None:
    with pytest.raises(UserError, match="--format"):
        run_cli([str(plain), "--format", "parquet"])
    with pytest.raises(UserError, match="--workers"):
        run_cli([str(plain), "--workers", "0"])
    with pytest.raises(UserError, match="does not run a Beam pipeline"):
        run_cli([str(plain), "--runner", "DataflowRunner"])


def test_cli_shows_a_progress_bar_over_the_files_on_a_terminal(plain: Path) -> None:
    """On a terminal, stderr gets a bar whose total is every file checked (28 here); the
    result line is unchanged on stdout. (Without a terminal, no bar: the tests above.)"""
    rc, out, text = on_a_terminal("verify", plain, "--workers", "1")
    assert rc == 0 and out.startswith("OK: 2 shards x 3 formats"), text
    assert "verify" in text and "28/28" in text, text
