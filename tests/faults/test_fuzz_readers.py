"""Fuzzed files through every reader: ``FormatError`` / ``InputFormatError`` or valid records.

Valid shards (HDF5, TFRecord and mmap, unpacked and packed, from real masked instances of the
bundled text) and document files are damaged by hypothesis: truncated anywhere, bits flipped,
bytes overwritten, replaced by random bytes; TFRecord payloads are damaged and framed again with
correct CRCs (so the Example decoder, not the CRC, has to catch it); MMIDIDX index fields are
set to hostile values. Reading every record must either succeed with structurally valid records
(field lengths agree) or raise our one-line error, never anything else (IndexError, ValueError,
RecursionError ...) that would surface as a traceback.

The masking and packing properties (sorted positions inside the sequence, never [CLS]/[SEP],
counts within the cap; no instance lost or duplicated, lengths <= S, masked width respected)
already live in ``tests/unit/test_masking.py::test_property_invariants_on_random_documents`` and
``tests/unit/test_packing.py::test_pack_instances_loses_nothing``.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.formats.mmap import IndexedDatasetReader
from corpus_pipeline.formats.tfrecord import frame_record, iter_records
from corpus_pipeline.records import Document, Instance, Pack
from corpus_pipeline.testing.datasets import build_dataset, make_instances

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # `scratch` makes a fresh copy per example
    ],
)
SHARDS = [(fmt, packed) for fmt in registry.FORMATS for packed in (False, True)]
SHARD_IDS = [f"{fmt}-{'packed' if p else 'unpacked'}" for fmt, p in SHARDS]


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``u/`` and ``p/``: one small shard per format; ``docs.jsonl`` and ``docs.txt``."""
    root = tmp_path_factory.mktemp("valid")
    data = make_instances(packed=True, dupe_factor=1)
    assert data.packs is not None
    for packed in (False, True):
        recs: list[Any] = data.packs[0][:10] if packed else data.shards[0][:16]
        for fmt in registry.FORMATS:
            with registry.open_writer(
                fmt,
                str(root / ("p" if packed else "u")),
                "x",
                0,
                max_seq_length=128,
                max_predictions=20,
                vocab_size=30522,
                max_per_pack=3 if packed else None,
            ) as w:
                w.write(recs)
    docs = [
        {"id": f"doc{i}", "title": "T", "source": "s", "sentences": ["One two.", "Three four."]}
        for i in range(4)
    ]
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "docs.txt").write_text("One two.\nThree four.\n\nFive six.\n")
    return root


@pytest.fixture
def scratch() -> Iterator[Callable[..., Path]]:
    """``scratch(src, *names)``: a fresh folder holding copies of ``src/<name>`` (files or
    folders), one per hypothesis example; all removed afterwards."""
    made: list[str] = []

    def copy(src: Path, *names: str) -> Path:
        made.append(tempfile.mkdtemp(prefix="fuzz-"))
        dst = Path(made[-1])
        for name in names:
            if (src / name).is_dir():
                shutil.copytree(src / name, dst / name)
            else:
                shutil.copyfile(src / name, dst / name)
        return dst

    yield copy
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def check_records(records: list[Any]) -> None:
    """What every reader guarantees of a record it yields."""
    for rec in records:
        insts = rec.instances if isinstance(rec, Pack) else [rec]
        assert insts, "empty pack"
        for inst in insts:
            assert isinstance(inst, Instance)
            n = inst.input_ids.shape[0]
            assert inst.input_ids.ndim == 1 and inst.segment_ids.shape == (n,)
            assert inst.masked_lm_ids.shape == inst.masked_lm_positions.shape
            assert inst.masked_lm_positions.ndim == 1


def read_all(folder: Path, fmt: str, packed: bool) -> None:
    """Read the shard to the end: valid records or our error, nothing else."""
    try:
        records = list(registry.read_shard(fmt, str(folder), "x", 0, packed))
    except InputFormatError as e:
        assert str(e) and "\n" not in str(e).strip()
        return
    check_records(records)


@dataclass(frozen=True)
class Damage:
    """One way of damaging a file (a short repr, so hypothesis reports stay readable)."""

    kind: str
    at: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    patch: bytes = b""

    def __call__(self, blob: bytes) -> bytes:
        if self.kind == "truncate":
            return blob[: self.at[0]]
        if self.kind == "random":
            return self.patch
        out = bytearray(blob)
        if self.kind == "flip":
            for at, bit in zip(self.at, self.bits, strict=True):
                out[at] ^= 1 << bit
        elif self.kind == "overwrite":
            out[self.at[0] : self.at[0] + len(self.patch)] = self.patch
        elif self.kind == "zero":
            at, n = self.at
            out[at : at + n] = bytes(len(out[at : at + n]))
        else:
            out[self.at[0] : self.at[0]] = self.patch
        return bytes(out)


