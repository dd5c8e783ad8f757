"""Megatron memory-mapped indexed datasets (``MMIDIDX`` version 1, ``.bin`` + ``.idx``).

The ``.idx`` file, little-endian, no padding (megatron-core ``indexed_dataset.py``):

1. magic ``b"MMIDIDX\\x00\\x00"`` (9 bytes); 2. u64 version = 1; 3. u8 dtype code
   (1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f64, 7 f32, 8 u16); 4. u64 sequence_count;
5. u64 document_count (= documents + 1); 6. int32[sequence_count] lengths (elements);
7. int64[sequence_count] byte offsets into ``.bin``; 8. int64[document_count] document index:
   0, then the running sequence count after each document.

The ``.bin`` file is the sequences' elements back to back. Both are written under temp names in
the destination folder and renamed on a successful close, the ``.idx`` last: a ``.idx`` that
exists describes a complete ``.bin``.

Three datasets are built on this:

**Sentence level** (Megatron-LM / ColossalAI BERT, which mask at training time):
``<name>_text_sentence.bin/.idx``, one sequence per sentence (WordPiece ids without [CLS]/[SEP]),
documents delimited by the document index, ids uint16 when the vocabulary has < 65500 entries,
else int32. Empty sentences and documents left empty are dropped (and counted).

**Statically masked instances** (our own layout; each file pair is a valid ``IndexedDataset``).
For N instances, one indexed dataset per field, sequence i of every field belongs to instance i:

=============================== ===================== ==========================================
prefix                          dtype                 sequence i
=============================== ===================== ==========================================
``<name>_input_ids``            uint16 / int32        the L token ids of instance i (unpadded)
``<name>_segment_ids``          int8                  its L segment ids
``<name>_masked_lm_positions``  uint16 / int32        its M sorted masked positions (0-based)
``<name>_masked_lm_ids``        uint16 / int32        its M original ids
``<name>_next_sentence_labels`` uint8                 one element: 1 = random next sentence
=============================== ===================== ==========================================

Token ids use uint16 when the vocabulary has < 65500 entries (else int32), positions uint16 when
S < 65500 (else int32). The document index of every field is 0, 1, ..., N: one document per
instance, so ``IndexedDataset(prefix)[i]`` and document i are both instance i.

**Packed instances**: the same five fields, one sequence per *instance*, plus
``<name>_pack_lengths`` (int16, int32 when S >= 32768) holding one sequence per pack: the length
of each instance in the pack (1..K values). The document index of the five instance fields
groups instances into packs (document j = the instances of pack j), that of ``_pack_lengths`` is
0..num_packs. Masked positions stay relative to their own instance; a consumer adds the running
offset ``cumsum(pack_lengths) - pack_lengths`` to place them in the packed row.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline import fsio
from corpus_pipeline.formats.base import HashingFile, ShardWriter
from corpus_pipeline.formats.common import FormatError, named_os_error
from corpus_pipeline.records import EncodedDocument, Instance, Pack

__all__ = [
    "MAGIC",
    "VERSION",
    "DTYPE_CODES",
    "token_dtype",
    "IndexedDatasetWriter",
    "IndexedDatasetReader",
    "MmapInstanceReader",
    "MmapPackReader",
    "MegatronSentenceWriter",
    "read_megatron_sentences",
    "MmapInstanceWriter",
    "MmapPackWriter",
    "read_mmap_instances",
    "read_mmap_packs",
    "INSTANCE_FIELDS",
]

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence_count, document_count

#: Megatron's dtype codes.
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float64),
    7: np.dtype(np.float32),
    8: np.dtype(np.uint16),
}
_CODE_OF = {dt: code for code, dt in DTYPE_CODES.items()}

#: The per-instance fields of the statically masked layout, in order.
INSTANCE_FIELDS = (
    "input_ids",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "next_sentence_labels",
)


def token_dtype(cardinality: int | None) -> np.dtype:
    """Megatron's choice of element type: uint16 when ``cardinality < 65500``, else int32."""
    if cardinality is not None and cardinality < 65500:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def _paths(prefix: str | Path) -> tuple[Path, Path]:
    p = str(prefix)
    return Path(p + ".bin"), Path(p + ".idx")


