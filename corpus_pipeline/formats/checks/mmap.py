"""``verify``'s checks of a Megatron-style mmap shard (one ``.bin``/``.idx`` pair per field,
``formats/mmap.py``): every ``.idx`` header (magic, version, dtype code), offsets against the
``.bin`` size (which must match exactly), the document index, the agreement of the fields
(counts, lengths, pack grouping) and every value; and of the sentence-level Megatron dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from corpus_pipeline.formats import registry
from corpus_pipeline.formats.checks.common import (
    BLOCK,
    CheckResult,
    CheckSpec,
    Counts,
    Tally,
    line,
)
from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.formats.manifest_model import Megatron
from corpus_pipeline.formats.mmap import IndexedDatasetReader, token_dtype


def check_shard(
    spec: CheckSpec, index: int, layout: Sequence[str], res: CheckResult
) -> tuple[Counts, str] | None:
    """Checks one mmap shard (``layout``: every field's ``.bin`` and ``.idx``).

    Returns:
        ((records, instances), ``mmap/<stem>_*``), or None when a file is missing or the
        fields are damaged (the problems are in ``res``).
    """
    out = Path(spec.out_dir)
    if not all((out / rel).is_file() for rel in layout):
        return None  # reported with the other missing files
    stem = registry.shard_stem(spec.name, index)
    counts = _verify_mmap(spec, stem, res)
    return None if counts is None else (counts, str(out / "mmap" / f"{stem}_*"))


def _check_flat_positions(
    t: Tally,
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


def _mmap_dtypes(spec: CheckSpec) -> dict[str, np.dtype]:
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


def _open_indexed(prefix: Path, want: np.dtype, res: CheckResult) -> IndexedDatasetReader | None:
    """Opens and checks one ``.bin``/``.idx`` pair (header, dtype, offsets, exact size)."""
    try:
        r = IndexedDatasetReader(prefix)
    except FormatError as e:
        # The reader's message names the file at fault (.idx or .bin).
        msg = str(e)
        named = msg.startswith((f"{prefix}.idx", f"{prefix}.bin"))
        res.problems.append(msg if named else line(f"{prefix}.idx", msg))
        return None
    idx = f"{prefix}.idx"
    ok = True
    if r.dtype != want:
        res.problems.append(line(idx, f"dtype {r.dtype}, expected {want}"))
        ok = False
    lengths = r.lengths.astype(np.int64)
    item = r.dtype.itemsize
    expect = np.zeros(lengths.shape[0], np.int64)
    if lengths.shape[0] > 1:
        np.cumsum(lengths[:-1] * item, out=expect[1:])
    if not np.array_equal(r.offsets, expect):
        res.problems.append(line(idx, "offsets are not the running sum of the lengths"))
        ok = False
    size = r.bin_path.stat().st_size
    need = int(lengths.sum()) * item
    if size != need:
        res.problems.append(
            line(
                r.bin_path,
                f"{size} bytes but the index describes {need}: "
                f"{'truncated' if size < need else 'trailing bytes'}",
            )
        )
        ok = False
    return r if ok else None


def _verify_mmap(spec: CheckSpec, stem: str, res: CheckResult) -> tuple[int, int] | None:
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
                line(f"{d / stem}_{f}.idx", f"{len(r[f])} sequences, input_ids has {n}")
            )
    if problems:
        return None
    lens = r["input_ids"].lengths.astype(np.int64)
    mlens = r["masked_lm_positions"].lengths.astype(np.int64)
    if not np.array_equal(lens, r["segment_ids"].lengths):
        problems.append(line(where, "input_ids and segment_ids lengths differ"))
    if not np.array_equal(mlens, r["masked_lm_ids"].lengths):
        problems.append(line(where, "masked_lm_positions and masked_lm_ids lengths differ"))
    if (r["next_sentence_labels"].lengths != 1).any():
        problems.append(line(where, "next_sentence_labels must hold one element per instance"))
    t = Tally("instance")
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
                line(
                    f"{d / stem}_pack_lengths.idx", f"covers {int(sizes.sum())} instances, not {n}"
                )
            )
            return None
        if not np.array_equal(pl.document_index, np.arange(records + 1)):
            problems.append(line(f"{d / stem}_pack_lengths.idx", "document index is not 0..packs"))
        tp = Tally("pack")
        tp.add(
            f"pack holds a number of sequences outside 1..{spec.k}",
            (sizes < 1) | (sizes > spec.k),
            0,
        )
        flat, _ = pl.read_range(0, records) if records else (np.zeros(0, np.int64), None)
        flat = np.asarray(flat, np.int64)
        if not np.array_equal(flat, lens):
            problems.append(
                line(f"{d / stem}_pack_lengths.bin", "values differ from the input_ids lengths")
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
                line(
                    f"{d / stem}_{f}.idx",
                    "document index is not "
                    + ("one document per pack" if spec.packed else "one document per instance"),
                )
            )
    v = spec.vocab_size
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
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


def check_megatron(spec: CheckSpec, meta: Megatron, res: CheckResult) -> None:
    """Checks the sentence-level Megatron dataset against its manifest entry (its files'
    listing, presence and sha256 are checked by the caller, with every other file)."""
    out = Path(spec.out_dir)
    prefix = out / meta.prefix
    if not all((out / e.path).is_file() for e in meta.files):
        return
    r = _open_indexed(prefix, token_dtype(spec.vocab_size), res)
    if r is None:
        return
    if len(r) != meta.sentences:
        res.problems.append(
            line(f"{prefix}.idx", f"{len(r)} sentences, the manifest says {meta.sentences}")
        )
    if r.num_documents != meta.documents:
        res.problems.append(
            line(
                f"{prefix}.idx",
                f"{r.num_documents} documents, the manifest says {meta.documents}",
            )
        )
    t = Tally("sentence")
    t.add("empty sentence", r.lengths < 1, 0)
    v = spec.vocab_size
    n = len(r)
    for lo in range(0, n, BLOCK * 16):
        hi = min(n, lo + BLOCK * 16)
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
