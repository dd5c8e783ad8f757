"""Verify a dataset folder against its manifest: every file, every record, every value.

What is checked, per shard and per format (``formats/registry.py`` names the files):

* **Files**: every file the layout needs is listed in the manifest and present; its SHA-256
  equals the manifest's (skipped by ``quick``); no stray temp files (``.<name>.tmp-*`` left by a
  killed writer) and no files the manifest does not list in the format folders (DLE's loader
  would pick up any name containing ``training``).
* **HDF5**: the DLE keys, dtypes and shapes ``(N, S)`` / ``(N, P)`` / ``(N,)``, or, packed, the
  MLPerf keys with their variable-length dtypes; every chunk is read (HDF5's Fletcher-32
  checksums catch flipped bytes in the data even with ``quick``).
* **TFRecord**: the masked CRC-32C of every record's length and data, the feature names, types
  and lengths of every ``tf.train.Example`` (Google or Graphcore schema), and the ``.index``
  line of every record (offset and size).
* **mmap**: every ``.idx`` header (magic, version, dtype code), offsets against the ``.bin``
  size (which must match exactly), the document index, and the agreement of the per-field
  datasets (counts, lengths, pack grouping).
* **Counts**: records and instances per shard against the manifest.
* **Values**: token ids and masked ids ``< vocab size``, masked positions inside their
  sequence, ``> 0`` (never [CLS]) and sorted, segment ids and NSP labels in ``{0, 1}``, padding
  consistent with ``input_mask`` (zeros after the real tokens); packed: lengths sum to at most
  S, at most K sequences, at most ``P + K - 1`` masked positions per pack and P per sequence,
  Graphcore's layout (bodies from 0, the [CLS] of sequence k at ``S - k``, position ids).
* The optional Megatron sentence-level dataset (``manifest["megatron"]``).
* **The manifest itself**: its signature (``formats/manifest.py``) matches its content (an
  edit that drops a format or changes the seed would otherwise go unnoticed; an unsigned,
  older manifest is a warning), and no format folder on disk is missing from ``formats``.
* **Documents folders** (``extract``): each shard's SHA-256 and document count, missing and
  unlisted shard files.

Every file is streamed (HDF5 in blocks of rows, TFRecord record by record, mmap through memory
maps in blocks of sequences): memory does not grow with the shard size.

This is not a Beam pipeline on purpose: verification is I/O-bound and per file, and the
result must be read on the launcher anyway. Shards are verified in parallel by a process pool
(``workers``); the problems come back in a fixed order (shard, then format), whatever the
scheduling.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.common import FormatError, sha256_file
from corpus_pipeline.formats.documents import SUFFIX as DOC_SUFFIX
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.formats.example_proto import (
    ExampleDecodeError,
    decode_example,
    decode_examples,
)
from corpus_pipeline.formats.hdf5 import PACKED_KEYS, UNPACKED_KEYS, check_hdf5_structure
from corpus_pipeline.formats.manifest import MANIFEST, is_signed, read_manifest, signature_problem
from corpus_pipeline.formats.mmap import IndexedDatasetReader, token_dtype
from corpus_pipeline.formats.tfrecord import (
    PACKED_FEATURES,
    UNPACKED_FEATURES,
    index_path_for,
    iter_records_with_offsets,
)

__all__ = ["VerifyReport", "verify_dataset", "run_verification", "is_temp_name"]

# Rows (HDF5, TFRecord records) or sequences (mmap) checked together: vectorised checks,
# bounded memory.
_BLOCK = 1024
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)
# A dataset with less than this many bytes of shards is verified in-process by default: a
# process pool costs more to start than it saves.
_POOL_MIN_BYTES = 64 << 20


def is_temp_name(name: str) -> bool:
    """True for a writer's temp file name (``.<final name>.tmp-<random>...``)."""
    return name.startswith(".") and ".tmp-" in name


@dataclass
class VerifyReport:
    """What :func:`run_verification` found.

    Attributes:
        problems: One line per problem, each naming the file (empty when all holds).
        shards: Shards checked.
        formats: Formats checked.
        files: Files checked.
        records: Records read (rows, records or sequences, all formats together).
        quick: True when the SHA-256 checks were skipped.
        warnings: Lines worth a look that are not failures (an unsigned manifest written
            before manifests were signed).
        kind: ``instances``, ``packed`` or ``documents`` (a folder written by ``extract``).
    """

    problems: list[str] = field(default_factory=list)
    shards: int = 0
    formats: tuple[str, ...] = ()
    files: int = 0
    records: int = 0
    quick: bool = False
    warnings: list[str] = field(default_factory=list)
    kind: str = "instances"

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """The one-line summary printed on success (or the problem count)."""
        if self.kind == "documents":
            what = (
                f"{self.shards} document shard{'s' if self.shards != 1 else ''}, "
                f"{self.files} files, {self.records} documents checked"
            )
        else:
            what = (
                f"{self.shards} shard{'s' if self.shards != 1 else ''} x "
                f"{len(self.formats)} format{'s' if len(self.formats) != 1 else ''} "
                f"({', '.join(self.formats)}), {self.files} files, {self.records} records checked"
            )
        sha = "sha256 skipped (--quick)" if self.quick else "sha256 verified"
        if self.ok:
            return f"OK: {what}, {sha}"
        return f"FAILED: {len(self.problems)} problem(s) in {what}"


@dataclass(frozen=True)
class _Spec:
    """What every check needs to know about the dataset (picklable for the process pool)."""

    out_dir: str
    name: str
    packed: bool
    s: int
    p: int
    k: int
    vocab_size: int
    quick: bool

    @property
    def m(self) -> int:
        """Masked width of a packed TFRecord row: P + K - 1."""
        return self.p + self.k - 1


@dataclass
class _Result:
    problems: list[str] = field(default_factory=list)
    files: int = 0
    records: int = 0


class _Tally:
    """Counts records failing each check of one file; reports one line per check."""

    def __init__(self, unit: str = "record") -> None:
        self.unit = unit
        self.bad: dict[str, list[int]] = {}

    def add(self, msg: str, rows_bad: Any, row0: int) -> None:
        n = int(np.count_nonzero(rows_bad))
        if n:
            entry = self.bad.setdefault(msg, [0, row0 + int(np.argmax(rows_bad))])
            entry[0] += n

    def flag(self, msg: str, row: int) -> None:
        entry = self.bad.setdefault(msg, [0, row])
        entry[0] += 1

    def lines(self, path: str) -> list[str]:
        u = self.unit
        return [
            f"{path}: {msg} ({n} {u}{'s' if n != 1 else ''}, first: {u} {first})"
            for msg, (n, first) in self.bad.items()
        ]


