"""Megatron MMIDIDX datasets: an independent .idx parser checks every byte the writers produce."""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tokenizers import BertWordPieceTokenizer

from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.formats.mmap import (
    IndexedDatasetReader,
    IndexedDatasetWriter,
    MegatronSentenceWriter,
    read_megatron_sentences,
    token_dtype,
)
from corpus_pipeline.formats.mmap_bert import (
    MmapInstanceWriter,
    MmapPackWriter,
    read_mmap_instances,
    read_mmap_packs,
)
from corpus_pipeline.hashing import rng_for
from corpus_pipeline.records import EncodedDocument, Instance
from corpus_pipeline.resources import SAMPLE_BOOK, SAMPLE_GOOGLE_TEXT, UNCASED_VOCAB
from tests.support.packs import first_fit_packs

S, P, K = 128, 20, 3
CLS, SEP, MASK = 101, 102, 103
CODES = {1: "u1", 2: "i1", 3: "i2", 4: "i4", 5: "i8", 6: "f8", 7: "f4", 8: "u2"}


# ---------------------------------------------------------------------------------------------
# An .idx parser written from Megatron's MMIDIDX layout alone, sharing no code with the writer.


@dataclass
class Idx:
    dtype: np.dtype
    lengths: np.ndarray
    offsets: np.ndarray
    doc_index: np.ndarray


