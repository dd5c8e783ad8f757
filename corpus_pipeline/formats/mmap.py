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

The sentence-level dataset of Megatron-LM / ColossalAI BERT (which mask at training time) is
built here: ``<name>_text_sentence.bin/.idx``, one sequence per sentence (WordPiece ids without
[CLS]/[SEP]), documents delimited by the document index, ids uint16 when the vocabulary has
< 65500 entries, else int32. Empty sentences and documents left empty are dropped (and counted).
The statically masked BERT instances and packs (one dataset per field) are in :mod:`.mmap_bert`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from corpus_pipeline import fsio
from corpus_pipeline.formats.base import HashingFile, ShardWriter
from corpus_pipeline.formats.common import FormatError, named_os_error
from corpus_pipeline.records import EncodedDocument

__all__ = [
    "MAGIC",
    "VERSION",
    "DTYPE_CODES",
    "token_dtype",
    "IndexedDatasetWriter",
    "MmapWriter",
    "IndexedDatasetReader",
    "MegatronSentenceWriter",
    "read_megatron_sentences",
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


class MmapWriter(ShardWriter):
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


class IndexedDatasetWriter(MmapWriter):
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


class MegatronSentenceWriter(MmapWriter):
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