class _SubTally:
    """A tally view whose row numbers are positions in a selection of a block."""

    def __init__(self, tally: _Tally, sel: np.ndarray, row0: int) -> None:
        self.tally, self.sel, self.row0 = tally, sel, row0

    def add(self, msg: str, rows_bad: Any, row0: int) -> None:
        del row0
        full = np.zeros(int(self.sel.max()) + 1, dtype=bool)
        full[self.sel] = rows_bad
        self.tally.add(msg, full, self.row0)


def _line(path: str | Path, msg: str) -> str:
    """``path: msg``, without repeating a path the message already starts with."""
    p = str(path)
    msg = str(msg).strip().splitlines()[0] if str(msg).strip() else "error"
    if msg.startswith(p + ": "):
        msg = msg[len(p) + 2 :]
    return f"{p}: {msg}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


# ------------------------------------------------------------------------------------------
# Shared value checks (row-major matrices)


def _check_unpacked_rows(
    t: _Tally | _SubTally,
    spec: _Spec,
    row0: int,
    ids: np.ndarray,
    mask: np.ndarray,
    seg: np.ndarray,
    pos: np.ndarray,
    mids: np.ndarray,
    nsp: np.ndarray,
    weights: np.ndarray | None = None,
) -> None:
    """Value checks of padded unpacked rows (DLE HDF5 or Google TFRecord).

    ``weights`` (TFRecord) marks the real predictions; without it (HDF5) the real predictions
    are those before the first zero position, which is how DLE's loader reads them.
    """
    s, p, v = ids.shape[1], pos.shape[1], spec.vocab_size
    lens = np.count_nonzero(mask, axis=1)
    valid_cols = np.arange(s)[None, :] < lens[:, None]
    t.add("input_mask is not ones followed by zeros", ~(mask == valid_cols).all(axis=1), row0)
    t.add("empty instance (input_mask all zero)", lens == 0, row0)
    t.add(f"token id outside 0..{v - 1} in input_ids", ((ids < 0) | (ids >= v)).any(axis=1), row0)
    t.add("input_ids not 0 on padding", ((ids != 0) & ~valid_cols).any(axis=1), row0)
    t.add("segment_ids not in {0, 1}", ((seg != 0) & (seg != 1)).any(axis=1), row0)
    t.add("segment_ids not 0 on padding", ((seg != 0) & ~valid_cols).any(axis=1), row0)
    cols = np.arange(p)[None, :]
    if weights is None:
        real = np.cumprod(pos != 0, axis=1).astype(bool)
        t.add(
            "masked_lm_positions: non-zero after the zero padding",
            ((pos != 0) & ~real).any(axis=1),
            row0,
        )
    else:
        nreal = np.count_nonzero(weights > 0, axis=1)
        real = cols < nreal[:, None]
        t.add(
            "masked_lm_weights is not 1.0 for the real predictions followed by 0.0",
            ~(weights == real.astype(weights.dtype)).all(axis=1),
            row0,
        )
        t.add("masked_lm_positions not 0 on padding", ((pos != 0) & ~real).any(axis=1), row0)
    t.add(
        "masked position outside 1..length-1 (the [CLS] or padding)",
        (real & ((pos <= 0) | (pos >= lens[:, None]))).any(axis=1),
        row0,
    )
    t.add(
        "masked positions not sorted (strictly increasing)",
        (real[:, 1:] & (pos[:, 1:] <= pos[:, :-1])).any(axis=1),
        row0,
    )
    t.add(
        f"masked_lm_ids outside 0..{v - 1}",
        (real & ((mids < 0) | (mids >= v))).any(axis=1),
        row0,
    )
    t.add("masked_lm_ids not 0 on padding", ((mids != 0) & ~real).any(axis=1), row0)
    t.add("next_sentence_labels not in {0, 1}", (nsp != 0) & (nsp != 1), row0)


def _check_flat_positions(
    t: _Tally,
    row0: int,
    rows: int,
    pos: np.ndarray,
    pos_row: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    msg_range: str,
) -> None:
    """Flat masked positions: each strictly inside ``(lo, hi)`` and sorted within its row."""
    bad = (pos <= lo) | (pos >= hi)
    t.add(msg_range, np.bincount(pos_row[bad], minlength=rows) > 0, row0)
    same = pos_row[1:] == pos_row[:-1]
    unsorted = same & (pos[1:] <= pos[:-1])
    t.add(
        "masked positions not sorted (strictly increasing)",
        np.bincount(pos_row[1:][unsorted], minlength=rows) > 0,
        row0,
    )


# ------------------------------------------------------------------------------------------
# HDF5


def _verify_hdf5(spec: _Spec, path: Path, res: _Result) -> tuple[int, int] | None:
    """Checks one HDF5 shard; returns (records, instances) or None when unreadable."""
    try:
        f = h5py.File(path, "r")
    except _H5_ERRORS as e:
        res.problems.append(
            _line(path, f"not a readable HDF5 file (truncated or corrupt: {_one_line(e)})")
        )
        return None
    f.close()
    try:
        # What libhdf5 trusts blindly (chunk index, packed rows' heaps): damage there crashes
        # or hangs h5py instead of raising, so it is checked on the raw bytes first.
        check_hdf5_structure(path)
        f = h5py.File(path, "r")
    except FormatError as e:
        res.problems.append(_line(path, str(e)))
        return None
    except _H5_ERRORS as e:
        res.problems.append(_line(path, f"corrupt HDF5 structure ({_one_line(e)})"))
        return None
    with f:
        try:
            return (_hdf5_packed if spec.packed else _hdf5_unpacked)(spec, path, f, res)
        except _H5_ERRORS as e:
            res.problems.append(_line(path, f"corrupt HDF5 structure ({_one_line(e)})"))
            return None


def _hdf5_keys(
    spec: _Spec, path: Path, f: h5py.File, schema: Mapping[str, Any], res: _Result
) -> bool:
    ok = True
    for key in schema:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            res.problems.append(_line(path, f"missing dataset {key!r}"))
            ok = False
    for key in sorted(set(f.keys()) - set(schema)):
        res.problems.append(
            _line(
                path,
                f"unexpected dataset {key!r} (not in the {'packed ' if spec.packed else ''}schema)",
            )
        )
    return ok