@st.composite
def damage(draw: st.DrawFn, size: int) -> Damage:
    """A :class:`Damage` for a file of ``size`` bytes."""
    kinds = ["truncate", "flip", "overwrite", "random", "zero", "insert"] if size else ["random"]
    kind = draw(st.sampled_from(kinds))
    pos = st.integers(0, max(0, size - 1))
    if kind == "truncate":
        return Damage(kind, (draw(pos),))
    if kind == "random":
        return Damage(kind, patch=draw(st.binary(max_size=4096)))
    if kind == "flip":
        at = draw(st.lists(pos, min_size=1, max_size=8))
        return Damage(kind, tuple(at), tuple(draw(st.integers(0, 7)) for _ in at))
    if kind == "zero":
        return Damage(kind, (draw(pos), draw(st.integers(1, 256))))
    patch = draw(st.binary(min_size=1, max_size=64))
    return Damage(kind, (draw(st.integers(0, size)) if kind == "insert" else draw(pos),), (), patch)


@pytest.mark.parametrize("fmt, packed", SHARDS, ids=SHARD_IDS)
@FUZZ
@given(data=st.data())
def test_damaged_shard_files(
    valid: Path, scratch: Callable[..., Path], fmt: str, packed: bool, data: st.DataObject
) -> None:
    """Any one file of a shard (the .index and the .idx files too) damaged in any way."""
    damage_one_file_and_read(valid, scratch, fmt, packed, data)


def damage_one_file_and_read(
    valid: Path, scratch: Callable[..., Path], fmt: str, packed: bool, data: st.DataObject
) -> None:
    folder = scratch(valid / ("p" if packed else "u"), fmt)
    files = registry.shard_files(fmt, "x", 0, packed)
    target = folder / data.draw(st.sampled_from(files), label="file")
    blob = target.read_bytes()
    target.write_bytes(data.draw(damage(len(blob)), label="damage")(blob))
    read_all(folder, fmt, packed)


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@FUZZ
@given(data=st.data())
def test_damaged_tfrecord_examples_behind_valid_crcs(
    valid: Path, scratch: Callable[..., Path], packed: bool, data: st.DataObject
) -> None:
    """Damaged ``tf.train.Example`` payloads framed with correct CRCs: the decoder and the
    schema checks must catch them."""
    folder = scratch(valid / ("p" if packed else "u"), "tfrecord")
    path = folder / registry.shard_files("tfrecord", "x", 0, packed)[0]
    payloads = list(iter_records(path))
    hit = data.draw(st.lists(st.integers(0, len(payloads) - 1), min_size=1, max_size=3))
    for i in hit:
        payloads[i] = data.draw(damage(len(payloads[i])), label=f"record {i}")(payloads[i])
    path.write_bytes(b"".join(frame_record(p) for p in payloads))
    read_all(folder, "tfrecord", packed)


_HEADER = struct.Struct("<9sQBQQ")
_I64 = [0, 1, 3, -1, -(2**63), 2**31, 2**62, 2**63 - 1]


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@FUZZ
@given(data=st.data())
def test_hostile_mmap_index_fields(
    valid: Path, scratch: Callable[..., Path], packed: bool, data: st.DataObject
) -> None:
    """MMIDIDX header, length, offset and document-index fields set to hostile values (huge
    offsets whose end wraps around in int64 included), the ``.bin`` cut short."""
    folder = scratch(valid / ("p" if packed else "u"), "mmap")
    idx_files = [f for f in registry.shard_files("mmap", "x", 0, packed) if f.endswith(".idx")]
    idx = folder / data.draw(st.sampled_from(idx_files), label="file")
    b = bytearray(idx.read_bytes())
    _, _, _, n_seq, n_doc = _HEADER.unpack_from(b)
    field = data.draw(st.sampled_from(["dtype", "count", "length", "offset", "doc", "bin"]))
    value = data.draw(st.sampled_from(_I64) | st.integers(-(2**63), 2**63 - 1), label="value")
    o = _HEADER.size
    if field == "dtype":
        b[17] = data.draw(st.integers(0, 255))
    elif field == "count":
        struct.pack_into("<Q", b, 18 + 8 * data.draw(st.integers(0, 1)), value % 2**64)
    elif field == "length" and n_seq:
        at = o + 4 * data.draw(st.integers(0, n_seq - 1))
        struct.pack_into("<i", b, at, max(-(2**31), min(2**31 - 1, value)))
    elif field == "offset" and n_seq:
        struct.pack_into("<q", b, o + 4 * n_seq + 8 * data.draw(st.integers(0, n_seq - 1)), value)
    elif field == "doc":
        struct.pack_into("<q", b, o + 12 * n_seq + 8 * data.draw(st.integers(0, n_doc - 1)), value)
    else:
        bin_path = idx.with_suffix(".bin")
        blob = bin_path.read_bytes()
        bin_path.write_bytes(blob[: data.draw(st.integers(0, max(0, len(blob) - 1)))])
    idx.write_bytes(bytes(b))
    read_all(folder, "mmap", packed)