class _Sequences:
    """The sequences and documents of one indexed dataset being written: its ``.bin`` stream
    and the index kept in memory (12 bytes per sequence + 8 per document)."""

    def __init__(self, dtype: np.dtype, bin_file: HashingFile, bin_path: Path) -> None:
        self.dtype = dtype
        self.bin = bin_file
        self.bin_path = bin_path
        self._lengths: list[np.ndarray] = []
        self._docs: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self.num_sequences = 0
        self._last_doc_end = 0

    def _cast(self, arr: np.ndarray) -> np.ndarray:
        a = np.asarray(arr)
        if a.dtype == self.dtype:
            return a
        if a.size and self.dtype.kind in "iu" and a.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            lo, hi = int(a.min()), int(a.max())
            if lo < info.min or hi > info.max:
                raise ValueError(
                    f"{self.bin_path}: value {hi if hi > info.max else lo} does not fit {self.dtype}"
                )
        return a.astype(self.dtype)

    def add_items(self, arrays: Sequence[np.ndarray]) -> None:
        if not arrays:
            return
        flat = self._cast(np.concatenate([np.asarray(a).ravel() for a in arrays]))
        self.bin.write(np.ascontiguousarray(flat).tobytes())
        self._lengths.append(
            np.fromiter((np.asarray(a).size for a in arrays), dtype=np.int32, count=len(arrays))
        )
        self.num_sequences += len(arrays)

    def end_documents(self, sizes: Sequence[int] | np.ndarray) -> None:
        ends = self._last_doc_end + np.cumsum(np.asarray(sizes, dtype=np.int64))
        if ends.size:
            if ends[-1] > self.num_sequences or (np.asarray(sizes) < 0).any():
                raise ValueError("document sizes exceed the sequences added")
            self._docs.append(ends)
            self._last_doc_end = int(ends[-1])

    @property
    def num_documents(self) -> int:
        return sum(int(d.shape[0]) for d in self._docs) - 1

    def index_bytes(self) -> bytes:
        """The ``.idx`` file; every sequence must belong to a document by now."""
        if self._last_doc_end != self.num_sequences:
            raise ValueError(
                f"{self.bin_path}: {self.num_sequences - self._last_doc_end} sequences added "
                "after the last end_document()"
            )
        lengths = (
            np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int32)
        ).astype("<i4")
        offsets = np.zeros(lengths.shape[0], dtype="<i8")
        if lengths.shape[0] > 1:
            np.cumsum(lengths[:-1].astype(np.int64) * self.dtype.itemsize, out=offsets[1:])
        docs = np.concatenate(self._docs).astype("<i8")
        header = _HEADER.pack(MAGIC, VERSION, _CODE_OF[self.dtype], lengths.shape[0], docs.shape[0])
        return header + lengths.tobytes() + offsets.tobytes() + docs.tobytes()


class _MmapWriter(ShardWriter):
    """Several indexed datasets written together: every ``.bin`` is streamed, every ``.idx``
    is written on close, after all of them (so each ``.idx`` appears after its ``.bin``)."""

    def __init__(self) -> None:
        super().__init__()
        self._writers: dict[str, _Sequences] = {}
        self._idx_finals: dict[str, str] = {}

    def _add_dataset(self, key: str, prefix: str | Path, dtype: np.dtype | type) -> _Sequences:
        dt = np.dtype(dtype)
        if dt not in _CODE_OF:
            raise ValueError(f"dtype {dt} has no MMIDIDX code")
        bin_final, idx_final = f"{prefix}.bin", f"{prefix}.idx"
        tmp = self._create(bin_final, suffix=".bin")
        stream = self._hashing(open(tmp, "wb"), bin_final)  # noqa: SIM115 - closed by the base
        seqs = _Sequences(dt, stream, Path(bin_final))
        self._writers[key] = seqs
        self._idx_finals[key] = idx_final
        if not hasattr(self, "path"):
            self.path = Path(bin_final)
        return seqs

    def _finish(self) -> None:
        data = {key: w.index_bytes() for key, w in self._writers.items()}
        for key, blob in data.items():
            final = self._idx_finals[key]
            tmp = self._create(final, suffix=".idx")
            try:
                with open(tmp, "wb") as f:
                    f.write(blob)
            except OSError as e:
                raise named_os_error(e, final) from e


