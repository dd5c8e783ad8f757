"""``verify``'s checks of an HDF5 shard: the DLE keys, dtypes and shapes ``(N, S)`` /
``(N, P)`` / ``(N,)``, or, packed, the MLPerf keys with their variable-length dtypes, then
every value, block by block (every chunk is read, so HDF5's Fletcher-32 checksums catch
flipped bytes in the data even without the sha256). The schemas are those of
``formats/hdf5.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from corpus_pipeline.formats.checks.common import (
    BLOCK,
    CheckResult,
    CheckSpec,
    Counts,
    Tally,
    check_unpacked_rows,
    line,
)
from corpus_pipeline.formats.common import FormatError, lengths_of
from corpus_pipeline.formats.hdf5 import PACKED_KEYS, UNPACKED_KEYS
from corpus_pipeline.formats.hdf5_integrity import H5_ERRORS, check_hdf5_structure, one_line


def check_shard(
    spec: CheckSpec, index: int, layout: Sequence[str], res: CheckResult
) -> tuple[Counts, str] | None:
    """Checks one HDF5 shard (``layout``: its file, relative to the dataset folder).

    Returns:
        ((records, instances), the file's path), or None when it is missing or unreadable
        (the problems are in ``res``).
    """
    del index
    path = Path(spec.out_dir) / layout[0]
    if not path.is_file():
        return None  # reported with the other missing files
    counts = _verify_hdf5(spec, path, res)
    return None if counts is None else (counts, str(path))


def _verify_hdf5(spec: CheckSpec, path: Path, res: CheckResult) -> tuple[int, int] | None:
    """Checks one HDF5 shard; returns (records, instances) or None when unreadable."""
    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as e:
        res.problems.append(
            line(path, f"not a readable HDF5 file (truncated or corrupt: {one_line(e)})")
        )
        return None
    f.close()
    try:
        # What libhdf5 trusts blindly (chunk index, packed rows' heaps): damage there crashes
        # or hangs h5py instead of raising, so it is checked on the raw bytes first.
        check_hdf5_structure(path)
        f = h5py.File(path, "r")
    except FormatError as e:
        res.problems.append(line(path, str(e)))
        return None
    except H5_ERRORS as e:
        res.problems.append(line(path, f"corrupt HDF5 structure ({one_line(e)})"))
        return None
    with f:
        try:
            return (_hdf5_packed if spec.packed else _hdf5_unpacked)(spec, path, f, res)
        except H5_ERRORS as e:
            res.problems.append(line(path, f"corrupt HDF5 structure ({one_line(e)})"))
            return None


def _hdf5_keys(
    spec: CheckSpec, path: Path, f: h5py.File, schema: Mapping[str, Any], res: CheckResult
) -> bool:
    ok = True
    for key in schema:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            res.problems.append(line(path, f"missing dataset {key!r}"))
            ok = False
    for key in sorted(set(f.keys()) - set(schema)):
        res.problems.append(
            line(
                path,
                f"unexpected dataset {key!r} (not in the {'packed ' if spec.packed else ''}schema)",
            )
        )
    return ok


def _hdf5_unpacked(
    spec: CheckSpec, path: Path, f: h5py.File, res: CheckResult
) -> tuple[int, int] | None:
    if not _hdf5_keys(spec, path, f, UNPACKED_KEYS, res):
        return None
    n = int(f["input_ids"].shape[0]) if f["input_ids"].ndim >= 1 else 0
    shape_ok = True
    for key, want_dtype in UNPACKED_KEYS.items():
        ds = f[key]
        if ds.dtype != want_dtype:
            res.problems.append(
                line(path, f"dataset {key!r} has dtype {ds.dtype}, expected {want_dtype}")
            )
        if key == "next_sentence_labels":
            want: tuple[int, ...] = (n,)
        elif key.startswith("masked_lm"):
            want = (n, spec.p)
        else:
            want = (n, spec.s)
        if ds.shape != want:
            res.problems.append(
                line(path, f"dataset {key!r} has shape {ds.shape}, expected {want}")
            )
            shape_ok = False
    if not shape_ok:
        return None
    t = Tally()
    for start in range(0, n, BLOCK):
        end = min(n, start + BLOCK)
        try:
            c = {k: f[k][start:end].astype(np.int64) for k in UNPACKED_KEYS}
        except H5_ERRORS as e:
            res.problems.append(
                line(path, f"rows {start}..{end - 1} cannot be read (corrupt: {one_line(e)})")
            )
            res.problems.extend(t.lines(str(path)))
            return None
        check_unpacked_rows(
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


def _hdf5_packed(
    spec: CheckSpec, path: Path, f: h5py.File, res: CheckResult
) -> tuple[int, int] | None:
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
                line(path, f"dataset {key!r} has dtype {what}, expected vlen {base}")
            )
        if ds.ndim != 1:
            res.problems.append(line(path, f"dataset {key!r} has shape {ds.shape}, expected (N,)"))
            ok = False
            continue
        if n is None:
            n = int(ds.shape[0])
        elif ds.shape[0] != n:
            res.problems.append(line(path, f"dataset {key!r} has {ds.shape[0]} rows, expected {n}"))
            ok = False
    if not ok or n is None:
        return None
    t = Tally("pack")
    instances = 0
    for start in range(0, n, BLOCK):
        end = min(n, start + BLOCK)
        try:
            cols = {k: f[k][start:end] for k in PACKED_KEYS}
        except H5_ERRORS as e:
            res.problems.append(
                line(path, f"rows {start}..{end - 1} cannot be read (corrupt: {one_line(e)})")
            )
            res.problems.extend(t.lines(str(path)))
            return None
        instances += _check_packed_rows(t, spec, start, cols)
        res.records += end - start
    res.problems.extend(t.lines(str(path)))
    return n, instances


def _cat(rows: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    return (
        np.concatenate([np.asarray(r, np.int64) for r in rows])
        if len(rows)
        else np.zeros(0, np.int64)
    )


def _check_packed_rows(t: Tally, spec: CheckSpec, row0: int, c: Mapping[str, np.ndarray]) -> int:
    """Checks a block of MLPerf packed rows (object arrays of 1-D arrays); returns instances."""
    b = len(c["input_ids"])
    plen_rows = c["packed_input_len"]
    nseq = lengths_of(plen_rows)
    ntok = lengths_of(c["input_ids"])
    nmask = lengths_of(c["masked_lm_positions"])
    plen_sum = np.fromiter((int(np.sum(r, dtype=np.int64)) for r in plen_rows), np.int64, b)
    mlen_sum = np.fromiter(
        (int(np.sum(r, dtype=np.int64)) for r in c["packed_masked_lm_len"]), np.int64, b
    )
    k, s, p, v = spec.k, spec.s, spec.p, spec.vocab_size
    t.add(f"pack holds a number of sequences outside 1..{k}", (nseq < 1) | (nseq > k), row0)
    counts_bad = (lengths_of(c["packed_masked_lm_len"]) != nseq) | (
        lengths_of(c["next_sentence_labels"]) != nseq
    )
    t.add(
        "packed_masked_lm_len / next_sentence_labels do not have one value per sequence",
        counts_bad,
        row0,
    )
    tok_bad = (plen_sum != ntok) | (lengths_of(c["segment_ids"]) != ntok)
    t.add("input_ids / segment_ids length differs from sum(packed_input_len)", tok_bad, row0)
    mask_bad = (mlen_sum != nmask) | (lengths_of(c["masked_lm_ids"]) != nmask)
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