@pytest.mark.parametrize("field", ["input_ids", "segment_ids", "next_sentence_labels"])
def test_mmap_offset_whose_end_wraps_around_int64_is_refused(
    valid: Path, scratch: Callable[..., Path], field: str
) -> None:
    """Regression (found by the test above): offset 2**63 - 1 plus a length wrapped around to
    a negative end, passed the "inside .bin" check, and reading gave short sequences
    (instances whose fields disagree) or an IndexError."""
    folder = scratch(valid / "u", "mmap")
    idx = folder / "mmap" / f"x_00000_{field}.idx"
    b = bytearray(idx.read_bytes())
    n_seq = _HEADER.unpack_from(b)[3]
    struct.pack_into("<q", b, _HEADER.size + 4 * n_seq + 8 * (n_seq - 1), 2**63 - 1)
    idx.write_bytes(bytes(b))
    with pytest.raises(InputFormatError, match="points past its end"):
        list(registry.read_shard("mmap", str(folder), "x", 0, False))


def test_packed_hdf5_row_without_sequences_is_refused(
    valid: Path, scratch: Callable[..., Path]
) -> None:
    """Regression (found by the soak run): a packed HDF5 row whose vlen arrays are all empty
    added up (0 == 0) and came back as a Pack of no instance."""
    folder = scratch(valid / "p", "hdf5")
    path = folder / registry.shard_files("hdf5", "x", 0, True)[0]
    with h5py.File(path, "r+") as f:
        for key in f:
            f[key][3] = np.zeros(0, dtype=f[key].dtype.metadata["vlen"])
    with pytest.raises(InputFormatError, match="pack 3 holds no sequence"):
        list(registry.read_shard("hdf5", str(folder), "x", 0, True))


def zero_a_heap_block(path: Path) -> None:
    """Zero 242 bytes inside the first global heap collection: the damage (found by
    ``test_damaged_shard_files``) that made libhdf5 loop forever reading the rows."""
    blob = bytearray(path.read_bytes())
    at = blob.index(b"GCOL") + 1319
    blob[at : at + 242] = bytes(242)
    path.write_bytes(bytes(blob))


_READ_PACKED = """
import sys
from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.formats.hdf5 import read_packed_hdf5
try:
    list(read_packed_hdf5(sys.argv[1]))
except InputFormatError as e:
    print("InputFormatError:", e)
"""