class IndexedDatasetWriter(_MmapWriter):
    """Streams sequences into ``<prefix>.bin`` and writes ``<prefix>.idx`` on close.

    Memory holds only the index (12 bytes per sequence + 8 per document).

    Args:
        prefix: Path without extension; its folder must exist.
        dtype: Element type (one of :data:`DTYPE_CODES`).
    """

    def __init__(self, prefix: str | Path, dtype: np.dtype | type) -> None:
        super().__init__()
        self.bin_path, self.idx_path = _paths(prefix)
        self._seqs = self._add_dataset("data", prefix, dtype)
        self.dtype = self._seqs.dtype

    def add_item(self, array: np.ndarray) -> None:
        """Appends one sequence (a 1-D array)."""
        self.add_items([array])

    def add_items(self, arrays: Sequence[np.ndarray]) -> None:
        """Appends sequences with one write (vectorised)."""
        self._check_open()
        self._seqs.add_items(arrays)

    def end_document(self) -> None:
        """Closes the current document (the sequences added since the last call)."""
        self._seqs.end_documents([self._seqs.num_sequences - self._seqs._last_doc_end])

    def end_documents(self, sizes: Sequence[int] | np.ndarray) -> None:
        """Closes several documents at once, of ``sizes`` sequences each, in order."""
        self._seqs.end_documents(sizes)

    @property
    def num_sequences(self) -> int:
        return self._seqs.num_sequences

    @property
    def num_documents(self) -> int:
        return self._seqs.num_documents


class IndexedDatasetReader:
    """Reads a ``.bin``/``.idx`` pair: ``len()``, ``[i]`` (a read-only memmap view), documents.

    The index is validated on open (magic, version, dtype, sizes, offsets within ``.bin``,
    document index), so a truncated or foreign pair fails here with one line.

    Args:
        prefix: Path without ``.bin``/``.idx``.

    Raises:
        FormatError: Missing, truncated or inconsistent files, or a fairseq-style index.
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        self.bin_path, self.idx_path = _paths(prefix)
        for p in (self.idx_path, self.bin_path):
            if not p.is_file():
                raise FormatError(f"{p}: no such file (an mmap dataset needs .bin and .idx)")
        idx = self.idx_path
        size = idx.stat().st_size
        # Memory-mapped like Megatron: a sentence-level index can be gigabytes.
        raw = np.memmap(idx, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        if raw.shape[0] < _HEADER.size:
            raise FormatError(f"{idx}: truncated index ({raw.shape[0]} bytes)")
        magic, version, code, n_seq, n_doc = _HEADER.unpack_from(bytes(raw[: _HEADER.size]))
        if magic != MAGIC:
            raise FormatError(f"{idx}: not a Megatron MMIDIDX index (bad magic)")
        if version != VERSION:
            raise FormatError(f"{idx}: MMIDIDX version {version}, only 1 is supported")
        if code not in DTYPE_CODES:
            raise FormatError(f"{idx}: unknown dtype code {code}")
        self.dtype = DTYPE_CODES[code]
        want = _HEADER.size + 12 * n_seq + 8 * n_doc
        if raw.shape[0] != want:
            raise FormatError(
                f"{idx}: {raw.shape[0]} bytes but the header implies {want}: truncated, or a "
                "fairseq index without a document index"
            )
        o = _HEADER.size
        self.lengths = raw[o : o + 4 * n_seq].view("<i4")
        o += 4 * n_seq
        self.offsets = raw[o : o + 8 * n_seq].view("<i8")
        o += 8 * n_seq
        self.document_index = raw[o : o + 8 * n_doc].view("<i8")
        bin_size = self.bin_path.stat().st_size
        item = self.dtype.itemsize
        if n_seq and ((self.lengths < 0).any() or (self.offsets < 0).any()):
            raise FormatError(f"{idx}: negative length or offset: corrupt index")
        if n_seq and int(self.offsets.max()) > bin_size:
            # Checked first: a huge offset plus a length wraps around in int64 and looks fine.
            raise FormatError(
                f"{self.bin_path}: {bin_size} bytes but the index points past its end "
                f"(offset {int(self.offsets.max())}): truncated .bin or corrupt index"
            )
        ends = self.offsets + self.lengths.astype(np.int64) * item
        if n_seq and int(ends.max()) > bin_size:
            raise FormatError(
                f"{self.bin_path}: {bin_size} bytes but the index needs {int(ends.max())}: "
                "truncated .bin"
            )
        d = self.document_index
        if n_doc < 1 or d[0] != 0 or d[-1] != n_seq or (n_doc > 1 and (np.diff(d) < 0).any()):
            raise FormatError(f"{idx}: invalid document index: corrupt index")
        self._bin: np.ndarray
        if bin_size == 0:
            self._bin = np.zeros(0, dtype=np.uint8)
        else:
            self._bin = np.memmap(self.bin_path, dtype=np.uint8, mode="r")

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sequence {i} out of range ({n} sequences)")
        start = int(self.offsets[i])
        return self._bin[start : start + int(self.lengths[i]) * self.dtype.itemsize].view(
            self.dtype
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    @property
    def num_documents(self) -> int:
        return int(self.document_index.shape[0]) - 1

    def document(self, d: int) -> list[np.ndarray]:
        """The sequences of document ``d``."""
        lo, hi = int(self.document_index[d]), int(self.document_index[d + 1])
        return [self[i] for i in range(lo, hi)]

    def read_range(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequences ``lo..hi`` as one flat array plus their lengths (contiguous layouts)."""
        lens = self.lengths[lo:hi].astype(np.int64)
        if hi <= lo:
            return np.zeros(0, dtype=self.dtype), lens
        start = int(self.offsets[lo])
        end = int(self.offsets[hi - 1]) + int(lens[-1]) * self.dtype.itemsize
        if end - start != int(lens.sum()) * self.dtype.itemsize:
            # Non-contiguous (written by another tool): fall back to item reads.
            return np.concatenate([self[i] for i in range(lo, hi)]), lens
        return self._bin[start:end].view(self.dtype), lens