def _hdf5_unpacked(spec: _Spec, path: Path, f: h5py.File, res: _Result) -> tuple[int, int] | None:
    if not _hdf5_keys(spec, path, f, UNPACKED_KEYS, res):
        return None
    n = int(f["input_ids"].shape[0]) if f["input_ids"].ndim >= 1 else 0
    shape_ok = True
    for key, want_dtype in UNPACKED_KEYS.items():
        ds = f[key]
        if ds.dtype != want_dtype:
            res.problems.append(
                _line(path, f"dataset {key!r} has dtype {ds.dtype}, expected {want_dtype}")
            )
        if key == "next_sentence_labels":
            want: tuple[int, ...] = (n,)
        elif key.startswith("masked_lm"):
            want = (n, spec.p)
        else:
            want = (n, spec.s)
        if ds.shape != want:
            res.problems.append(
                _line(path, f"dataset {key!r} has shape {ds.shape}, expected {want}")
            )
            shape_ok = False
    if not shape_ok:
        return None
    t = _Tally()
    for start in range(0, n, _BLOCK):
        end = min(n, start + _BLOCK)
        try:
            c = {k: f[k][start:end].astype(np.int64) for k in UNPACKED_KEYS}
        except _H5_ERRORS as e:
            res.problems.append(
                _line(path, f"rows {start}..{end - 1} cannot be read (corrupt: {_one_line(e)})")
            )
            res.problems.extend(t.lines(str(path)))
            return None
        _check_unpacked_rows(
            t,
            spec,
            start,
            c["input_ids"],
            c["input_mask"],
            c["segment_ids"],
            c["masked_lm_positions"],
            c["masked_lm_ids"],
            c["next_sentence_labels"],
        )
        res.records += end - start
    res.problems.extend(t.lines(str(path)))
    return n, n


def _hdf5_packed(spec: _Spec, path: Path, f: h5py.File, res: _Result) -> tuple[int, int] | None:
    if not _hdf5_keys(spec, path, f, PACKED_KEYS, res):
        return None
    n = None
    ok = True
    for key, base in PACKED_KEYS.items():
        ds = f[key]
        vlen = h5py.check_vlen_dtype(ds.dtype)
        if vlen is None or np.dtype(vlen) != base:
            what = f"vlen {np.dtype(vlen)}" if vlen is not None else str(ds.dtype)
            res.problems.append(
                _line(path, f"dataset {key!r} has dtype {what}, expected vlen {base}")
            )
        if ds.ndim != 1:
            res.problems.append(_line(path, f"dataset {key!r} has shape {ds.shape}, expected (N,)"))
            ok = False
            continue
        if n is None:
            n = int(ds.shape[0])
        elif ds.shape[0] != n:
            res.problems.append(
                _line(path, f"dataset {key!r} has {ds.shape[0]} rows, expected {n}")
            )
            ok = False
    if not ok or n is None:
        return None
    t = _Tally("pack")
    instances = 0
    for start in range(0, n, _BLOCK):
        end = min(n, start + _BLOCK)
        try:
            cols = {k: f[k][start:end] for k in PACKED_KEYS}
        except _H5_ERRORS as e:
            res.problems.append(
                _line(path, f"rows {start}..{end - 1} cannot be read (corrupt: {_one_line(e)})")
            )
            res.problems.extend(t.lines(str(path)))
            return None
        instances += _check_packed_rows(t, spec, start, cols)
        res.records += end - start
    res.problems.extend(t.lines(str(path)))
    return n, instances


def _lens(rows: np.ndarray) -> np.ndarray:
    return np.fromiter((r.shape[0] for r in rows), dtype=np.int64, count=len(rows))


