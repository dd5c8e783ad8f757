"""HDF5 shards for NVIDIA's BERT trainers: unpacked (DeepLearningExamples) and packed (MLPerf).

Unpacked layout (DLE ``run_pretraining.py`` ``pretraining_dataset``), N instances, S tokens, P
predictions; every dataset gzip-compressed and chunked along N:

==================== ====== ======
key                  dtype  shape
==================== ====== ======
input_ids            int32  (N, S)
input_mask           int8   (N, S)
segment_ids          int8   (N, S)
masked_lm_positions  int32  (N, P)   sorted, non-zero, zero padding after
masked_lm_ids        int32  (N, P)
next_sentence_labels int8   (N,)     1 = random next
==================== ====== ======

Packed layout (MLPerf NVIDIA ``pretraining_dataset(packed_samples=True)``): every key has shape
(N,) and an h5py variable-length dtype; one row per pack; no ``input_mask``:

==================== ============ ==================================================
key                  vlen dtype   content per pack
==================== ============ ==================================================
input_ids            int16        sequences concatenated, each ``[CLS] ... [SEP]``
segment_ids          int8         same layout
masked_lm_positions  int16        position + running offset of earlier sequences
masked_lm_ids        int16
packed_input_len     int16        length of each sequence
packed_masked_lm_len int16        number of predictions of each sequence
next_sentence_labels int8         one per sequence
==================== ============ ==================================================

Byte-identical output for identical input: dataset timestamps are off (``track_times=False``),
the file format is pinned to HDF5 1.8 objects (readable by every h5py a consumer may run), and
rows are appended in whole chunks at points that depend only on the running row count, never on
how the caller batched its ``write`` calls.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.base import ShardWriter
from corpus_pipeline.formats.common import (
    FormatError,
    check_instance_fits,
    lengths_of,
    named_os_error,
    pad_rows,
)
from corpus_pipeline.records import Instance, Pack

__all__ = [
    "UNPACKED_KEYS",
    "PACKED_KEYS",
    "HDF5ShardWriter",
    "PackedHDF5ShardWriter",
    "HDF5InstanceReader",
    "PackedHDF5Reader",
    "read_hdf5",
    "read_packed_hdf5",
    "check_hdf5_structure",
]

#: Unpacked keys and their on-disk dtypes (DLE).
UNPACKED_KEYS: dict[str, np.dtype] = {
    "input_ids": np.dtype(np.int32),
    "input_mask": np.dtype(np.int8),
    "segment_ids": np.dtype(np.int8),
    "masked_lm_positions": np.dtype(np.int32),
    "masked_lm_ids": np.dtype(np.int32),
    "next_sentence_labels": np.dtype(np.int8),
}

#: Packed keys and the base dtype of their vlen type (MLPerf).
PACKED_KEYS: dict[str, np.dtype] = {
    "input_ids": np.dtype(np.int16),
    "segment_ids": np.dtype(np.int8),
    "masked_lm_positions": np.dtype(np.int16),
    "masked_lm_ids": np.dtype(np.int16),
    "packed_input_len": np.dtype(np.int16),
    "packed_masked_lm_len": np.dtype(np.int16),
    "next_sentence_labels": np.dtype(np.int8),
}

# HDF5 1.8 object versions at most: files stay readable by the old h5py/HDF5 builds in
# NVIDIA's containers even though we write with HDF5 2.x.
_LIBVER = ("earliest", "v108")
# DLE uses gzip at h5py's default level 4. We add HDF5's byte-shuffle filter (built into every
# libhdf5, undone transparently on read) and use level 1: on real BERT instances (S=128) that is
# 186 B/instance against 177 B for DLE's plain level 4 and 201 B for plain level 1, at
# level 1's speed (about 1.5x faster than level 4).
DEFAULT_GZIP_LEVEL = 1
# Rows read per slice: bounded memory whatever the shard size.
READ_ROWS = 1024
# Target bytes per chunk of the widest dataset; a chunk is the unit of compression and of I/O.
_CHUNK_BYTES = 1 << 18
# Rows buffered before a flush, as a multiple of the chunk rows.
_FLUSH_CHUNKS = 4

_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def _chunk_rows(row_bytes: int) -> int:
    return int(min(4096, max(64, _CHUNK_BYTES // max(1, row_bytes))))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class _GuardedFile:
    """The temp file as libhdf5 sees it (h5py's ``fileobj`` driver): IO errors are kept here.

    libhdf5 does not survive a failed write: once a write or flush has failed (disk full), a
    later ``close`` of the file -- ours, or the library's own at interpreter exit -- crashes
    the process with a segmentation fault (h5py 3.16 / HDF5 2.0). So a failed write is never
    reported to the library: the error is recorded in :attr:`error`, the bytes are kept in
    memory so that the library reads back what it wrote, and the writer raises the error
    itself, then closes the file normally and deletes it. What is written after a failure is
    only the library's cache flush at close, so the memory used is bounded by its caches.

    Same calls as the default ``sec2`` driver (``pread``/``pwrite`` on one descriptor), so the
    file's bytes are identical.
    """

    def __init__(self, path: Path, final: Path) -> None:
        self.final = final
        self.error: OSError | None = None
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._pos = 0
        self._size = 0
        self._kept: list[tuple[int, bytes]] = []

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        pos = self._pos
        size = self._size - pos if size < 0 else size
        data = os.pread(self._fd, size, pos) if size > 0 else b""
        if self.error is not None and size > 0:
            buf = bytearray(data.ljust(size, b"\0"))
            for start, blob in self._kept:
                lo, hi = max(pos, start), min(pos + size, start + len(blob))
                if lo < hi:
                    buf[lo - pos : hi - pos] = blob[lo - start : hi - start]
            data = bytes(buf)
        self._pos = pos + len(data)
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        pos, view = self._pos, memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # pwrite may write less than asked
                    done += os.pwrite(self._fd, view[done:], pos + done)
            except OSError as e:
                self.error = e
        if self.error is not None:
            self._kept.append((pos, bytes(view)))
        self._pos = pos + len(view)
        self._size = max(self._size, self._pos)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as e:
                self.error = e
        self._size = size
        return size

    def flush(self) -> None:
        pass  # unbuffered; the writer base fsyncs the finished file

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def check(self) -> None:
        """Raise the first IO error met, naming the shard (errno kept: ENOSPC = disk full)."""
        if self.error is not None:
            raise named_os_error(self.error, self.final)


class _H5Writer(ShardWriter):
    """A shard writer whose one file is an ``h5py.File`` on the temp path (via
    :class:`_GuardedFile`); subclasses buffer rows and append them in :meth:`_flush`."""

    raw: _GuardedFile | None = None
    file: h5py.File | None = None

    def _open_h5(self, path: str | Path) -> h5py.File:
        tmp = self._create(path, suffix=".hdf5")
        self.raw = _GuardedFile(tmp, self.path)
        self.file = h5py.File(self.raw, "w", libver=_LIBVER, track_order=False)
        return self.file

    def _flush(self, final: bool) -> None:
        raise NotImplementedError

    def _check_io(self) -> None:
        """Raise the IO error of a failed write (disk full), if any."""
        if self.raw is not None:
            self.raw.check()

    def _finish(self) -> None:
        self._flush(final=True)
        assert self.raw is not None and self.file is not None
        self.raw.check()
        self.file.close()
        self.raw.check()
        self.raw.close()

    def _release(self) -> None:
        if self.file is not None:
            with contextlib.suppress(Exception):
                self.file.close()
        if self.raw is not None:
            self.raw.close()


class HDF5ShardWriter(_H5Writer):
    """Writes unpacked instances in NVIDIA DLE's HDF5 layout.

    Memory is bounded by a few chunks of rows, whatever the shard size.

    Example:
        >>> with HDF5ShardWriter(path, 128, 20) as w:  # doctest: +SKIP
        ...     w.write(instances)
        >>> w.num_records, w.sha256  # doctest: +SKIP

    Args:
        path: Final file path (``..._training_00000.hdf5``); its folder must exist.
        max_seq_length: S, the padded row width.
        max_predictions: P, the padded width of the masked-LM arrays.
        gzip_level: 0..9 (DLE uses gzip; the reader does not care about the level).
    """

    def __init__(
        self,
        path: str | Path,
        max_seq_length: int,
        max_predictions: int,
        *,
        gzip_level: int = DEFAULT_GZIP_LEVEL,
    ) -> None:
        if max_seq_length < 1 or max_predictions < 1:
            raise ValueError("max_seq_length and max_predictions must be >= 1")
        self.path = Path(path)
        self.max_seq_length = int(max_seq_length)
        self.max_predictions = int(max_predictions)
        super().__init__()
        self.num_records = 0
        self._chunk = _chunk_rows(self.max_seq_length * 4)
        self._buffer: list[Instance] = []
        self._written = 0
        try:
            f = self._open_h5(path)
            s, p, c = self.max_seq_length, self.max_predictions, self._chunk
            shapes = {
                "input_ids": s,
                "input_mask": s,
                "segment_ids": s,
                "masked_lm_positions": p,
                "masked_lm_ids": p,
                "next_sentence_labels": None,
            }
            self._ds: dict[str, h5py.Dataset] = {}
            for key, width in shapes.items():
                shape: tuple[int, ...] = (0,) if width is None else (0, width)
                maxshape: tuple[int | None, ...] = (None,) if width is None else (None, width)
                chunks: tuple[int, ...] = (c * 8,) if width is None else (c, width)
                self._ds[key] = f.create_dataset(
                    key,
                    shape=shape,
                    maxshape=maxshape,
                    chunks=chunks,
                    dtype=UNPACKED_KEYS[key],
                    compression="gzip",
                    compression_opts=int(gzip_level),
                    shuffle=True,
                    fletcher32=True,  # corruption is reported, not decoded into garbage
                    track_times=False,
                )
        except BaseException as e:
            self.abort(e)
            raise

    def write(self, batch: Sequence[Instance]) -> None:
        """Appends instances (in order).

        Args:
            batch: Unpadded instances; each must fit S and P.

        Raises:
            TypeError: A record is not an :class:`Instance`.
            ValueError: An instance is longer than S or has more than P predictions.
        """
        self._check_open()
        for inst in batch:
            if not isinstance(inst, Instance):
                raise TypeError(
                    f"{self.path}: HDF5ShardWriter writes Instance records, got "
                    f"{type(inst).__name__} (use PackedHDF5ShardWriter for packs)"
                )
            check_instance_fits(
                len(inst),
                int(inst.masked_lm_positions.shape[0]),
                self.max_seq_length,
                self.max_predictions,
                str(self.path),
            )
        self._buffer.extend(batch)
        self.num_records += len(batch)
        if len(self._buffer) >= self._chunk * _FLUSH_CHUNKS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        # Only whole chunks until the end: flush points depend on the row count alone.
        n = len(self._buffer) if final else (len(self._buffer) // self._chunk) * self._chunk
        if n == 0:
            return
        rows, self._buffer = self._buffer[:n], self._buffer[n:]
        s, p = self.max_seq_length, self.max_predictions
        ids = [r.input_ids for r in rows]
        lens = lengths_of(ids)
        mask = (np.arange(s)[None, :] < lens[:, None]).astype(np.int8)
        arrays = {
            "input_ids": pad_rows(ids, s, np.int32),
            "input_mask": mask,
            "segment_ids": pad_rows([r.segment_ids for r in rows], s, np.int8),
            "masked_lm_positions": pad_rows([r.masked_lm_positions for r in rows], p, np.int32),
            "masked_lm_ids": pad_rows([r.masked_lm_ids for r in rows], p, np.int32),
            "next_sentence_labels": np.fromiter(
                (r.next_sentence_label for r in rows), dtype=np.int8, count=n
            ),
        }
        start, end = self._written, self._written + n
        try:
            for key, arr in arrays.items():
                ds = self._ds[key]
                ds.resize(end, axis=0)
                ds[start:end] = arr
        except OSError as e:
            raise named_os_error(e, self.path) from e
        self._written = end
        self._check_io()


class PackedHDF5ShardWriter(_H5Writer):
    """Writes packs in NVIDIA MLPerf's variable-length HDF5 layout.

    Args:
        path: Final file path; its folder must exist.
        max_seq_length: S, the most tokens in one pack.
        max_predictions: P, the most predictions of one sequence in a pack.
        max_per_pack: K, the most sequences in one pack.
        vocab_size: The vocabulary size; int16 ids need ``vocab_size < 32768``.

    Raises:
        UserError: ``vocab_size >= 32768`` (the MLPerf layout stores int16 ids).
    """

    def __init__(
        self,
        path: str | Path,
        max_seq_length: int,
        max_predictions: int,
        max_per_pack: int,
        vocab_size: int | None = None,
    ) -> None:
        self.path = Path(path)
        if vocab_size is not None and vocab_size >= 32768:
            raise UserError(
                f"{self.path}: the packed HDF5 format stores int16 token ids, so the vocabulary "
                f"must have < 32768 entries (got {vocab_size}): use the unpacked HDF5, "
                "TFRecord or mmap format for this vocabulary"
            )
        if max_seq_length >= 32768:
            raise UserError(
                f"{self.path}: the packed HDF5 format stores int16 positions: "
                f"--max-seq-length {max_seq_length} must be < 32768"
            )
        self.max_seq_length = int(max_seq_length)
        self.max_predictions = int(max_predictions)
        self.max_per_pack = int(max_per_pack)
        self.vocab_size = vocab_size
        super().__init__()
        self.num_records = 0
        self.num_instances = 0
        self._chunk = 1024
        self._buffer: list[Pack] = []
        self._written = 0
        try:
            f = self._open_h5(path)
            self._ds: dict[str, h5py.Dataset] = {}
            for key, base in PACKED_KEYS.items():
                # No compression: it would only compress the heap references (MLPerf writes
                # these uncompressed too).
                self._ds[key] = f.create_dataset(
                    key,
                    shape=(0,),
                    maxshape=(None,),
                    chunks=(self._chunk,),
                    dtype=h5py.vlen_dtype(base),
                    track_times=False,
                )
        except BaseException as e:
            self.abort(e)
            raise

    def write(self, batch: Sequence[Pack | Instance]) -> None:
        """Appends packs (an :class:`Instance` is written as a pack of one).

        Raises:
            UserError: A token id does not fit int16 (vocabulary too large).
            ValueError: A pack breaks S, P or K.
        """
        self._check_open()
        packs: list[Pack] = []
        for rec in batch:
            pack = Pack([rec]) if isinstance(rec, Instance) else rec
            if not isinstance(pack, Pack):
                raise TypeError(f"{self.path}: expected Pack or Instance, got {type(rec).__name__}")
            if not 1 <= len(pack.instances) <= self.max_per_pack:
                raise ValueError(
                    f"{self.path}: pack of {len(pack.instances)} sequences; "
                    f"max_per_pack is {self.max_per_pack}"
                )
            if pack.length > self.max_seq_length:
                raise ValueError(
                    f"{self.path}: pack of {pack.length} tokens > max_seq_length "
                    f"{self.max_seq_length}"
                )
            for inst in pack.instances:
                check_instance_fits(
                    len(inst),
                    int(inst.masked_lm_positions.shape[0]),
                    self.max_seq_length,
                    self.max_predictions,
                    str(self.path),
                )
            packs.append(pack)
        self._buffer.extend(packs)
        self.num_records += len(packs)
        self.num_instances += sum(len(p.instances) for p in packs)
        if len(self._buffer) >= self._chunk * _FLUSH_CHUNKS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        n = len(self._buffer) if final else (len(self._buffer) // self._chunk) * self._chunk
        if n == 0:
            return
        packs, self._buffer = self._buffer[:n], self._buffer[n:]
        # Object arrays tagged with the vlen type, written with write_direct: h5py's __setitem__
        # turns equal-length rows into a 2-D array and then fails to broadcast it.
        cols: dict[str, np.ndarray] = {
            k: np.empty(n, dtype=h5py.vlen_dtype(b)) for k, b in PACKED_KEYS.items()
        }
        for j, pack in enumerate(packs):
            insts = pack.instances
            lens = np.array([len(i) for i in insts], dtype=np.int64)
            offsets = np.cumsum(lens) - lens
            ids = np.concatenate([i.input_ids for i in insts])
            mlm_ids = np.concatenate([i.masked_lm_ids for i in insts])
            if ids.size and (ids.max() >= 32768 or ids.min() < 0):
                raise UserError(
                    f"{self.path}: token id {int(ids.max())} does not fit the int16 packed HDF5 "
                    "format: use a vocabulary of < 32768 entries or another format"
                )
            cols["input_ids"][j] = ids.astype(np.int16)
            cols["segment_ids"][j] = np.concatenate([i.segment_ids for i in insts]).astype(np.int8)
            cols["masked_lm_positions"][j] = np.concatenate(
                [
                    i.masked_lm_positions.astype(np.int64) + o
                    for i, o in zip(insts, offsets, strict=True)
                ]
            ).astype(np.int16)
            cols["masked_lm_ids"][j] = mlm_ids.astype(np.int16)
            cols["packed_input_len"][j] = lens.astype(np.int16)
            cols["packed_masked_lm_len"][j] = np.array(
                [i.masked_lm_positions.shape[0] for i in insts], dtype=np.int16
            )
            cols["next_sentence_labels"][j] = np.array(
                [i.next_sentence_label for i in insts], dtype=np.int8
            )
        start, end = self._written, self._written + n
        try:
            for key, arr in cols.items():
                ds = self._ds[key]
                ds.resize((end,))
                ds.write_direct(arr, np.s_[0:n], np.s_[start:end])
        except OSError as e:
            raise named_os_error(e, self.path) from e
        self._written = end
        self._check_io()


# ----------------------------------------------------------------------------------------------
# Readers


class _ReaderBase:
    """Iterable + Sized + Iterator plumbing: ``for x in r``, ``len(r)`` and ``next(r)``."""

    path: Path
    _len: int
    _it: Iterator[Any] | None = None

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

    def _open(self) -> h5py.File:
        if not self.path.is_file():
            raise FormatError(f"{self.path}: no such HDF5 shard")
        try:
            return h5py.File(self.path, "r")
        except _H5_ERRORS as e:
            raise FormatError(
                f"{self.path}: not a readable HDF5 file (truncated or corrupt? {_one_line(e)}); "
                "regenerate the shard"
            ) from None

    def _fail(self, what: str) -> FormatError:
        return FormatError(f"{self.path}: {what}")


def _int_dataset(f: h5py.File, key: str, path: Path, ndim: int) -> h5py.Dataset:
    if key not in f:
        raise FormatError(f"{path}: missing dataset {key!r}: not a BERT pretraining HDF5 shard")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != ndim or ds.dtype.kind not in "iu":
        raise FormatError(
            f"{path}: dataset {key!r} has dtype {getattr(ds, 'dtype', '?')} and "
            f"{getattr(ds, 'ndim', '?')} dims, expected a {ndim}-D integer array"
        )
    return ds


class HDF5InstanceReader(_ReaderBase):
    """Streams :class:`Instance` records from an unpacked (DLE) HDF5 shard, 1024 rows at a time.

    The header is checked on construction; ``len()`` is the row count.

    Raises:
        FormatError: Missing file, truncated/corrupt file, packed or foreign schema.
    """

    def __init__(self, path: str | Path, rows_per_read: int = READ_ROWS) -> None:
        self.path = Path(path)
        self.rows_per_read = int(rows_per_read)
        with self._open() as f:
            self._check_schema(f)
        check_hdf5_structure(self.path)

    def _check_schema(self, f: h5py.File) -> None:
        try:
            if "packed_input_len" in f:
                raise self._fail("is a packed HDF5 shard: read it with read_packed_hdf5")
            ds = {
                k: _int_dataset(f, k, self.path, 1 if k == "next_sentence_labels" else 2)
                for k in UNPACKED_KEYS
            }
            n = ds["input_ids"].shape[0]
            s = ds["input_ids"].shape[1]
            p = ds["masked_lm_positions"].shape[1]
            for k, d in ds.items():
                want = {"next_sentence_labels": (n,)}.get(
                    k, (n, p) if k.startswith("masked_lm") else (n, s)
                )
                if d.shape != want:
                    raise self._fail(f"dataset {k!r} has shape {d.shape}, expected {want}")
        except FormatError:
            raise
        except _H5_ERRORS as e:
            raise self._fail(f"corrupt HDF5 metadata ({_one_line(e)}); regenerate it") from None
        self._len, self.max_seq_length, self.max_predictions = int(n), int(s), int(p)

    def _generate(self) -> Iterator[Instance]:
        with self._open() as f:
            self._check_schema(f)
            for start in range(0, self._len, self.rows_per_read):
                end = min(self._len, start + self.rows_per_read)
                try:
                    ids = f["input_ids"][start:end]
                    mask = f["input_mask"][start:end]
                    seg = f["segment_ids"][start:end]
                    pos = f["masked_lm_positions"][start:end]
                    mlm = f["masked_lm_ids"][start:end]
                    nsp = f["next_sentence_labels"][start:end]
                except _H5_ERRORS as e:
                    raise self._fail(
                        f"rows {start}..{end} cannot be read (truncated or corrupt: "
                        f"{_one_line(e)}); regenerate the shard"
                    ) from None
                lens = np.count_nonzero(mask, axis=1)
                mlens = np.count_nonzero(pos, axis=1)
                for r in range(end - start):
                    n_tok, n_pred = int(lens[r]), int(mlens[r])
                    yield Instance(
                        input_ids=ids[r, :n_tok].astype(np.int32),
                        segment_ids=seg[r, :n_tok].astype(np.int8),
                        masked_lm_positions=pos[r, :n_pred].astype(np.int32),
                        masked_lm_ids=mlm[r, :n_pred].astype(np.int32),
                        next_sentence_label=int(nsp[r]),
                    )


class PackedHDF5Reader(_ReaderBase):
    """Streams :class:`Pack` records from a packed (MLPerf) HDF5 shard, 1024 rows at a time.

    Masked positions are turned back into per-sequence positions (the running offset removed).

    Raises:
        FormatError: Missing file, truncated/corrupt file, unpacked or foreign schema, or lengths
            that do not add up.
    """

    def __init__(self, path: str | Path, rows_per_read: int = READ_ROWS) -> None:
        self.path = Path(path)
        self.rows_per_read = int(rows_per_read)
        with self._open() as f:
            self._check_schema(f)
        check_hdf5_structure(self.path)

    def _check_schema(self, f: h5py.File) -> None:
        try:
            if "input_mask" in f:
                raise self._fail("is an unpacked HDF5 shard: read it with read_hdf5")
            n = None
            for key in PACKED_KEYS:
                if key not in f:
                    raise self._fail(f"missing dataset {key!r}: not a packed BERT HDF5 shard")
                ds = f[key]
                base = h5py.check_vlen_dtype(ds.dtype) if isinstance(ds, h5py.Dataset) else None
                if base is None or np.dtype(base).kind not in "iu" or ds.ndim != 1:
                    raise self._fail(f"dataset {key!r} is not a 1-D variable-length integer array")
                if n is None:
                    n = ds.shape[0]
                elif ds.shape[0] != n:
                    raise self._fail(f"dataset {key!r} has {ds.shape[0]} rows, expected {n}")
        except FormatError:
            raise
        except _H5_ERRORS as e:
            raise self._fail(f"corrupt HDF5 metadata ({_one_line(e)}); regenerate it") from None
        self._len = int(n or 0)

    def _generate(self) -> Iterator[Pack]:
        with self._open() as f:
            self._check_schema(f)
            for start in range(0, self._len, self.rows_per_read):
                end = min(self._len, start + self.rows_per_read)
                try:
                    cols = {k: f[k][start:end] for k in PACKED_KEYS}
                except _H5_ERRORS as e:
                    raise self._fail(
                        f"rows {start}..{end} cannot be read (truncated or corrupt: "
                        f"{_one_line(e)}); regenerate the shard"
                    ) from None
                for r in range(end - start):
                    yield self._unpack(start + r, {k: v[r] for k, v in cols.items()})

    def _unpack(self, row: int, c: dict[str, np.ndarray]) -> Pack:
        lens = c["packed_input_len"].astype(np.int64)
        mlens = c["packed_masked_lm_len"].astype(np.int64)
        k = lens.shape[0]
        if k == 0:
            raise self._fail(f"pack {row} holds no sequence: corrupt packed shard")
        if (
            mlens.shape[0] != k
            or c["next_sentence_labels"].shape[0] != k
            or int(lens.sum()) != c["input_ids"].shape[0]
            or c["segment_ids"].shape[0] != c["input_ids"].shape[0]
            or int(mlens.sum()) != c["masked_lm_positions"].shape[0]
            or c["masked_lm_ids"].shape[0] != c["masked_lm_positions"].shape[0]
            or (lens < 0).any()
            or (mlens < 0).any()
        ):
            raise self._fail(f"pack {row}: lengths do not add up: corrupt packed shard")
        tok_end = np.cumsum(lens)
        mlm_end = np.cumsum(mlens)
        instances = []
        for j in range(k):
            t0, t1 = int(tok_end[j] - lens[j]), int(tok_end[j])
            m0, m1 = int(mlm_end[j] - mlens[j]), int(mlm_end[j])
            instances.append(
                Instance(
                    input_ids=c["input_ids"][t0:t1].astype(np.int32),
                    segment_ids=c["segment_ids"][t0:t1].astype(np.int8),
                    masked_lm_positions=(c["masked_lm_positions"][m0:m1].astype(np.int32) - t0),
                    masked_lm_ids=c["masked_lm_ids"][m0:m1].astype(np.int32),
                    next_sentence_label=int(c["next_sentence_labels"][j]),
                )
            )
        return Pack(instances)


# A variable-length element as stored in a dataset: element count, then the global heap
# object holding the elements (collection address, object index). HDF5 file format spec,
# "Disk Format: Level 1E - Global Heap" and the vlen datatype encoding.
_VLEN_REF = np.dtype([("len", "<u4"), ("addr", "<u8"), ("idx", "<u4")])
_GCOL_HEADER = struct.Struct("<4sB3xQ")  # "GCOL", version 1, reserved, collection size
_GCOL_OBJECT = struct.Struct("<HH4xQ")  # object index (0 = free space), references, size


def _vlen_references(f: h5py.File, path: Path) -> dict[int, list[tuple[np.ndarray, int]]]:
    """Collection address -> [(references into it, element size)] over the packed datasets.

    Read from the raw chunks, so libhdf5 never follows a reference here.
    """
    heaps: dict[int, list[tuple[np.ndarray, int]]] = {}
    try:
        for key, base in PACKED_KEYS.items():
            ds = f.get(key)
            if not isinstance(ds, h5py.Dataset) or ds.chunks is None:
                continue  # not this writer's layout: the schema check reports it
            if h5py.check_vlen_dtype(ds.dtype) is None:
                continue  # fixed-width (unpacked) data: no heap
            dsid = f[key].id
            for i in range(dsid.get_num_chunks()):
                info = dsid.get_chunk_info(i)
                if info.filter_mask or info.size % _VLEN_REF.itemsize:
                    continue  # filtered (a foreign writer's compression): cannot be checked here
                _, raw = dsid.read_direct_chunk(info.chunk_offset)
                refs = np.frombuffer(raw, dtype=_VLEN_REF)
                refs = refs[refs["len"] > 0]
                for addr in np.unique(refs["addr"]).tolist():
                    heaps.setdefault(addr, []).append((refs[refs["addr"] == addr], base.itemsize))
    except _H5_ERRORS as e:
        raise FormatError(
            f"{path}: corrupt HDF5 chunk index ({_one_line(e)}); regenerate the shard"
        ) from None
    return heaps


def _check_global_heaps(path: Path, heaps: dict[int, list[tuple[np.ndarray, int]]]) -> None:
    """Walk every global heap collection the packed rows point to, as libhdf5 will read it.

    A damaged collection whose free-space object has size 0 (a zeroed block, say) makes
    libhdf5 2.0 loop forever when it loads it, so a damaged shard would hang its reader
    instead of failing; a reference to a missing object or one of the wrong size would give
    garbage rows. Both are found here first and raised as :class:`FormatError`.
    """

    def corrupt(addr: int, what: str) -> FormatError:
        return FormatError(
            f"{path}: global heap at byte {addr} {what}: corrupt packed shard; regenerate it"
        )

    size = path.stat().st_size
    with open(path, "rb") as raw:
        for addr in sorted(heaps):
            if addr + _GCOL_HEADER.size > size:
                raise corrupt(addr, "is past the end of the file")
            raw.seek(addr)
            head = raw.read(_GCOL_HEADER.size)
            sig, version, csize = _GCOL_HEADER.unpack(head)
            if sig != b"GCOL" or version != 1 or csize < 4096 or addr + csize > size:
                raise corrupt(addr, "has a bad header")
            buf = head + raw.read(csize - _GCOL_HEADER.size)
            sizes = np.full(1 << 16, -1, dtype=np.int64)  # object index (u16) -> size
            p = _GCOL_HEADER.size
            while p + _GCOL_OBJECT.size <= csize:
                idx, _, nbytes = _GCOL_OBJECT.unpack_from(buf, p)
                need = _GCOL_OBJECT.size + (nbytes + 7) // 8 * 8 if idx else nbytes
                if need == 0 or p + need > csize:
                    raise corrupt(addr, f"has an object of impossible size at offset {p}")
                if idx:
                    sizes[idx] = nbytes
                p += need
            for refs, itemsize in heaps[addr]:
                idx = refs["idx"].astype(np.int64)
                have = sizes[np.minimum(idx, sizes.shape[0] - 1)]
                want = refs["len"].astype(np.int64) * itemsize
                if (idx >= sizes.shape[0]).any() or (have != want).any():
                    raise corrupt(addr, "lacks an object a row points to, or its size is wrong")


def _check_chunk_index(f: h5py.File, path: Path) -> None:
    """Every chunk the index lists must lie inside the file and hold at least a checksum.

    libhdf5 trusts the chunk B-tree: a damaged entry (address 0, size 0) makes its fletcher32
    filter read before its buffer and the process dies with a segmentation fault.
    """
    size = path.stat().st_size
    try:
        for key in f:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.chunks is None:
                continue
            dsid = ds.id
            least = 4 if ds.fletcher32 else 1  # the checksum alone is 4 bytes
            for i in range(dsid.get_num_chunks()):
                info = dsid.get_chunk_info(i)
                at, n = info.byte_offset, info.size
                if at is None or at < 1 or n < least or at + n > size:
                    raise FormatError(
                        f"{path}: chunk {i} of dataset {key!r} lies outside the file "
                        f"(byte {at}, {n} bytes): corrupt shard; regenerate it"
                    )
    except FormatError:
        raise
    except _H5_ERRORS as e:
        raise FormatError(
            f"{path}: corrupt HDF5 chunk index ({_one_line(e)}); regenerate the shard"
        ) from None


def check_hdf5_structure(path: str | Path) -> None:
    """Check what libhdf5 trusts blindly, before it reads the rows of a shard.

    On damaged metadata libhdf5 does not always raise: a chunk index entry of size 0 crashes
    the process, a damaged global heap (the rows of a packed shard) makes it loop forever. So
    both readers call this first, and so should any code reading our shards with h5py (each
    chunk's address and size; the heap objects packed rows point to).

    Raises:
        FormatError: The file is not readable HDF5, or its chunk index or heaps are damaged.
    """
    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except _H5_ERRORS as e:
        raise FormatError(f"{p}: not a readable HDF5 file ({_one_line(e)})") from None
    with f:
        _check_chunk_index(f, p)
        heaps = _vlen_references(f, p)
    _check_global_heaps(p, heaps)


def read_hdf5(path: str | Path) -> HDF5InstanceReader:
    """Opens an unpacked (DLE) HDF5 shard: iterate it for :class:`Instance`, ``len()`` for N.

    Raises:
        FormatError: The file is missing, truncated, corrupt or not in the DLE schema.
    """
    return HDF5InstanceReader(path)


def read_packed_hdf5(path: str | Path) -> PackedHDF5Reader:
    """Opens a packed (MLPerf) HDF5 shard: iterate it for :class:`Pack`, ``len()`` for N.

    Raises:
        FormatError: The file is missing, truncated, corrupt or not in the MLPerf schema.
    """
    return PackedHDF5Reader(path)