# ------------------------------------------------------------------------------------------
# Sentence-level dataset (Megatron / ColossalAI BERT)


class MegatronSentenceWriter(_MmapWriter):
    """Writes ``<out_dir>/<name>_text_sentence.bin/.idx`` for Megatron-LM/ColossalAI BERT.

    Args:
        out_dir: Existing folder.
        name: File name prefix.
        vocab_size: Vocabulary size (uint16 ids when < 65500, else int32).

    Attributes:
        num_records: Sentences written.
        num_documents: Documents written.
        num_dropped_empty_sentences: Zero-length sentences skipped.
        num_dropped_empty_documents: Documents skipped because no sentence was left.
    """

    def __init__(self, out_dir: str | Path, name: str, vocab_size: int) -> None:
        super().__init__()
        self.prefix = Path(out_dir) / f"{name}_text_sentence"
        try:
            self._add_dataset(
                "text", fsio.join(str(out_dir), f"{name}_text_sentence"), token_dtype(vocab_size)
            )
        except BaseException as e:
            self.abort(e)
            raise
        self.num_records = 0
        self.num_documents = 0
        self.num_dropped_empty_sentences = 0
        self.num_dropped_empty_documents = 0

    def write(self, batch: Sequence[EncodedDocument]) -> None:
        """Appends documents, one sequence per non-empty sentence."""
        self._check_open()
        sentences: list[np.ndarray] = []
        sizes: list[int] = []
        for doc in batch:
            kept = [s for s in doc.sentences if len(s) > 0]
            self.num_dropped_empty_sentences += len(doc.sentences) - len(kept)
            if not kept:
                self.num_dropped_empty_documents += 1
                continue
            sentences.extend(kept)
            sizes.append(len(kept))
        w = self._writers["text"]
        w.add_items(sentences)
        w.end_documents(sizes)
        self.num_records += len(sentences)
        self.num_documents += len(sizes)


def read_megatron_sentences(out_dir: str | Path, name: str) -> Iterator[EncodedDocument]:
    """Yields the documents of ``<name>_text_sentence`` (ids ``<name>:<doc index>``, int32).

    Raises:
        FormatError: The pair is missing, truncated or corrupt.
    """
    r = IndexedDatasetReader(Path(out_dir) / f"{name}_text_sentence")

    def gen() -> Iterator[EncodedDocument]:
        for d in range(r.num_documents):
            yield EncodedDocument(
                id=f"{name}:{d}", sentences=[s.astype(np.int32) for s in r.document(d)]
            )

    return gen()


# ------------------------------------------------------------------------------------------
# Statically masked instances