def _cat(rows: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    return (
        np.concatenate([np.asarray(r, np.int64) for r in rows])
        if len(rows)
        else np.zeros(0, np.int64)
    )


def _check_packed_rows(t: _Tally, spec: _Spec, row0: int, c: Mapping[str, np.ndarray]) -> int:
    """Checks a block of MLPerf packed rows (object arrays of 1-D arrays); returns instances."""
    b = len(c["input_ids"])
    plen_rows = c["packed_input_len"]
    nseq = _lens(plen_rows)
    ntok = _lens(c["input_ids"])
    nmask = _lens(c["masked_lm_positions"])
    plen_sum = np.fromiter((int(np.sum(r, dtype=np.int64)) for r in plen_rows), np.int64, b)
    mlen_sum = np.fromiter(
        (int(np.sum(r, dtype=np.int64)) for r in c["packed_masked_lm_len"]), np.int64, b
    )
    k, s, p, v = spec.k, spec.s, spec.p, spec.vocab_size
    t.add(f"pack holds a number of sequences outside 1..{k}", (nseq < 1) | (nseq > k), row0)
    counts_bad = (_lens(c["packed_masked_lm_len"]) != nseq) | (
        _lens(c["next_sentence_labels"]) != nseq
    )
    t.add(
        "packed_masked_lm_len / next_sentence_labels do not have one value per sequence",
        counts_bad,
        row0,
    )
    tok_bad = (plen_sum != ntok) | (_lens(c["segment_ids"]) != ntok)
    t.add("input_ids / segment_ids length differs from sum(packed_input_len)", tok_bad, row0)
    mask_bad = (mlen_sum != nmask) | (_lens(c["masked_lm_ids"]) != nmask)
    t.add(
        "masked_lm_positions / masked_lm_ids length differs from sum(packed_masked_lm_len)",
        mask_bad,
        row0,
    )
    t.add(f"pack longer than max_seq_length {s}", ntok > s, row0)
    t.add(f"more than P + K - 1 = {spec.m} masked positions in a pack", nmask > spec.m, row0)
    row_of_tok = np.repeat(np.arange(b), ntok)
    ids = _cat(c["input_ids"])
    seg = _cat(c["segment_ids"])
    t.add(
        f"token id outside 0..{v - 1} in input_ids",
        np.bincount(row_of_tok[(ids < 0) | (ids >= v)], minlength=b) > 0,
        row0,
    )
    if seg.shape[0] == ids.shape[0]:
        t.add(
            "segment_ids not in {0, 1}",
            np.bincount(row_of_tok[(seg != 0) & (seg != 1)], minlength=b) > 0,
            row0,
        )
    mids = _cat(c["masked_lm_ids"])
    if mids.shape[0] == nmask.sum():
        row_of_m = np.repeat(np.arange(b), nmask)
        t.add(
            f"masked_lm_ids outside 0..{v - 1}",
            np.bincount(row_of_m[(mids < 0) | (mids >= v)], minlength=b) > 0,
            row0,
        )
    nsl = _cat(c["next_sentence_labels"])
    row_of_seq = np.repeat(np.arange(b), nseq)
    if nsl.shape[0] == nseq.sum():
        t.add(
            "next_sentence_labels not in {0, 1}",
            np.bincount(row_of_seq[(nsl != 0) & (nsl != 1)], minlength=b) > 0,
            row0,
        )
    # Position checks on the rows whose lengths add up.
    good = ~(counts_bad | tok_bad | mask_bad | (nseq < 1))
    if not good.any():
        return int(nseq.sum())
    idx = np.flatnonzero(good)
    plen = _cat(plen_rows[idx])
    mlen = _cat(c["packed_masked_lm_len"][idx])
    pos = _cat(c["masked_lm_positions"][idx])
    seq_row = np.repeat(np.arange(idx.shape[0]), nseq[idx])
    t.add("a sequence of length < 1", _scatter(seq_row[plen < 1], idx, b), row0)
    t.add(
        f"a sequence with more than P = {p} masked positions",
        _scatter(seq_row[mlen > p], idx, b),
        row0,
    )
    # Start of each sequence inside its row: global running sum minus the row's base.
    gstart = np.cumsum(plen) - plen
    row_tok = ntok[idx]
    row_base = np.cumsum(row_tok) - row_tok
    start = gstart - row_base[seq_row]
    seq_of_m = np.repeat(np.arange(plen.shape[0]), mlen)
    bad = (pos <= start[seq_of_m]) | (pos >= start[seq_of_m] + plen[seq_of_m])
    pos_row = seq_row[seq_of_m]
    t.add(
        "masked position outside its sequence (or on its [CLS])",
        _scatter(pos_row[bad], idx, b),
        row0,
    )
    same = pos_row[1:] == pos_row[:-1]
    t.add(
        "masked positions not sorted (strictly increasing)",
        _scatter(pos_row[1:][same & (pos[1:] <= pos[:-1])], idx, b),
        row0,
    )
    return int(nseq.sum())


def _scatter(local_rows: np.ndarray, idx: np.ndarray, b: int) -> np.ndarray:
    """Bool[b]: True at the block rows ``idx[local_rows]``."""
    out = np.zeros(b, dtype=bool)
    out[idx[local_rows]] = True
    return out


# ------------------------------------------------------------------------------------------
# TFRecord


def _iter_index(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            yield lineno, line.decode("ascii", errors="replace")


def _verify_tfrecord(spec: _Spec, path: Path, res: _Result) -> tuple[int, int] | None:
    index = index_path_for(path)
    schema = PACKED_FEATURES if spec.packed else UNPACKED_FEATURES
    if spec.packed:
        widths = {
            "packed_input_ids": spec.s,
            "packed_input_mask": spec.s,
            "packed_segment_ids": spec.s,
            "packed_position_ids": spec.s,
            "packed_masked_lm_positions": spec.m,
            "packed_masked_lm_ids": spec.m,
            "packed_masked_lm_mask": spec.m,
            "packed_next_sentence_labels": spec.k,
            "packed_next_sentence_mask": spec.k,
        }
    else:
        widths = {
            "input_ids": spec.s,
            "input_mask": spec.s,
            "segment_ids": spec.s,
            "masked_lm_positions": spec.p,
            "masked_lm_ids": spec.p,
            "masked_lm_weights": spec.p,
            "next_sentence_labels": 1,
        }
    lines = _iter_index(index) if index.is_file() else None
    index_bad = 0
    index_first = ""
    t = _Tally()
    n = 0
    instances = 0
    batch: list[tuple[int, bytes]] = []

    def flush() -> None:
        nonlocal instances
        if not batch:
            return
        row0 = n - len(batch)
        try:
            decoded = decode_examples([d for _, d in batch])
        except ExampleDecodeError:
            decoded = []
            for j, (_, data) in enumerate(batch):
                try:
                    decoded.append(decode_example(data))
                except ExampleDecodeError:
                    t.flag("not a tf.train.Example", row0 + j)
                    decoded.append({})
        rows_ok = np.ones(len(batch), dtype=bool)
        for j, feats in enumerate(decoded):
            if not feats:
                rows_ok[j] = False
                continue
            for name, kind in schema.items():
                value = feats.get(name)
                if value is None:
                    t.flag(f"feature {name!r} missing", row0 + j)
                    rows_ok[j] = False
                    continue
                want = np.float32 if kind == "float" else np.int64
                if not isinstance(value, np.ndarray) or (value.dtype != want and value.size):
                    t.flag(f"feature {name!r} is not a {kind} list", row0 + j)
                    rows_ok[j] = False
                elif value.shape[0] != widths[name]:
                    t.flag(f"feature {name!r} has a length other than {widths[name]}", row0 + j)
                    rows_ok[j] = False
            for name in sorted(set(feats) - set(schema)):
                t.flag(f"unexpected feature {name!r}", row0 + j)
        if rows_ok.any():
            sel = np.flatnonzero(rows_ok)
            cols = {
                name: np.stack([decoded[j][name] for j in sel]).astype(
                    np.float32 if kind == "float" else np.int64
                )
                for name, kind in schema.items()
            }
            # Rows are reported by their index in the file: map the selected rows back.
            sub = _SubTally(t, sel, row0)
            if spec.packed:
                instances += _check_graphcore_rows(sub, spec, cols)
            else:
                _check_unpacked_rows(
                    sub,
                    spec,
                    0,
                    cols["input_ids"],
                    cols["input_mask"],
                    cols["segment_ids"],
                    cols["masked_lm_positions"],
                    cols["masked_lm_ids"],
                    cols["next_sentence_labels"][:, 0],
                    cols["masked_lm_weights"],
                )
                instances += int(sel.shape[0])
        batch.clear()

    try:
        for offset, data in iter_records_with_offsets(path, verify_crc=True):
            if lines is not None:
                line = next(lines, None)
                want = f"{offset} {len(data) + 16}"
                if line is None or line[1].split() != want.split():
                    index_bad += 1
                    if not index_first:
                        got = "no line" if line is None else repr(line[1].strip())
                        index_first = (
                            f"record {n} at byte offset {offset}: expected '{want}', got {got}"
                        )
            batch.append((offset, data))
            n += 1
            if len(batch) >= _BLOCK:
                flush()
        flush()
    except FormatError as e:
        flush()
        res.problems.append(_line(path, str(e)))
        res.problems.extend(t.lines(str(path)))
        res.records += n
        return None
    res.records += n
    res.problems.extend(t.lines(str(path)))
    if lines is not None:  # a missing index is reported with the other missing files
        extra = sum(1 for _ in lines)
        if extra:
            index_bad += extra
            if not index_first:
                index_first = f"{extra} line(s) after the last record"
        if index_bad:
            res.problems.append(
                _line(
                    index,
                    f"{index_bad} line(s) do not match the records ({index_first}): rebuild the index",
                )
            )
    return n, instances if spec.packed else n


def _check_graphcore_rows(t: _Tally | _SubTally, spec: _Spec, c: Mapping[str, np.ndarray]) -> int:
    """Value and layout checks of Graphcore packed rows; returns the number of instances."""
    s, k, p, v, m = spec.s, spec.k, spec.p, spec.vocab_size, spec.m
    ids, mask, seg, posid = (
        c["packed_input_ids"],
        c["packed_input_mask"],
        c["packed_segment_ids"],
        c["packed_position_ids"],
    )
    mpos, mids, mmask = (
        c["packed_masked_lm_positions"],
        c["packed_masked_lm_ids"],
        c["packed_masked_lm_mask"],
    )
    nsl, nsm = c["packed_next_sentence_labels"], c["packed_next_sentence_mask"]
    n = np.count_nonzero(nsm > 0, axis=1)
    nsm_want = (np.arange(k)[None, :] >= (k - n)[:, None]).astype(np.float32)
    nsm_bad = ~(nsm == nsm_want).all(axis=1) | (n < 1)
    t.add(
        "packed_next_sentence_mask does not mark sequences 1..n (n >= 1) from the end",
        nsm_bad,
        0,
    )
    t.add(f"packed_input_mask value outside 0..{k}", ((mask < 0) | (mask > k)).any(axis=1), 0)
    t.add(
        f"token id outside 0..{v - 1} in packed_input_ids", ((ids < 0) | (ids >= v)).any(axis=1), 0
    )
    t.add("packed_segment_ids not in {0, 1}", ((seg != 0) & (seg != 1)).any(axis=1), 0)
    pad = mask == 0
    t.add(
        "packed_input_ids / segment_ids / position_ids not 0 on padding",
        (pad & ((ids != 0) | (seg != 0) | (posid != 0))).any(axis=1),
        0,
    )
    t.add(
        "packed_next_sentence_labels not in {0, 1} (0 where no sequence)",
        (((nsl != 0) & (nsl != 1)) | ((nsm == 0) & (nsl != 0))).any(axis=1),
        0,
    )
    # Expected mask from the body lengths: bodies 1..n back to back from 0, [CLS] of k at S-k.
    counts = np.stack([np.count_nonzero(mask == j, axis=1) for j in range(1, k + 1)], axis=1)
    present = np.arange(1, k + 1)[None, :] <= n[:, None]
    blen = np.where(present, counts - 1, 0).clip(min=0)
    cum = np.cumsum(blen, axis=1)
    body_total = cum[:, -1]
    col = np.arange(s)[None, :]
    seq_at = 1 + (cum[:, None, :] <= col[:, :, None]).sum(axis=2)
    want = np.where(col < body_total[:, None], seq_at, 0)
    tail = col >= (s - n)[:, None]
    want = np.where(tail, s - col, want)
    layout_bad = ~(mask == want).all(axis=1) | ((counts > 0) & ~present).any(axis=1)
    layout_bad |= nsm_bad | (body_total + n > s)
    t.add(
        "packed_input_mask is not laid out as [bodies from 0 | [CLS] of sequence k at S-k]",
        layout_bad,
        0,
    )
    off = cum - blen  # start of each body
    seq_idx = np.clip(want - 1, 0, k - 1)
    want_pos = np.where(
        (col < body_total[:, None]) & ~tail,
        col - np.take_along_axis(off, seq_idx, axis=1) + 1,
        0,
    )
    t.add(
        "packed_position_ids are not 1..len-1 on bodies and 0 elsewhere",
        ~layout_bad & ~(posid == want_pos).all(axis=1),
        0,
    )
    # Masked positions.
    kk = mmask
    t.add(
        f"packed_masked_lm_mask value not an integer in 0..{k}",
        ((kk != np.round(kk)) | (kk < 0) | (kk > k)).any(axis=1),
        0,
    )
    nreal = np.count_nonzero(kk > 0, axis=1)
    real = np.arange(m)[None, :] < nreal[:, None]
    prefix_bad = ~((kk > 0) == real).all(axis=1)
    t.add("packed_masked_lm_mask is not real predictions followed by zeros", prefix_bad, 0)
    t.add(
        "packed_masked_lm_positions / ids not 0 on padding",
        (~real & ((mpos != 0) | (mids != 0))).any(axis=1),
        0,
    )
    t.add(
        f"masked_lm_ids outside 0..{v - 1}",
        (real & ((mids < 0) | (mids >= v))).any(axis=1),
        0,
    )
    per_seq = np.stack([np.count_nonzero(kk == j, axis=1) for j in range(1, k + 1)], axis=1)
    t.add(f"a sequence with more than P = {p} masked positions", (per_seq > p).any(axis=1), 0)
    ki = np.clip(np.round(kk).astype(np.int64), 0, k)
    inside = (mpos >= 0) & (mpos < body_total[:, None])
    at = np.take_along_axis(mask, np.clip(mpos, 0, s - 1), axis=1)
    pos_bad = real & (~inside | (at != ki) | (ki > n[:, None]))
    t.add(
        "masked position outside the body of its sequence",
        ~layout_bad & ~prefix_bad & pos_bad.any(axis=1),
        0,
    )
    t.add(
        "masked positions not sorted (strictly increasing)",
        (real[:, 1:] & (mpos[:, 1:] <= mpos[:, :-1])).any(axis=1),
        0,
    )
    return int(n.sum())


# ------------------------------------------------------------------------------------------
# mmap


def _mmap_dtypes(spec: _Spec) -> dict[str, np.dtype]:
    ids = token_dtype(spec.vocab_size)
    out = {
        "input_ids": ids,
        "segment_ids": np.dtype(np.int8),
        "masked_lm_positions": token_dtype(spec.s),
        "masked_lm_ids": ids,
        "next_sentence_labels": np.dtype(np.uint8),
    }
    if spec.packed:
        out["pack_lengths"] = np.dtype(np.int32 if spec.s >= 32768 else np.int16)
    return out


def _open_indexed(prefix: Path, want: np.dtype, res: _Result) -> IndexedDatasetReader | None:
    """Opens and checks one ``.bin``/``.idx`` pair (header, dtype, offsets, exact size)."""
    try:
        r = IndexedDatasetReader(prefix)
    except FormatError as e:
        # The reader's message names the file at fault (.idx or .bin).
        msg = str(e)
        named = msg.startswith((f"{prefix}.idx", f"{prefix}.bin"))
        res.problems.append(msg if named else _line(f"{prefix}.idx", msg))
        return None
    idx = f"{prefix}.idx"
    ok = True
    if r.dtype != want:
        res.problems.append(_line(idx, f"dtype {r.dtype}, expected {want}"))
        ok = False
    lengths = r.lengths.astype(np.int64)
    item = r.dtype.itemsize
    expect = np.zeros(lengths.shape[0], np.int64)
    if lengths.shape[0] > 1:
        np.cumsum(lengths[:-1] * item, out=expect[1:])
    if not np.array_equal(r.offsets, expect):
        res.problems.append(_line(idx, "offsets are not the running sum of the lengths"))
        ok = False
    size = r.bin_path.stat().st_size
    need = int(lengths.sum()) * item
    if size != need:
        res.problems.append(
            _line(
                r.bin_path,
                f"{size} bytes but the index describes {need}: "
                f"{'truncated' if size < need else 'trailing bytes'}",
            )
        )
        ok = False
    return r if ok else None


def _verify_mmap(spec: _Spec, stem: str, res: _Result) -> tuple[int, int] | None:
    d = Path(spec.out_dir) / "mmap"
    dtypes = _mmap_dtypes(spec)
    readers = {f: _open_indexed(d / f"{stem}_{f}", dt, res) for f, dt in dtypes.items()}
    if any(r is None for r in readers.values()):
        return None
    r = {f: rd for f, rd in readers.items() if rd is not None}
    where = str(d / f"{stem}_*")
    n = len(r["input_ids"])
    problems = res.problems
    for f in registry.MMAP_FIELDS:
        if len(r[f]) != n:
            problems.append(
                _line(f"{d / stem}_{f}.idx", f"{len(r[f])} sequences, input_ids has {n}")
            )
    if problems:
        return None
    lens = r["input_ids"].lengths.astype(np.int64)
    mlens = r["masked_lm_positions"].lengths.astype(np.int64)
    if not np.array_equal(lens, r["segment_ids"].lengths):
        problems.append(_line(where, "input_ids and segment_ids lengths differ"))
    if not np.array_equal(mlens, r["masked_lm_ids"].lengths):
        problems.append(_line(where, "masked_lm_positions and masked_lm_ids lengths differ"))
    if (r["next_sentence_labels"].lengths != 1).any():
        problems.append(_line(where, "next_sentence_labels must hold one element per instance"))
    t = _Tally("instance")
    t.add("empty instance", lens < 1, 0)
    t.add(f"instance longer than max_seq_length {spec.s}", lens > spec.s, 0)
    t.add(f"more than P = {spec.p} masked positions", mlens > spec.p, 0)
    records = n
    if spec.packed:
        pl = r["pack_lengths"]
        records = len(pl)
        sizes = pl.lengths.astype(np.int64)
        doc_want = np.concatenate([[0], np.cumsum(sizes)])
        if int(sizes.sum()) != n:
            problems.append(
                _line(
                    f"{d / stem}_pack_lengths.idx", f"covers {int(sizes.sum())} instances, not {n}"
                )
            )
            return None
        if not np.array_equal(pl.document_index, np.arange(records + 1)):
            problems.append(_line(f"{d / stem}_pack_lengths.idx", "document index is not 0..packs"))
        tp = _Tally("pack")
        tp.add(
            f"pack holds a number of sequences outside 1..{spec.k}",
            (sizes < 1) | (sizes > spec.k),
            0,
        )
        flat, _ = pl.read_range(0, records) if records else (np.zeros(0, np.int64), None)
        flat = np.asarray(flat, np.int64)
        if not np.array_equal(flat, lens):
            problems.append(
                _line(f"{d / stem}_pack_lengths.bin", "values differ from the input_ids lengths")
            )
        pack_of = np.repeat(np.arange(records), sizes)
        tok = np.bincount(pack_of, weights=lens, minlength=records)
        msk = np.bincount(pack_of, weights=mlens, minlength=records)
        tp.add(f"pack longer than max_seq_length {spec.s}", tok > spec.s, 0)
        tp.add(f"more than P + K - 1 = {spec.m} masked positions in a pack", msk > spec.m, 0)
        problems.extend(tp.lines(where))
    else:
        doc_want = np.arange(n + 1)
    for f in registry.MMAP_FIELDS:
        if not np.array_equal(r[f].document_index, doc_want):
            problems.append(
                _line(
                    f"{d / stem}_{f}.idx",
                    "document index is not "
                    + ("one document per pack" if spec.packed else "one document per instance"),
                )
            )
    v = spec.vocab_size
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        ids, ln = r["input_ids"].read_range(lo, hi)
        seg, _ = r["segment_ids"].read_range(lo, hi)
        pos, ml = r["masked_lm_positions"].read_range(lo, hi)
        mid, _ = r["masked_lm_ids"].read_range(lo, hi)
        nsp, _ = r["next_sentence_labels"].read_range(lo, hi)
        ids, seg = ids.astype(np.int64), seg.astype(np.int64)
        pos, mid = pos.astype(np.int64), mid.astype(np.int64)
        rows = hi - lo
        tok_row = np.repeat(np.arange(rows), ln)
        m_row = np.repeat(np.arange(rows), ml)
        t.add(
            f"token id outside 0..{v - 1} in input_ids",
            np.bincount(tok_row[(ids < 0) | (ids >= v)], minlength=rows) > 0,
            lo,
        )
        t.add(
            "segment_ids not in {0, 1}",
            np.bincount(tok_row[(seg != 0) & (seg != 1)], minlength=rows) > 0,
            lo,
        )
        t.add(
            f"masked_lm_ids outside 0..{v - 1}",
            np.bincount(m_row[(mid < 0) | (mid >= v)], minlength=rows) > 0,
            lo,
        )
        _check_flat_positions(
            t,
            lo,
            rows,
            pos,
            m_row,
            np.zeros_like(pos),
            np.asarray(ln, np.int64)[m_row],
            "masked position outside 1..length-1 (the [CLS] or past the end)",
        )
        nsp = np.asarray(nsp, np.int64)
        t.add("next_sentence_labels not in {0, 1}", (nsp != 0) & (nsp != 1), lo)
        res.records += rows
    problems.extend(t.lines(where))
    return records, n


# ------------------------------------------------------------------------------------------
# Megatron sentence dataset


def _verify_megatron(spec: _Spec, meta: Mapping[str, Any]) -> _Result:
    res = _Result()
    out = Path(spec.out_dir)
    prefix = out / str(meta.get("prefix", ""))
    files = meta.get("files") or []
    listed = {e.get("path") for e in files}
    for ext in ("bin", "idx"):
        rel = f"{meta.get('prefix')}.{ext}"
        if rel not in listed:
            res.problems.append(_line(out / MANIFEST, f"megatron: {rel} is not listed in 'files'"))
    present = _check_entries(spec, files, res)
    if not present:
        return res
    r = _open_indexed(prefix, token_dtype(spec.vocab_size), res)
    if r is None:
        return res
    if len(r) != int(meta.get("sentences", -1)):
        res.problems.append(
            _line(f"{prefix}.idx", f"{len(r)} sentences, the manifest says {meta.get('sentences')}")
        )
    if r.num_documents != int(meta.get("documents", -1)):
        res.problems.append(
            _line(
                f"{prefix}.idx",
                f"{r.num_documents} documents, the manifest says {meta.get('documents')}",
            )
        )
    t = _Tally("sentence")
    t.add("empty sentence", r.lengths < 1, 0)
    v = spec.vocab_size
    n = len(r)
    for lo in range(0, n, _BLOCK * 16):
        hi = min(n, lo + _BLOCK * 16)
        ids, ln = r.read_range(lo, hi)
        ids = ids.astype(np.int64)
        rows = hi - lo
        row = np.repeat(np.arange(rows), ln)
        t.add(
            f"token id outside 0..{v - 1}",
            np.bincount(row[(ids < 0) | (ids >= v)], minlength=rows) > 0,
            lo,
        )
        res.records += rows
    res.problems.extend(t.lines(f"{prefix}.bin"))
    return res


# ------------------------------------------------------------------------------------------
# Files and shards


def _check_entries(spec: _Spec, entries: Sequence[Mapping[str, Any]], res: _Result) -> bool:
    """Presence and SHA-256 of manifest file entries; True when all are present."""
    all_present = True
    for e in entries:
        rel = str(e.get("path", ""))
        path = Path(spec.out_dir) / rel
        res.files += 1
        if not path.is_file():
            res.problems.append(_line(path, "missing"))
            all_present = False
            continue
        if not spec.quick:
            want = e.get("sha256")
            got = sha256_file(path)
            if want != got:
                res.problems.append(
                    _line(
                        path,
                        f"sha256 {got[:16]}... differs from the manifest's {str(want)[:16]}...",
                    )
                )
    return all_present


def _verify_shard_format(spec: _Spec, fmt: str, shard: Mapping[str, Any]) -> _Result:
    """Every check of one shard in one format (runs in a worker process)."""
    res = _Result()
    if registry.is_empty_shard(shard):
        return res  # no files to check (files left at its names are strays: _stray_files)
    out = Path(spec.out_dir)
    index = int(shard["index"])
    expected = registry.shard_files(fmt, spec.name, index, spec.packed)
    entries = (shard.get("files") or {}).get(fmt)
    legacy = registry.legacy_shard_files(fmt, spec.name, index, spec.packed)
    if legacy is not None and [str(e.get("path")) for e in entries or []] == legacy:
        expected = legacy  # written before packed HDF5 shards were renamed: still valid
    if entries is None:
        res.problems.append(_line(out / MANIFEST, f"shard {index} lists no {fmt} files"))
        entries = [{"path": rel} for rel in expected]
        _check_entries(dataclasses.replace(spec, quick=True), entries, res)
    else:
        listed = [str(e.get("path")) for e in entries]
        for rel in expected:
            if rel not in listed:
                res.problems.append(
                    _line(out / rel, f"not listed in the manifest for shard {index} ({fmt})")
                )
                if not (out / rel).is_file():
                    res.problems.append(_line(out / rel, "missing"))
        for rel in listed:
            if rel not in expected:
                res.problems.append(
                    _line(out / rel, f"listed for shard {index} ({fmt}) but not part of its layout")
                )
        _check_entries(spec, entries, res)
    main = out / expected[0]
    counts: tuple[int, int] | None = None
    if fmt == "hdf5":
        if main.is_file():
            counts = _verify_hdf5(spec, main, res)
    elif fmt == "tfrecord":
        if main.is_file():
            counts = _verify_tfrecord(spec, main, res)
    elif all((out / rel).is_file() for rel in expected):
        counts = _verify_mmap(spec, registry.shard_stem(spec.name, index), res)
    if counts is not None:
        records, instances = counts
        where = (
            main if fmt != "mmap" else out / "mmap" / f"{registry.shard_stem(spec.name, index)}_*"
        )
        if records != shard.get("records"):
            res.problems.append(
                _line(where, f"{records} records, the manifest says {shard.get('records')}")
            )
        if instances != shard.get("instances"):
            res.problems.append(
                _line(where, f"{instances} instances, the manifest says {shard.get('instances')}")
            )
    return res


def _run_task(args: tuple[_Spec, str, Any]) -> _Result:
    spec, fmt, payload = args
    if fmt == "megatron":
        return _verify_megatron(spec, payload)
    return _verify_shard_format(spec, fmt, payload)


def _stray_files(out: Path, manifest: Mapping[str, Any], formats: Sequence[str]) -> list[str]:
    """Temp files in the folder and its ``formats`` folders, and files the manifest omits."""
    listed: set[str] = set()
    for shard in manifest.get("shards", []):
        for entries in (shard.get("files") or {}).values():
            listed.update(str(e.get("path")) for e in entries)
    meg = manifest.get("megatron") or {}
    listed.update(str(e.get("path")) for e in meg.get("files") or [])
    problems = []
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if entry.is_file() and is_temp_name(entry.name):
            problems.append(_line(entry.path, "stray temp file (a writer was killed): delete it"))
    for fmt in formats:
        d = out / fmt
        if not d.is_dir():
            continue
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            rel = f"{fmt}/{entry.name}"
            if is_temp_name(entry.name):
                problems.append(
                    _line(entry.path, "stray temp file (a writer was killed): delete it")
                )
            elif entry.is_file() and rel not in listed:
                problems.append(
                    _line(
                        entry.path, "not listed in the manifest (consumers may read it): remove it"
                    )
                )
    return problems


def _unlisted_format_folders(out: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Format folders with files on disk that the manifest does not list (an edited or stale
    manifest: nothing would check them, yet consumers pointed at the folder read them)."""
    listed = set(manifest.get("formats") or [])
    problems = []
    for fmt in registry.FORMATS:
        d = out / fmt
        if fmt in listed or not d.is_dir():
            continue
        if any(e.is_file() for e in os.scandir(d)):
            problems.append(
                _line(
                    d,
                    f"a {fmt} folder the manifest does not list (formats: "
                    f"{', '.join(manifest.get('formats') or []) or 'none'}): "
                    "remove it, or re-run the command that wrote the dataset",
                )
            )
    return problems


def _verify_documents(
    out: Path, manifest: Mapping[str, Any], quick: bool, report: VerifyReport
) -> None:
    """A documents folder (``extract``, or ``run``'s ``docs/``): every shard file's sha256 and
    document count against the manifest, missing and unlisted shard files, temp files."""
    mpath = out / MANIFEST
    shards = list(manifest.get("shards") or [])
    fmt = str(manifest.get("format") or "text")
    suffix = DOC_SUFFIX.get(fmt, ".txt")
    listed: set[str] = set()
    total = 0
    for i, shard in enumerate(shards):
        rel = str(shard.get("path", ""))
        listed.add(rel)
        path = out / rel
        report.files += 1
        if not rel or not path.is_file():
            report.problems.append(_line(path if rel else mpath, f"shard {i}: missing"))
            continue
        if not quick:
            got = sha256_file(path)
            want = shard.get("sha256")
            if got != want:
                report.problems.append(
                    _line(
                        path,
                        f"sha256 {got[:16]}... differs from the manifest's {str(want)[:16]}...",
                    )
                )
        try:
            n = sum(1 for _ in read_documents(path, fmt))
        except UserError as e:
            report.problems.append(_line(path, str(e)))
            continue
        report.records += n
        total += n
        if n != shard.get("documents"):
            report.problems.append(
                _line(path, f"{n} documents, the manifest says {shard.get('documents')}")
            )
    want_total = manifest.get("documents")
    listed_total = sum(int(s.get("documents") or 0) for s in shards)
    if want_total is not None and want_total != listed_total:
        report.problems.append(
            _line(mpath, f"documents is {want_total} but the shards add up to {listed_total}")
        )
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if not entry.is_file():
            continue
        if is_temp_name(entry.name):
            report.problems.append(
                _line(entry.path, "stray temp file (a writer was killed): delete it")
            )
        elif entry.name.endswith((".txt", ".jsonl", suffix)) and entry.name not in listed:
            report.problems.append(
                _line(entry.path, "not listed in the manifest (consumers may read it): remove it")
            )


def _spec_of(out_dir: str, manifest: Mapping[str, Any], quick: bool) -> _Spec:
    path = os.path.join(out_dir, MANIFEST)
    try:
        vocab = manifest.get("vocab") or {}
        packed = manifest.get("kind") == "packed"
        return _Spec(
            out_dir=out_dir,
            name=str(manifest["name"]),
            packed=packed,
            s=int(manifest["max_seq_length"]),
            p=int(manifest["max_predictions"]),
            k=int(manifest.get("max_per_pack") or 1) if packed else 1,
            vocab_size=int(vocab["size"]),
            quick=quick,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(
            f"{path}: incomplete manifest ({_one_line(e)}): re-run the command that wrote it"
        ) from None


def run_verification(
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] | None = None,
    quick: bool = False,
    workers: int | None = 1,
) -> VerifyReport:
    """Verifies a dataset folder (see the module docstring for every check).

    Args:
        out_dir: The dataset folder (with ``manifest.json``).
        formats: Formats to check (default: every format the manifest lists).
        quick: Skip the SHA-256 of every file (truncation and structure are still caught).
        workers: Processes verifying shards in parallel (``spawn``ed: a calling script needs
            the ``if __name__ == "__main__":`` guard); 1 (the default) verifies in-process;
            None picks one per core when the shards add up to more than 64 MiB, else 1.

    Returns:
        The report; ``report.problems`` is empty when everything holds.

    Raises:
        UserError: No/invalid manifest, or a format the dataset does not have.
    """
    out = str(out_dir)
    if not os.path.isdir(out):
        raise UserError(f"{out}: no such folder: pass a dataset folder (with manifest.json)")
    manifest = read_manifest(out, check_signature=False)
    mpath = os.path.join(out, MANIFEST)
    edited = signature_problem(manifest, mpath)
    unsigned = (
        []
        if is_signed(manifest)
        else [
            f"{mpath}: unsigned manifest (written before manifests were signed): an edit to it "
            "cannot be detected; re-run the command that wrote it to sign it"
        ]
    )
    if manifest.get("kind") == "documents":
        if formats is not None:
            raise UserError(f"{out}: a documents folder has no shard formats (drop --format)")
        report = VerifyReport(
            shards=len(manifest.get("shards") or []), quick=quick, kind="documents"
        )
        report.warnings.extend(unsigned)
        if edited:
            report.problems.append(edited)
        _verify_documents(Path(out), manifest, quick, report)
        return report
    spec = _spec_of(out, manifest, quick)
    have = [f for f in manifest.get("formats", []) if f in registry.FORMATS]
    if formats is None:
        fmts = tuple(have)
    else:
        missing = [f for f in formats if f not in have]
        if missing:
            raise UserError(
                f"{out}: has no {', '.join(missing)} shards (it has {', '.join(have) or 'none'})"
            )
        fmts = tuple(f for f in have if f in formats)
    shards = list(manifest.get("shards") or [])
    report = VerifyReport(
        shards=len(shards), formats=fmts, quick=quick, kind=str(manifest.get("kind"))
    )
    report.warnings.extend(unsigned)
    if edited:
        report.problems.append(edited)
    report.problems.extend(_unlisted_format_folders(Path(out), manifest))
    indices = [s.get("index") for s in shards]
    if sorted(indices) != list(range(len(shards))):
        report.problems.append(
            _line(mpath, f"shard indices {indices} are not 0..{len(shards) - 1}")
        )
    totals = manifest.get("totals") or {}
    for key in ("instances", "records"):
        total = sum(int(s.get(key) or 0) for s in shards)
        if key in totals and totals[key] != total:
            report.problems.append(
                _line(mpath, f"totals.{key} is {totals[key]} but the shards add up to {total}")
            )
    tasks: list[tuple[_Spec, str, Any]] = [(spec, fmt, shard) for shard in shards for fmt in fmts]
    meg = manifest.get("megatron")
    if meg and (formats is None or "mmap" in fmts):
        tasks.append((spec, "megatron", meg))
    if workers is None:
        total_bytes = 0
        for shard in shards:
            for fmt in fmts:
                for e in (shard.get("files") or {}).get(fmt) or []:
                    p = Path(out) / str(e.get("path"))
                    total_bytes += p.stat().st_size if p.is_file() else 0
        workers = (os.cpu_count() or 1) if total_bytes >= _POOL_MIN_BYTES else 1
    results: list[_Result]
    if workers > 1 and len(tasks) > 1:
        # spawn: the parent may hold h5py/tokenizers threads that fork would copy mid-state.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as ex:
            results = list(ex.map(_run_task, tasks))  # map keeps the task order
    else:
        results = [_run_task(t) for t in tasks]
    for r in results:
        report.problems.extend(r.problems)
        report.files += r.files
        report.records += r.records
    report.problems.extend(_stray_files(Path(out), manifest, fmts))
    return report


def verify_dataset(
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] | None = None,
    quick: bool = False,
    workers: int | None = 1,
) -> list[str]:
    """Verifies a dataset folder; returns one line per problem (empty when all holds).

    See :func:`run_verification` for the arguments.
    """
    return run_verification(out_dir, formats, quick, workers).problems
