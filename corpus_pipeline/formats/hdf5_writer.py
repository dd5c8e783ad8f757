"""Writers of the HDF5 shards of :mod:`.hdf5` (the layouts are documented there).

Byte-identical output for identical input: dataset timestamps are off (``track_times=False``),
the file format is pinned to HDF5 1.8 objects (readable by every h5py a consumer may run), and
rows are appended in whole chunks at points that depend only on the running row count, never on
how the caller batched its ``write`` calls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.base import ShardWriter
from corpus_pipeline.formats.common import (
    check_instance_fits,
    lengths_of,
    named_os_error,
    pad_rows,
)
from corpus_pipeline.formats.hdf5 import PACKED_KEYS, UNPACKED_KEYS
from corpus_pipeline.records import Instance, Pack

__all__ = ["DEFAULT_GZIP_LEVEL", "HDF5ShardWriter", "PackedHDF5ShardWriter"]

# HDF5 1.8 object versions at most: files stay readable by the old h5py/HDF5 builds in
# NVIDIA's containers even though we write with HDF5 2.x.
_LIBVER = ("earliest", "v108")
# DLE uses gzip at h5py's default level 4. We add HDF5's byte-shuffle filter (built into every
# libhdf5, undone transparently on read) and use level 1: on real BERT instances (S=128) that is
# 186 B/instance against 177 B for DLE's plain level 4 and 201 B for plain level 1, at
# level 1's speed (about 1.5x faster than level 4).
DEFAULT_GZIP_LEVEL = 1  # Target bytes per chunk of the widest dataset; a chunk is the unit of compression and of I/O.
_CHUNK_BYTES = 1 << 18
# Rows buffered before a flush, as a multiple of the chunk rows.
_FLUSH_CHUNKS = 4


def _chunk_rows(row_bytes: int) -> int:
    return int(min(4096, max(64, _CHUNK_BYTES // max(1, row_bytes))))


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
    max_seq_length: int
    max_predictions: int
    _chunk: int  # rows per HDF5 chunk
    _buffer: list[Any]  # rows not written yet

    def _open_h5(self, path: str | Path) -> h5py.File:
        tmp = self._create(path, suffix=".hdf5")
        self.raw = _GuardedFile(tmp, self.path)
        self.file = h5py.File(self.raw, "w", libver=_LIBVER, track_order=False)
        return self.file

    def _flush(self, final: bool) -> None:
        raise NotImplementedError

    def _check_fits(self, inst: Instance) -> None:
        """Refuse (``ValueError``) an instance longer than S or with more than P predictions."""
        check_instance_fits(
            len(inst),
            int(inst.masked_lm_positions.shape[0]),
            self.max_seq_length,
            self.max_predictions,
            str(self.path),
        )

    def _buffer_rows(self, rows: Sequence[Any]) -> None:
        """Keep ``rows``; write whole chunks once ``_FLUSH_CHUNKS`` chunks are waiting."""
        self._buffer.extend(rows)
        if len(self._buffer) >= self._chunk * _FLUSH_CHUNKS:
            self._flush(final=False)

    def _take_rows(self, final: bool) -> list[Any]:
        """The rows to write now, off the buffer: whole chunks, or all of them when ``final``.

        Only whole chunks until the end: flush points depend on the row count alone.
        """
        n = len(self._buffer) if final else (len(self._buffer) // self._chunk) * self._chunk
        rows, self._buffer = self._buffer[:n], self._buffer[n:]
        return rows

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
            self._check_fits(inst)
        self.num_records += len(batch)
        self._buffer_rows(batch)

    def _flush(self, final: bool) -> None:
        rows = self._take_rows(final)
        if not rows:
            return
        n = len(rows)
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
                self._check_fits(inst)
            packs.append(pack)
        self.num_records += len(packs)
        self.num_instances += sum(len(p.instances) for p in packs)
        self._buffer_rows(packs)

    def _flush(self, final: bool) -> None:
        packs = self._take_rows(final)
        if not packs:
            return
        n = len(packs)
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