class MmapInstanceWriter(_MmapWriter):
    """Writes statically masked instances as one indexed dataset per field (see module doc).

    Args:
        out_dir: Existing folder.
        name: File name prefix (``<name>_input_ids.bin`` ...).
        vocab_size: Vocabulary size (uint16 ids when < 65500, else int32).
        max_seq_length: S if known; positions are int32 when ``S >= 65500``, else uint16.

    Attributes:
        num_records: Instances written.
    """

    def __init__(
        self,
        out_dir: str | Path,
        name: str,
        vocab_size: int,
        *,
        max_seq_length: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        ids = token_dtype(vocab_size)
        pos = token_dtype(max_seq_length if max_seq_length is not None else 0)
        dtypes = {
            "input_ids": ids,
            "segment_ids": np.dtype(np.int8),
            "masked_lm_positions": pos,
            "masked_lm_ids": ids,
            "next_sentence_labels": np.dtype(np.uint8),
        }
        super().__init__()
        try:
            for field, dt in dtypes.items():
                self._add_dataset(field, fsio.join(str(out_dir), f"{name}_{field}"), dt)
        except BaseException as e:
            self.abort(e)
            raise
        self.num_records = 0

    def _write_instances(self, insts: Sequence[Instance]) -> None:
        for inst in insts:
            if not isinstance(inst, Instance):
                raise TypeError(f"expected Instance, got {type(inst).__name__}")
            if inst.masked_lm_positions.shape[0] != inst.masked_lm_ids.shape[0] or (
                inst.segment_ids.shape[0] != inst.input_ids.shape[0]
            ):
                raise ValueError("instance fields have inconsistent lengths")
        w = self._writers
        w["input_ids"].add_items([i.input_ids for i in insts])
        w["segment_ids"].add_items([i.segment_ids for i in insts])
        w["masked_lm_positions"].add_items([i.masked_lm_positions for i in insts])
        w["masked_lm_ids"].add_items([i.masked_lm_ids for i in insts])
        nsp = np.fromiter((i.next_sentence_label for i in insts), dtype=np.uint8, count=len(insts))
        w["next_sentence_labels"].add_items(list(nsp.reshape(-1, 1)))

    def write(self, batch: Sequence[Instance]) -> None:
        """Appends instances, one document each."""
        self._check_open()
        self._write_instances(batch)
        for field in INSTANCE_FIELDS:
            self._writers[field].end_documents(np.ones(len(batch), dtype=np.int64))
        self.num_records += len(batch)


class MmapPackWriter(MmapInstanceWriter):
    """Writes packs: the instance fields (one document per pack) plus ``<name>_pack_lengths``.

    Args:
        out_dir: Existing folder.
        name: File name prefix.
        vocab_size: Vocabulary size.
        max_seq_length: S if known (int32 pack lengths when >= 32768, else int16).

    Attributes:
        num_records: Packs written.
        num_instances: Instances written.
    """

    def __init__(
        self,
        out_dir: str | Path,
        name: str,
        vocab_size: int,
        *,
        max_seq_length: int | None = None,
    ) -> None:
        super().__init__(out_dir, name, vocab_size, max_seq_length=max_seq_length)
        big = max_seq_length is not None and max_seq_length >= 32768
        try:
            self._add_dataset(
                "pack_lengths",
                fsio.join(str(out_dir), f"{name}_pack_lengths"),
                np.int32 if big else np.int16,
            )
        except BaseException as e:
            self.abort(e)
            raise
        self.num_instances = 0

    def write(self, batch: Sequence[Pack | Instance]) -> None:  # type: ignore[override]
        """Appends packs (an :class:`Instance` is a pack of one)."""
        self._check_open()
        packs = [Pack([r]) if isinstance(r, Instance) else r for r in batch]
        insts = [i for p in packs for i in p.instances]
        sizes = np.array([len(p.instances) for p in packs], dtype=np.int64)
        if (sizes == 0).any():
            raise ValueError("empty pack")
        self._write_instances(insts)
        for field in INSTANCE_FIELDS:
            self._writers[field].end_documents(sizes)
        pl = self._writers["pack_lengths"]
        pl.add_items([np.array([len(i) for i in p.instances], dtype=np.int64) for p in packs])
        pl.end_documents(np.ones(len(packs), dtype=np.int64))
        self.num_records += len(packs)
        self.num_instances += len(insts)


class _MmapReaderBase:
    """Opens and cross-checks the per-field datasets of an instance/pack layout."""

    _it: Iterator[Any] | None = None
    _len: int

    def __init__(self, out_dir: str | Path, name: str, fields: Iterable[str]) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.r = {f: IndexedDatasetReader(self.out_dir / f"{name}_{f}") for f in fields}
        n = len(self.r["input_ids"])
        where = f"{self.out_dir / name}_*"
        for f in INSTANCE_FIELDS:
            if len(self.r[f]) != n:
                raise FormatError(f"{where}: field {f} has {len(self.r[f])} sequences, not {n}")
        if not np.array_equal(self.r["input_ids"].lengths, self.r["segment_ids"].lengths):
            raise FormatError(f"{where}: input_ids and segment_ids lengths differ")
        if not np.array_equal(
            self.r["masked_lm_positions"].lengths, self.r["masked_lm_ids"].lengths
        ):
            raise FormatError(f"{where}: masked_lm_positions and masked_lm_ids lengths differ")
        if n and (self.r["next_sentence_labels"].lengths != 1).any():
            raise FormatError(f"{where}: next_sentence_labels must hold one element per instance")
        self._where = where
        self._n_instances = n

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return self._generate()

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._generate()
        return next(self._it)

    def _generate(self) -> Iterator[Any]:
        raise NotImplementedError

    def _instances(self, lo: int, hi: int) -> list[Instance]:
        ids, lens = self.r["input_ids"].read_range(lo, hi)
        seg, _ = self.r["segment_ids"].read_range(lo, hi)
        pos, mlens = self.r["masked_lm_positions"].read_range(lo, hi)
        mlm, _ = self.r["masked_lm_ids"].read_range(lo, hi)
        nsp, _ = self.r["next_sentence_labels"].read_range(lo, hi)
        ids, seg = ids.astype(np.int32), seg.astype(np.int8)
        pos, mlm = pos.astype(np.int32), mlm.astype(np.int32)
        t = np.concatenate([[0], np.cumsum(lens)])
        m = np.concatenate([[0], np.cumsum(mlens)])
        return [
            Instance(
                input_ids=ids[t[j] : t[j + 1]],
                segment_ids=seg[t[j] : t[j + 1]],
                masked_lm_positions=pos[m[j] : m[j + 1]],
                masked_lm_ids=mlm[m[j] : m[j + 1]],
                next_sentence_label=int(nsp[j]),
            )
            for j in range(hi - lo)
        ]


class MmapInstanceReader(_MmapReaderBase):
    """Iterates the :class:`Instance` records of an instance layout (1024 at a time)."""

    def __init__(self, out_dir: str | Path, name: str) -> None:
        super().__init__(out_dir, name, INSTANCE_FIELDS)
        self._len = self._n_instances

    def _generate(self) -> Iterator[Instance]:
        for lo in range(0, self._len, 1024):
            yield from self._instances(lo, min(self._len, lo + 1024))


class MmapPackReader(_MmapReaderBase):
    """Iterates the :class:`Pack` records of a packed layout."""

    def __init__(self, out_dir: str | Path, name: str) -> None:
        super().__init__(out_dir, name, (*INSTANCE_FIELDS, "pack_lengths"))
        pl = self.r["pack_lengths"]
        self._len = len(pl)
        if int(pl.lengths.astype(np.int64).sum()) != self._n_instances:
            raise FormatError(
                f"{self._where}: pack_lengths covers {int(pl.lengths.sum())} instances, "
                f"not {self._n_instances}"
            )

    def _generate(self) -> Iterator[Pack]:
        pl = self.r["pack_lengths"]
        sizes = pl.lengths.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for lo in range(0, self._len, 1024):
            hi = min(self._len, lo + 1024)
            insts = self._instances(int(starts[lo]), int(starts[hi]))
            for j in range(lo, hi):
                a, b = int(starts[j] - starts[lo]), int(starts[j + 1] - starts[lo])
                pack = Pack(insts[a:b])
                if not np.array_equal(pl[j], [len(i) for i in pack.instances]):
                    raise FormatError(f"{self._where}: pack {j} lengths disagree with input_ids")
                yield pack


def read_mmap_instances(out_dir: str | Path, name: str) -> MmapInstanceReader:
    """Opens the instance layout ``<out_dir>/<name>_*``: iterate for :class:`Instance`.

    Raises:
        FormatError: A field is missing, truncated, corrupt or inconsistent with the others.
    """
    return MmapInstanceReader(out_dir, name)


def read_mmap_packs(out_dir: str | Path, name: str) -> MmapPackReader:
    """Opens the packed layout ``<out_dir>/<name>_*``: iterate for :class:`Pack`.

    Raises:
        FormatError: A field is missing, truncated, corrupt or inconsistent with the others.
    """
    return MmapPackReader(out_dir, name)
