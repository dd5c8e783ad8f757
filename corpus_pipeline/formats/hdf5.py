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

The writers are in :mod:`.hdf5_writer`, the checks of what libhdf5 trusts blindly in
:mod:`.hdf5_integrity`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from corpus_pipeline.formats.common import FormatError, RecordStream
from corpus_pipeline.formats.hdf5_integrity import H5_ERRORS, check_hdf5_structure, one_line
from corpus_pipeline.records import Instance, Pack

__all__ = [
    "UNPACKED_KEYS",
    "PACKED_KEYS",
    "READ_ROWS",
    "HDF5InstanceReader",
    "PackedHDF5Reader",
    "read_hdf5",
    "read_packed_hdf5",
    # Readers of our shards with h5py call it first (it lives in hdf5_integrity).
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
# Rows read per slice: bounded memory whatever the shard size.
READ_ROWS = 1024
# ----------------------------------------------------------------------------------------------
# Readers


class _ReaderBase(RecordStream):
    """Opens an HDF5 shard, checks its schema (``_check_schema``) and its structure.

    h5py's errors become one-line :class:`FormatError` naming the file.
    """

    path: Path

    def __init__(self, path: str | Path, rows_per_read: int = READ_ROWS) -> None:
        self.path = Path(path)
        self.rows_per_read = int(rows_per_read)
        with self._open() as f:
            self._check_schema(f)
        check_hdf5_structure(self.path)

    def _check_schema(self, f: h5py.File) -> None:
        raise NotImplementedError

    def _open(self) -> h5py.File:
        if not self.path.is_file():
            raise FormatError(f"{self.path}: no such HDF5 shard")
        try:
            return h5py.File(self.path, "r")
        except H5_ERRORS as e:
            raise FormatError(
                f"{self.path}: not a readable HDF5 file (truncated or corrupt? {one_line(e)}); "
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
        except H5_ERRORS as e:
            raise self._fail(f"corrupt HDF5 metadata ({one_line(e)}); regenerate it") from None
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
                except H5_ERRORS as e:
                    raise self._fail(
                        f"rows {start}..{end} cannot be read (truncated or corrupt: "
                        f"{one_line(e)}); regenerate the shard"
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
        except H5_ERRORS as e:
            raise self._fail(f"corrupt HDF5 metadata ({one_line(e)}); regenerate it") from None
        self._len = int(n or 0)

    def _generate(self) -> Iterator[Pack]:
        with self._open() as f:
            self._check_schema(f)
            for start in range(0, self._len, self.rows_per_read):
                end = min(self._len, start + self.rows_per_read)
                try:
                    cols = {k: f[k][start:end] for k in PACKED_KEYS}
                except H5_ERRORS as e:
                    raise self._fail(
                        f"rows {start}..{end} cannot be read (truncated or corrupt: "
                        f"{one_line(e)}); regenerate the shard"
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