def parse_idx(prefix: Path) -> Idx:
    data = Path(f"{prefix}.idx").read_bytes()
    assert data[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack_from("<Q", data, 9)
    (code,) = struct.unpack_from("<B", data, 17)
    n_seq, n_doc = struct.unpack_from("<QQ", data, 18)
    assert version == 1
    pos = 34
    lengths = np.frombuffer(data, "<i4", n_seq, pos)
    pos += 4 * n_seq
    offsets = np.frombuffer(data, "<i8", n_seq, pos)
    pos += 8 * n_seq
    doc_index = np.frombuffer(data, "<i8", n_doc, pos)
    pos += 8 * n_doc
    assert pos == len(data), "no trailing bytes"
    return Idx(np.dtype(CODES[code]), lengths, offsets, doc_index)


def check_pair(prefix: Path, code: int) -> Idx:
    """Every invariant Megatron's IndexedDataset relies on, plus our contiguity."""
    idx = parse_idx(prefix)
    assert idx.dtype == np.dtype(CODES[code])
    bin_size = Path(f"{prefix}.bin").stat().st_size
    item = idx.dtype.itemsize
    ends = idx.offsets + idx.lengths.astype(np.int64) * item
    assert (idx.lengths >= 0).all()
    assert (ends <= bin_size).all()
    if len(idx.lengths):
        assert idx.offsets[0] == 0
        np.testing.assert_array_equal(idx.offsets[1:], ends[:-1])  # contiguous
        assert ends[-1] == bin_size
    else:
        assert bin_size == 0
    assert idx.doc_index[0] == 0
    assert idx.doc_index[-1] == len(idx.lengths)
    assert (np.diff(idx.doc_index) >= 0).all()
    return idx


def bin_items(prefix: Path, idx: Idx) -> list[np.ndarray]:
    raw = Path(f"{prefix}.bin").read_bytes()
    return [
        np.frombuffer(raw, idx.dtype, int(n), int(o))
        for n, o in zip(idx.lengths, idx.offsets, strict=True)
    ]


def subdir(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Real data: the bundled Google sample text and Sherlock Holmes through the bundled vocab.


@pytest.fixture(scope="module")
def tokenizer() -> BertWordPieceTokenizer:
    return BertWordPieceTokenizer(str(UNCASED_VOCAB), lowercase=True)


@pytest.fixture(scope="module")
def sample_documents(tokenizer) -> list[EncodedDocument]:
    """sample_text.txt: one sentence per line, blank lines between documents."""
    docs: list[EncodedDocument] = []
    for k, block in enumerate(SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8").split("\n\n")):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        enc = tokenizer.encode_batch(lines, add_special_tokens=False)
        docs.append(EncodedDocument(f"sample:{k}", [np.asarray(e.ids, np.int32) for e in enc]))
    return [d for d in docs if d.sentences]


@pytest.fixture(scope="module")
def instances(tokenizer) -> list[Instance]:
    lines = [ln.strip() for ln in SAMPLE_BOOK.read_text(encoding="utf-8-sig").splitlines()]
    enc = tokenizer.encode_batch([ln for ln in lines if ln][:1200], add_special_tokens=False)
    sents = [e.ids for e in enc if e.ids]
    rng = rng_for("test_mmap")
    out = []
    for k in range(1500):
        target = int(rng.integers(8, S + 1)) if rng.random() < 0.3 else S
        a = [t for s in sents[k % len(sents) : k % len(sents) + 4] for t in s]
        b = [t for s in sents[(k + 7) % len(sents) : (k + 7) % len(sents) + 4] for t in s]
        while len(a) + len(b) > target - 3:
            (a if len(a) > len(b) else b).pop()
        ids = np.array([CLS, *a, SEP, *b, SEP], np.int32)
        seg = np.array([0] * (len(a) + 2) + [1] * (len(b) + 1), np.int8)
        cand = np.flatnonzero((ids != CLS) & (ids != SEP))
        m = 0 if k == 3 else int(min(P, max(1, round(0.15 * len(cand)))))
        pos = np.sort(rng.choice(cand, size=m, replace=False)).astype(np.int32)
        orig = ids[pos].copy()
        ids[pos] = MASK
        out.append(Instance(ids, seg, pos, orig, int(rng.random() < 0.5)))
    return out


# ---------------------------------------------------------------------------------------------
# Low-level writer / reader


def test_token_dtype_follows_megatron():
    assert token_dtype(30522) == np.uint16
    assert token_dtype(65499) == np.uint16
    assert token_dtype(65500) == np.int32
    assert token_dtype(None) == np.int32


def test_indexed_dataset_layout_and_reader(tmp_path):
    prefix = tmp_path / "toy"
    items = [np.arange(n, dtype=np.int64) * 7 for n in (3, 0, 5, 1, 2)]
    with IndexedDatasetWriter(prefix, np.int32) as w:
        w.add_item(items[0])
        w.add_item(items[1])
        w.end_document()
        w.add_items(items[2:4])
        w.end_document()
        w.end_document()  # an empty document is legal
        w.add_item(items[4])
        w.end_document()
    idx = check_pair(prefix, code=4)
    np.testing.assert_array_equal(idx.lengths, [3, 0, 5, 1, 2])
    np.testing.assert_array_equal(idx.offsets, [0, 12, 12, 32, 36])
    np.testing.assert_array_equal(idx.doc_index, [0, 2, 4, 4, 5])
    assert Path(f"{prefix}.bin").stat().st_size == 11 * 4
    for got, want in zip(bin_items(prefix, idx), items, strict=True):
        np.testing.assert_array_equal(got, want)
    assert w.file_sha256 == {
        "toy.bin": sha(tmp_path / "toy.bin"),
        "toy.idx": sha(tmp_path / "toy.idx"),
    }

    r = IndexedDatasetReader(prefix)
    assert len(r) == 5 and r.num_documents == 4 and r.dtype == np.int32
    np.testing.assert_array_equal(r.document_index, [0, 2, 4, 4, 5])
    for i, want in enumerate(items):
        np.testing.assert_array_equal(r[i], want)
    np.testing.assert_array_equal(r[-1], items[4])
    assert [len(s) for s in r.document(1)] == [5, 1]
    with pytest.raises(IndexError):
        r[5]


def test_writer_refuses_values_outside_dtype(tmp_path):
    with pytest.raises(ValueError, match="70000"), IndexedDatasetWriter(tmp_path / "t", "u2") as w:
        w.add_item(np.array([1, 70000]))
        w.end_document()
    assert os.listdir(tmp_path) == []


def test_writer_refuses_unterminated_document(tmp_path):
    with (
        pytest.raises(ValueError, match="end_document"),
        IndexedDatasetWriter(tmp_path / "t", np.uint16) as w,
    ):
        w.add_item(np.array([1, 2]))
    assert os.listdir(tmp_path) == []


def test_failure_leaves_no_files(tmp_path):
    with (
        pytest.raises(RuntimeError, match="boom"),
        IndexedDatasetWriter(tmp_path / "t", np.uint16) as w,
    ):
        w.add_item(np.array([1, 2]))
        w.end_document()
        names = os.listdir(tmp_path)
        assert len(names) == 1 and names[0].startswith(".t.bin.tmp-")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_truncated_or_foreign_files_raise_format_error(tmp_path):
    prefix = tmp_path / "d"
    with IndexedDatasetWriter(prefix, np.uint16) as w:
        w.add_items([np.arange(10), np.arange(20)])
        w.end_document()
    bin_path, idx_path = Path(f"{prefix}.bin"), Path(f"{prefix}.idx")
    good_bin, good_idx = bin_path.read_bytes(), idx_path.read_bytes()

    bin_path.write_bytes(good_bin[:-2])
    with pytest.raises(FormatError, match=r"d\.bin.*truncated"):
        IndexedDatasetReader(prefix)
    bin_path.write_bytes(good_bin)

    for cut in (5, 30, len(good_idx) - 1):
        idx_path.write_bytes(good_idx[:cut])
        with pytest.raises(FormatError, match=r"d\.idx"):
            IndexedDatasetReader(prefix)

    idx_path.write_bytes(b"XXXXXXXXX" + good_idx[9:])
    with pytest.raises(FormatError, match="bad magic"):
        IndexedDatasetReader(prefix)

    # fairseq's .idx: same magic, but "<Q" length, sizes, pointers and no document count.
    fairseq = (
        b"MMIDIDX\x00\x00"
        + struct.pack("<QBQ", 1, 8, 2)
        + np.array([10, 20], "<i4").tobytes()
        + np.array([0, 20], "<i8").tobytes()
    )
    idx_path.write_bytes(fairseq)
    with pytest.raises(FormatError, match=r"d\.idx"):
        IndexedDatasetReader(prefix)

    idx_path.write_bytes(good_idx[:17] + bytes([9]) + good_idx[18:])
    with pytest.raises(FormatError, match="dtype code 9"):
        IndexedDatasetReader(prefix)

    idx_path.unlink()
    with pytest.raises(FormatError, match="no such file"):
        IndexedDatasetReader(prefix)


# ---------------------------------------------------------------------------------------------
# Sentence-level dataset


def test_sentence_dataset_from_real_text(tmp_path, sample_documents):
    docs = [*sample_documents, EncodedDocument("empty", [np.zeros(0, np.int32)])]
    docs[0] = EncodedDocument(docs[0].id, [*docs[0].sentences, np.zeros(0, np.int32)])
    with MegatronSentenceWriter(tmp_path, "wiki", vocab_size=30522) as w:
        w.write(docs[:1])
        w.write(docs[1:])
    want = sample_documents
    n_sent = sum(len(d.sentences) for d in want)
    assert (w.num_records, w.num_documents) == (n_sent, len(want))
    assert (w.num_dropped_empty_sentences, w.num_dropped_empty_documents) == (2, 1)
    assert sorted(os.listdir(tmp_path)) == ["wiki_text_sentence.bin", "wiki_text_sentence.idx"]

    prefix = tmp_path / "wiki_text_sentence"
    idx = check_pair(prefix, code=8)  # uint16 for a 30522-entry vocab
    assert len(idx.lengths) == n_sent and len(idx.doc_index) == len(want) + 1
    np.testing.assert_array_equal(idx.doc_index, np.cumsum([0] + [len(d.sentences) for d in want]))
    flat = [s for d in want for s in d.sentences]
    for got, s in zip(bin_items(prefix, idx), flat, strict=True):
        np.testing.assert_array_equal(got, s)
        assert CLS not in got and SEP not in got

    back = list(read_megatron_sentences(tmp_path, "wiki"))
    assert len(back) == len(want)
    for b, d in zip(back, want, strict=True):
        assert len(b.sentences) == len(d.sentences)
        for x, y in zip(b.sentences, d.sentences, strict=True):
            assert x.dtype == np.int32
            np.testing.assert_array_equal(x, y)


def test_sentence_dataset_large_vocab_uses_int32(tmp_path):
    doc = EncodedDocument("d", [np.array([70000, 1, 2], np.int32)])
    with MegatronSentenceWriter(tmp_path, "big", vocab_size=100000) as w:
        w.write([doc])
    check_pair(tmp_path / "big_text_sentence", code=4)
    (back,) = read_megatron_sentences(tmp_path, "big")
    np.testing.assert_array_equal(back.sentences[0], [70000, 1, 2])


# ---------------------------------------------------------------------------------------------
# Statically masked instances


def write_instances(out: Path, insts: list[Instance], batch: int) -> MmapInstanceWriter:
    with MmapInstanceWriter(out, "train", vocab_size=30522, max_seq_length=S) as w:
        for i in range(0, len(insts), batch):
            w.write(insts[i : i + batch])
    return w


def test_instance_layout_round_trip(tmp_path, instances):
    w = write_instances(tmp_path, instances, batch=100)
    n = len(instances)
    assert w.num_records == n
    codes = {
        "input_ids": 8,
        "segment_ids": 2,
        "masked_lm_positions": 8,
        "masked_lm_ids": 8,
        "next_sentence_labels": 1,
    }
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"train_{f}.{e}" for f in codes for e in ("bin", "idx")
    )
    parsed = {}
    for field, code in codes.items():
        idx = check_pair(tmp_path / f"train_{field}", code)
        assert len(idx.lengths) == n
        np.testing.assert_array_equal(idx.doc_index, np.arange(n + 1))  # one doc per instance
        parsed[field] = bin_items(tmp_path / f"train_{field}", idx)
    for j, inst in enumerate(instances):
        np.testing.assert_array_equal(parsed["input_ids"][j], inst.input_ids)
        np.testing.assert_array_equal(parsed["segment_ids"][j], inst.segment_ids)
        np.testing.assert_array_equal(parsed["masked_lm_positions"][j], inst.masked_lm_positions)
        np.testing.assert_array_equal(parsed["masked_lm_ids"][j], inst.masked_lm_ids)
        np.testing.assert_array_equal(parsed["next_sentence_labels"][j], [inst.next_sentence_label])
    assert set(w.file_sha256) == {f"train_{f}.{e}" for f in codes for e in ("bin", "idx")}
    for name, digest in w.file_sha256.items():
        assert sha(tmp_path / name) == digest

    reader = read_mmap_instances(tmp_path, "train")
    assert len(reader) == n
    back = list(reader)
    assert back == instances
    assert back[0].input_ids.dtype == np.int32 and back[0].segment_ids.dtype == np.int8


def test_instance_layout_is_byte_identical(tmp_path, instances):
    a = write_instances(subdir(tmp_path, "a"), instances, batch=len(instances))
    b = write_instances(subdir(tmp_path, "b"), instances, batch=7)
    assert a.file_sha256 == b.file_sha256
    for name in a.file_sha256:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_instance_layout_inconsistent_fields_raise_format_error(tmp_path, instances):
    write_instances(tmp_path, instances[:50], batch=50)
    write_instances(subdir(tmp_path, "x"), instances[:49], batch=49)
    os.replace(tmp_path / "x" / "train_masked_lm_ids.idx", tmp_path / "train_masked_lm_ids.idx")
    os.replace(tmp_path / "x" / "train_masked_lm_ids.bin", tmp_path / "train_masked_lm_ids.bin")
    with pytest.raises(FormatError, match="masked_lm_ids has 49 sequences"):
        read_mmap_instances(tmp_path, "train")
    (tmp_path / "train_segment_ids.idx").unlink()
    with pytest.raises(FormatError, match="train_segment_ids.idx: no such file"):
        read_mmap_instances(tmp_path, "train")


def test_packed_layout_round_trip(tmp_path, instances):
    packs = first_fit_packs(instances, S, K)
    assert {len(p.instances) for p in packs} == {1, 2, 3}
    with MmapPackWriter(tmp_path, "packed", vocab_size=30522, max_seq_length=S) as w:
        for i in range(0, len(packs), 77):
            w.write(packs[i : i + 77])
    assert (w.num_records, w.num_instances) == (len(packs), len(instances))
    pl = check_pair(tmp_path / "packed_pack_lengths", code=3)
    np.testing.assert_array_equal(pl.lengths, [len(p.instances) for p in packs])
    np.testing.assert_array_equal(pl.doc_index, np.arange(len(packs) + 1))
    for got, p in zip(bin_items(tmp_path / "packed_pack_lengths", pl), packs, strict=True):
        np.testing.assert_array_equal(got, [len(i) for i in p.instances])
    ids = check_pair(tmp_path / "packed_input_ids", code=8)
    np.testing.assert_array_equal(  # documents are packs
        ids.doc_index, np.cumsum([0] + [len(p.instances) for p in packs])
    )
    reader = read_mmap_packs(tmp_path, "packed")
    assert len(reader) == len(packs)
    assert list(reader) == packs
    # The instance view of a packed layout is the flat instance stream.
    assert list(read_mmap_instances(tmp_path, "packed")) == instances


def test_packed_layout_disagreeing_lengths_raise_format_error(tmp_path, instances):
    packs = first_fit_packs(instances[:30], S, K)
    with MmapPackWriter(tmp_path, "p", vocab_size=30522) as w:
        w.write(packs)
    raw = bytearray((tmp_path / "p_pack_lengths.bin").read_bytes())
    raw[0] ^= 0x01  # first instance length off by one
    (tmp_path / "p_pack_lengths.bin").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="pack 0 lengths disagree"):
        list(read_mmap_packs(tmp_path, "p"))


def test_megatron_core_reads_our_files(tmp_path, instances, sample_documents):
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    write_instances(tmp_path, instances[:40], batch=40)
    ds = indexed.IndexedDataset(str(tmp_path / "train_input_ids"))
    assert len(ds) == 40
    np.testing.assert_array_equal(ds[5], instances[5].input_ids)
    with MegatronSentenceWriter(tmp_path, "wiki", vocab_size=30522) as w:
        w.write(sample_documents)
    ds = indexed.IndexedDataset(str(tmp_path / "wiki_text_sentence"))
    np.testing.assert_array_equal(ds[0], sample_documents[0].sentences[0])
