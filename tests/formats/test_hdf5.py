"""HDF5 shards: round trips, exact schema, the consumers' reader logic, determinism, damage."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from tokenizers import BertWordPieceTokenizer

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import FormatError, atomic_output, remove_stale_temps
from corpus_pipeline.formats.hdf5 import read_hdf5, read_packed_hdf5
from corpus_pipeline.formats.hdf5_writer import HDF5ShardWriter, PackedHDF5ShardWriter
from corpus_pipeline.hashing import rng_for
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.resources import SAMPLE_BOOK, UNCASED_VOCAB
from tests.support.packs import first_fit_packs

S, P, K = 128, 20, 3
CLS, SEP, MASK = 101, 102, 103


# ---------------------------------------------------------------------------------------------
# Real token ids: lines of the bundled Sherlock Holmes book through the bundled uncased vocab.


@pytest.fixture(scope="module")
def sentences() -> list[np.ndarray]:
    tok = BertWordPieceTokenizer(str(UNCASED_VOCAB), lowercase=True)
    lines = [ln.strip() for ln in SAMPLE_BOOK.read_text(encoding="utf-8-sig").splitlines()]
    lines = [ln for ln in lines if ln][:1500]
    return [
        np.asarray(e.ids, np.int32)
        for e in tok.encode_batch(lines, add_special_tokens=False)
        if e.ids
    ]


def segment(sents: list[np.ndarray], start: int, min_len: int) -> list[int]:
    """Consecutive sentences from ``start`` until at least ``min_len`` tokens."""
    out: list[int] = []
    while len(out) < min_len:
        out.extend(sents[start % len(sents)].tolist())
        start += 1
    return out


def make_instances(sents: list[np.ndarray], n: int, s: int = S, p: int = P) -> list[Instance]:
    """BERT-shaped instances with sorted non-zero masked positions; edge cases first."""
    rng = rng_for("test_hdf5", n, s, p)
    out = []
    for k in range(n):
        target = s if k < 2 or rng.random() > 0.2 else int(rng.integers(8, s + 1))
        nsp = int(rng.random() < 0.5)
        a = segment(sents, k, target // 2)
        b = segment(sents, int(rng.integers(len(sents))) if nsp else k + 1, target // 2)
        while len(a) + len(b) > target - 3:  # truncate the longer side, like Google BERT
            (a if len(a) > len(b) else b).pop()
        ids = np.array([CLS, *a, SEP, *b, SEP], np.int32)
        seg = np.array([0] * (len(a) + 2) + [1] * (len(b) + 1), np.int8)
        cand = np.array([i for i in range(len(ids)) if ids[i] not in (CLS, SEP)])
        if k == 0:
            m = min(p, len(cand))  # full P predictions: DLE's "no zero -> index = P" branch
        elif k == 2:
            m = 0  # no prediction at all
        else:
            m = int(min(p, max(1, round(0.15 * len(cand)))))
        pos = np.sort(rng.choice(cand, size=m, replace=False)).astype(np.int32)
        orig = ids[pos].copy()
        ids[pos] = MASK
        out.append(Instance(ids, seg, pos, orig.astype(np.int32), nsp))
    return out


def write_unpacked(path: Path, insts: list[Instance], batch: int, **kw: int) -> HDF5ShardWriter:
    with HDF5ShardWriter(path, S, P, **kw) as w:
        for i in range(0, len(insts), batch):
            w.write(insts[i : i + batch])
    return w


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Unpacked (NVIDIA DLE)


def test_unpacked_round_trip_and_exact_schema(tmp_path, sentences):
    insts = make_instances(sentences, 3000)
    path = tmp_path / "wiki_training_00000.hdf5"
    w = write_unpacked(path, insts, batch=333)
    assert w.num_records == 3000
    assert w.sha256 == sha(path)

    reader = read_hdf5(path)
    assert len(reader) == 3000
    assert list(reader) == insts
    assert next(read_hdf5(path)) == insts[0]

    with h5py.File(path, "r") as f:
        want = {
            "input_ids": ("int32", (3000, S)),
            "input_mask": ("int8", (3000, S)),
            "segment_ids": ("int8", (3000, S)),
            "masked_lm_positions": ("int32", (3000, P)),
            "masked_lm_ids": ("int32", (3000, P)),
            "next_sentence_labels": ("int8", (3000,)),
        }
        assert set(f.keys()) == set(want)
        for key, (dtype, shape) in want.items():
            assert (f[key].dtype.name, f[key].shape) == (dtype, shape), key
            assert f[key].compression == "gzip"
            assert f[key].shuffle and f[key].fletcher32  # built-in filters every libhdf5 has
        lens = np.array([len(i) for i in insts])
        mask = f["input_mask"][:]
        np.testing.assert_array_equal(mask.sum(axis=1), lens)
        np.testing.assert_array_equal(mask, np.arange(S)[None, :] < lens[:, None])
        ids = f["input_ids"][:]
        assert (ids[mask == 0] == 0).all()  # zero padding
        np.testing.assert_array_equal(
            f["next_sentence_labels"][:], [i.next_sentence_label for i in insts]
        )
    # Superblock version 0: readable by the HDF5 1.8/1.10 builds in NVIDIA's containers.
    assert path.read_bytes()[8] == 0


def test_dle_reader_logic_recovers_every_masked_label(tmp_path, sentences):
    insts = make_instances(sentences, 500)
    path = tmp_path / "wiki_training_00001.hdf5"
    write_unpacked(path, insts, batch=64)
    # DLE run_pretraining.py pretraining_dataset: whole arrays, then per index.
    with h5py.File(path, "r") as f:
        keys = [
            "input_ids",
            "input_mask",
            "segment_ids",
            "masked_lm_positions",
            "masked_lm_ids",
            "next_sentence_labels",
        ]
        inputs = [np.asarray(f[k][:]) for k in keys]
    input_ids, input_mask, segment_ids, positions, mlm_ids, nsp = inputs
    assert (positions[0] != 0).all()  # instance 0 has P predictions: the "else P" branch
    for i, inst in enumerate(insts):
        labels = np.full(S, -1, np.int64)
        zeros = np.nonzero(positions[i] == 0)[0]
        index = int(zeros[0]) if len(zeros) else P
        labels[positions[i][:index]] = mlm_ids[i][:index]
        expect = np.full(S, -1, np.int64)
        expect[inst.masked_lm_positions] = inst.masked_lm_ids
        np.testing.assert_array_equal(labels, expect)
        assert index == len(inst.masked_lm_positions)
        assert int(nsp[i]) == inst.next_sentence_label
        np.testing.assert_array_equal(segment_ids[i][: len(inst)], inst.segment_ids)
        assert input_mask[i].sum() == len(inst)


@pytest.fixture(scope="module")
def first_copies(tmp_path_factory, sentences) -> dict[str, tuple[Path, str]]:
    """The first copy of each determinism test's file (unpacked, packed) and its sha256,
    written over a second before the tests write the second copy: HDF5 object timestamps
    have 1 s resolution. One wait serves both tests."""
    folder = tmp_path_factory.mktemp("first_copies")
    a = write_unpacked(folder / "a.hdf5", make_instances(sentences, 2500), batch=2500)
    packs = first_fit_packs(make_instances(sentences, 1500), S, K)
    pa = write_packed(folder / "pa.hdf5", packs, batch=len(packs))
    time.sleep(1.1)
    return {"unpacked": (folder / "a.hdf5", a.sha256), "packed": (folder / "pa.hdf5", pa.sha256)}


def test_unpacked_bytes_do_not_depend_on_time_or_batching(tmp_path, sentences, first_copies):
    insts = make_instances(sentences, 2500)
    a_path, a_sha = first_copies["unpacked"]  # batch=2500, over a second ago
    b = write_unpacked(tmp_path / "b.hdf5", insts, batch=7)
    assert a_sha == b.sha256 == sha(a_path) == sha(tmp_path / "b.hdf5")
    c = write_unpacked(tmp_path / "c.hdf5", insts[:-1], batch=100)
    assert c.sha256 != a_sha


def test_unpacked_failure_leaves_no_file(tmp_path, sentences):
    insts = make_instances(sentences, 50)
    path = tmp_path / "wiki_training_00002.hdf5"
    with pytest.raises(RuntimeError, match="boom"), HDF5ShardWriter(path, S, P) as w:
        w.write(insts)
        assert not path.exists()  # the final name appears only on close
        assert len(os.listdir(tmp_path)) == 1 and os.listdir(tmp_path)[0].startswith(".")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_unpacked_rejects_oversized_and_packed_records(tmp_path, sentences):
    insts = make_instances(sentences, 4)
    with HDF5ShardWriter(tmp_path / "x.hdf5", 64, P) as w:
        with pytest.raises(ValueError, match="max_seq_length 64"):
            w.write([insts[0]])  # 128 tokens
        with pytest.raises(TypeError, match="PackedHDF5ShardWriter"):
            w.write([Pack(insts[:1])])  # type: ignore[list-item]
    with HDF5ShardWriter(tmp_path / "y.hdf5", S, 5) as w, pytest.raises(ValueError, match="5"):
        w.write([insts[0]])  # 20 predictions


def test_empty_unpacked_shard_is_valid(tmp_path):
    path = tmp_path / "wiki_training_00003.hdf5"
    with HDF5ShardWriter(path, S, P) as w:
        w.write([])
    assert w.num_records == 0
    assert len(read_hdf5(path)) == 0 and list(read_hdf5(path)) == []
    with h5py.File(path, "r") as f:
        assert f["input_ids"].shape == (0, S)


def test_damaged_or_foreign_unpacked_files_raise_format_error(tmp_path, sentences):
    insts = make_instances(sentences, 2000)
    good = tmp_path / "good.hdf5"
    write_unpacked(good, insts, batch=500)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated.hdf5"):
        list(read_hdf5(truncated))

    # Flip bytes inside the last chunk of input_ids: fletcher32 turns it into an error.
    with h5py.File(good, "r") as f:
        ds = f["input_ids"]
        info = ds.id.get_chunk_info(ds.id.get_num_chunks() - 1)
    corrupt = tmp_path / "corrupt.hdf5"
    buf = bytearray(data)
    for j in range(info.byte_offset + 10, info.byte_offset + 20):
        buf[j] ^= 0xFF
    corrupt.write_bytes(bytes(buf))
    reader = read_hdf5(corrupt)  # metadata is intact
    with pytest.raises(FormatError, match="corrupt.hdf5.*cannot be read"):
        list(reader)

    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(FormatError, match="garbage.hdf5"):
        read_hdf5(garbage)

    wrong = tmp_path / "wrong.hdf5"
    with h5py.File(wrong, "w") as f:
        f["input_ids"] = np.zeros((3, S), np.int32)
    with pytest.raises(FormatError, match="missing dataset 'input_mask'"):
        read_hdf5(wrong)

    bad_shape = tmp_path / "bad_shape.hdf5"
    with h5py.File(good, "r") as src, h5py.File(bad_shape, "w") as dst:
        for k in src:
            dst[k] = src[k][:10]
        del dst["masked_lm_ids"]
        dst["masked_lm_ids"] = np.zeros((10, P + 1), np.int32)
    with pytest.raises(FormatError, match="masked_lm_ids"):
        read_hdf5(bad_shape)

    with pytest.raises(FormatError, match="no such"):
        read_hdf5(tmp_path / "missing.hdf5")


# ---------------------------------------------------------------------------------------------
# Packed (NVIDIA MLPerf)


def write_packed(path: Path, packs: list[Pack], batch: int) -> PackedHDF5ShardWriter:
    with PackedHDF5ShardWriter(path, S, P, K, vocab_size=30522) as w:
        for i in range(0, len(packs), batch):
            w.write(packs[i : i + batch])
    return w


def test_packed_round_trip_and_vlen_schema(tmp_path, sentences):
    insts = make_instances(sentences, 3000)
    packs = first_fit_packs(insts, S, K)
    assert {len(p.instances) for p in packs} == {1, 2, 3}
    path = tmp_path / "packed_training_00000.hdf5"
    w = write_packed(path, packs, batch=250)
    assert (w.num_records, w.num_instances) == (len(packs), 3000)
    assert w.sha256 == sha(path)

    reader = read_packed_hdf5(path)
    assert len(reader) == len(packs)
    assert list(reader) == packs

    want = {
        "input_ids": np.int16,
        "segment_ids": np.int8,
        "masked_lm_positions": np.int16,
        "masked_lm_ids": np.int16,
        "packed_input_len": np.int16,
        "packed_masked_lm_len": np.int16,
        "next_sentence_labels": np.int8,
    }
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == set(want)  # no input_mask
        for key, base in want.items():
            assert f[key].shape == (len(packs),)
            assert h5py.check_vlen_dtype(f[key].dtype) == np.dtype(base), key
        row = f["masked_lm_positions"][1]
        lens = f["packed_input_len"][1]
    # Positions carry the running offset of earlier sequences.
    p1 = packs[1].instances
    offsets = np.cumsum([0] + [len(i) for i in p1[:-1]])
    expect = np.concatenate([i.masked_lm_positions + o for i, o in zip(p1, offsets, strict=True)])
    np.testing.assert_array_equal(row, expect)
    np.testing.assert_array_equal(lens, [len(i) for i in p1])


def test_mlperf_packed_reader_reconstruction(tmp_path, sentences):
    insts = make_instances(sentences, 400)
    packs = first_fit_packs(insts, S, K)
    path = tmp_path / "packed.hdf5"
    write_packed(path, packs, batch=1000)
    # MLPerf NVIDIA pretraining_dataset(packed_samples=True), then its per-sequence
    # position ids and block-diagonal attention rebuilt from packed_input_len.
    keys = [
        "input_ids",
        "segment_ids",
        "masked_lm_positions",
        "masked_lm_ids",
        "packed_input_len",
        "packed_masked_lm_len",
        "next_sentence_labels",
    ]
    with h5py.File(path, "r") as f:
        inputs = [np.asarray(f[k][:]) for k in keys]
    for index, pack in enumerate(packs):
        ids_, seg_, pos_, mlm_, plen_, _pmlen, nsp_ = (x[index].astype(np.int64) for x in inputs)
        input_ids = np.zeros(S, np.int64)
        input_mask = np.zeros(S, np.int64)
        segment_ids = np.zeros(S, np.int64)
        n = ids_.shape[-1]
        input_ids[:n] = ids_
        input_mask[:n] = 1
        segment_ids[:n] = seg_
        labels = np.full(S, -100, np.int64)
        labels[pos_] = mlm_
        nsp = np.zeros(K, np.int64)
        nsp[: plen_.shape[-1]] = nsp_
        position_ids = np.concatenate([np.arange(ln) for ln in plen_])
        seq_of_token = np.repeat(np.arange(len(plen_)), plen_)

        expect_labels = np.full(S, -100, np.int64)
        start = 0
        for j, inst in enumerate(pack.instances):
            end = start + len(inst)
            np.testing.assert_array_equal(input_ids[start:end], inst.input_ids)
            np.testing.assert_array_equal(segment_ids[start:end], inst.segment_ids)
            np.testing.assert_array_equal(position_ids[start:end], np.arange(len(inst)))
            assert input_ids[start] == CLS and input_ids[end - 1] == SEP
            assert (seq_of_token[start:end] == j).all()
            expect_labels[inst.masked_lm_positions + start] = inst.masked_lm_ids
            assert nsp[j] == inst.next_sentence_label
            start = end
        assert input_mask.sum() == pack.length == start
        assert (input_ids[start:] == 0).all()
        np.testing.assert_array_equal(labels, expect_labels)


def test_packed_bytes_deterministic(tmp_path, sentences, first_copies):
    packs = first_fit_packs(make_instances(sentences, 1500), S, K)
    a_path, a_sha = first_copies["packed"]  # all packs in one batch, over a second ago
    b = write_packed(tmp_path / "b.hdf5", packs, batch=3)
    assert a_sha == b.sha256 == sha(tmp_path / "b.hdf5") == sha(a_path)


def test_packed_refuses_large_vocabulary(tmp_path, sentences):
    with pytest.raises(UserError, match="32768"):
        PackedHDF5ShardWriter(tmp_path / "p.hdf5", S, P, K, vocab_size=50000)
    assert os.listdir(tmp_path) == []
    big = make_instances(sentences, 1)[0]
    big.input_ids[1] = 40000
    with (
        pytest.raises(UserError, match="int16"),
        PackedHDF5ShardWriter(tmp_path / "p.hdf5", S, P, K) as w,
    ):
        w.write([Pack([big])])
    assert os.listdir(tmp_path) == []


def test_packed_rejects_overfull_packs(tmp_path, sentences):
    insts = make_instances(sentences, 8)
    with PackedHDF5ShardWriter(tmp_path / "p.hdf5", S, P, K) as w:
        with pytest.raises(ValueError, match="max_per_pack"):
            w.write([Pack(insts[3:7])])
        with pytest.raises(ValueError, match="max_seq_length"):
            w.write([Pack(insts[0:2])])  # 128 + more tokens
        w.write([insts[5]])  # a bare Instance is a pack of one
    assert list(read_packed_hdf5(tmp_path / "p.hdf5")) == [Pack([insts[5]])]


def test_packed_and_unpacked_readers_refuse_each_other(tmp_path, sentences):
    insts = make_instances(sentences, 20)
    write_unpacked(tmp_path / "u.hdf5", insts, batch=20)
    write_packed(tmp_path / "p.hdf5", first_fit_packs(insts, S, K), batch=20)
    with pytest.raises(FormatError, match="unpacked.*read_hdf5"):
        read_packed_hdf5(tmp_path / "u.hdf5")
    with pytest.raises(FormatError, match="packed.*read_packed_hdf5"):
        read_hdf5(tmp_path / "p.hdf5")


def test_packed_inconsistent_lengths_raise_format_error(tmp_path, sentences):
    insts = make_instances(sentences, 20)
    path = tmp_path / "p.hdf5"
    write_packed(path, first_fit_packs(insts, S, K), batch=20)
    with h5py.File(path, "r+") as f:
        f["packed_input_len"][0] = np.array([5], np.int16)
    with pytest.raises(FormatError, match="pack 0: lengths do not add up"):
        list(read_packed_hdf5(path))


# ---------------------------------------------------------------------------------------------
# Shared helpers (formats/common.py)


def test_atomic_output_and_stale_temp_cleanup(tmp_path):
    final = tmp_path / "wiki_training_00009.hdf5"
    with atomic_output(final, suffix=".hdf5") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".wiki_training_00009.hdf5.tmp-")
        tmp.write_bytes(b"done")
        assert not final.exists()
    assert final.read_bytes() == b"done" and os.listdir(tmp_path) == [final.name]

    with pytest.raises(KeyError), atomic_output(final) as tmp:
        tmp.write_bytes(b"half")
        raise KeyError("x")
    assert final.read_bytes() == b"done" and os.listdir(tmp_path) == [final.name]

    with pytest.raises(UserError, match="does not exist"), atomic_output(tmp_path / "no" / "x"):
        pass

    # What a SIGKILLed writer leaves: a dot-file whose name still contains "training".
    stale = tmp_path / ".wiki_training_00001.hdf5.tmp-0123456789ab.hdf5"
    stale.write_bytes(b"partial")
    keep = tmp_path / ".hidden_notes"
    keep.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == [stale]
    assert sorted(os.listdir(tmp_path)) == [".hidden_notes", final.name]