def test_packed_hdf5_with_a_zeroed_heap_block_fails_instead_of_hanging(
    valid: Path, scratch: Callable[..., Path]
) -> None:
    """The reader raises FormatError at once; libhdf5 alone spins forever on this file. Run in
    a child process with a timeout, because a hang in libhdf5 cannot be interrupted."""
    folder = scratch(valid / "p", "hdf5")
    path = folder / registry.shard_files("hdf5", "x", 0, True)[0]
    zero_a_heap_block(path)
    proc = subprocess.run(
        [sys.executable, "-c", _READ_PACKED, str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"InputFormatError: {path}: global heap at byte"), proc.stdout


_READ_UNPACKED = _READ_PACKED.replace("read_packed_hdf5", "read_hdf5")


def zero_a_chunk_entry(path: Path) -> None:
    """Zero the chunk-index entry of ``input_mask``'s first chunk (address 0, size 0)."""
    with h5py.File(path, "r") as f:
        chunk_at = f["input_mask"].id.get_chunk_info(0).byte_offset
    blob = bytearray(path.read_bytes())
    # v1 B-tree entry of a 2-D chunk: size u32, filter mask u32, 3 offsets u64, then address.
    entry = blob.index(struct.pack("<Q", chunk_at)) - 32
    blob[entry : entry + 40] = bytes(40)
    path.write_bytes(bytes(blob))


def test_unpacked_hdf5_with_a_zeroed_chunk_entry_fails_instead_of_crashing(
    valid: Path, scratch: Callable[..., Path]
) -> None:
    """Regression (found by the soak run): a chunk-index entry zeroed (address 0, size 0)
    made libhdf5's fletcher32 filter read out of bounds and kill the process. The reader now
    checks the index first. In a child process, since the failure mode is a crash."""
    folder = scratch(valid / "u", "hdf5")
    path = folder / registry.shard_files("hdf5", "x", 0, False)[0]
    zero_a_chunk_entry(path)
    proc = subprocess.run(
        [sys.executable, "-c", _READ_UNPACKED, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith(f"InputFormatError: {path}: chunk 0 of dataset 'input_mask'")


@pytest.mark.parametrize("packed", [True, False], ids=["heap-hangs", "chunk-crashes"])
def test_verify_reports_damaged_hdf5_metadata(tmp_path: Path, packed: bool) -> None:
    """``corpus-pipeline verify`` on a dataset whose HDF5 metadata is damaged: exits 1 with
    a line about the damage, neither hanging nor crashing."""
    out = tmp_path / "data"
    build_dataset(out, formats=("hdf5",), packed=packed)
    shard = sorted((out / "hdf5").glob("*.hdf5"))[0]
    (zero_a_heap_block if packed else zero_a_chunk_entry)(shard)
    cli = Path(sys.executable).with_name("corpus-pipeline")
    proc = subprocess.run(
        [str(cli), "verify", str(out), "--workers", "1"], capture_output=True, text=True, timeout=20
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}"
    assert ("global heap" if packed else "chunk 0") in said, said[-2000:]


@FUZZ
@given(idx=st.binary(max_size=512), bin_=st.binary(max_size=512))
def test_indexed_dataset_reader_on_random_bytes(
    scratch: Callable[..., Path], valid: Path, idx: bytes, bin_: bytes
) -> None:
    """Random ``.idx``/``.bin`` pairs, with and without the right magic and version."""
    folder = scratch(valid)
    head = _HEADER.pack(b"MMIDIDX\x00\x00", 1, 4, len(idx) // 12, 1)
    for i, blob in enumerate((idx, head + idx)):
        (folder / f"random{i}.idx").write_bytes(blob)
        (folder / f"random{i}.bin").write_bytes(bin_)
        prefix = folder / f"random{i}"
        try:
            r = IndexedDatasetReader(prefix)
            seqs = list(r)
            docs = [r.document(d) for d in range(r.num_documents)]
        except InputFormatError:
            continue
        assert all(s.ndim == 1 for s in seqs)
        assert sum(len(d) for d in docs) == len(seqs)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_DOC_LIKE = st.fixed_dictionaries(
    {"id": _JSON, "sentences": _JSON},
    optional={"title": _JSON, "source": _JSON},
)
_LINE = (
    _JSON.map(json.dumps)
    | _DOC_LIKE.map(json.dumps)
    | st.text(max_size=80).map(lambda t: t.replace("\n", " "))
    | st.binary(max_size=80).map(lambda b: b.decode("latin-1").replace("\n", " "))
)


@FUZZ
@given(lines=st.lists(_LINE, max_size=6), raw=st.binary(max_size=64))
def test_document_files_with_arbitrary_lines(
    scratch: Callable[..., Path], valid: Path, lines: list[str], raw: bytes
) -> None:
    """JSON lines of any shape (and stray bytes): documents with string fields, or one
    InputFormatError naming the file and the line; the text format reads anything."""
    folder = scratch(valid)
    path = folder / "docs.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass") + raw)
    try:
        docs = list(read_documents(path))
    except InputFormatError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        for doc in docs:
            assert isinstance(doc, Document) and isinstance(doc.id, str)
            assert all(isinstance(s, str) for s in doc.sentences)
    text = folder / "docs.txt"
    text.write_bytes(raw + "\n".join(lines).encode("utf-8", "surrogatepass"))
    for doc in read_documents(text):
        assert doc.sentences and all(s.strip() for s in doc.sentences)


def test_deeply_nested_json_line_is_a_format_error(tmp_path: Path) -> None:
    """A line of 100,000 nested brackets: one InputFormatError, not a RecursionError."""
    path = tmp_path / "deep.jsonl"
    path.write_text('{"id": "a", "sentences": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(InputFormatError, match="deep.jsonl:1"):
        list(read_documents(path))


def test_sentences_must_be_a_list(tmp_path: Path) -> None:
    """``"sentences": "Hello."`` is not a list of sentences: refused, not split into letters."""
    path = tmp_path / "str.jsonl"
    path.write_text('{"id": "a", "sentences": "Hello."}\n')
    with pytest.raises(InputFormatError, match="str.jsonl:1"):
        list(read_documents(path))


@pytest.mark.soak
@pytest.mark.parametrize("fmt, packed", SHARDS, ids=SHARD_IDS)
@settings(FUZZ, max_examples=2000)
@given(data=st.data())
def test_soak_damaged_shard_files(
    valid: Path, scratch: Callable[..., Path], fmt: str, packed: bool, data: st.DataObject
) -> None:
    """Soak: the damaged-file property with 2,000 examples per shard kind."""
    damage_one_file_and_read(valid, scratch, fmt, packed, data)
