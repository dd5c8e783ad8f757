"""Statistics of a dataset folder, instances decoded back to text, and a PNG report.

Works on every format we write (HDF5, TFRecord, mmap; packed or not) and on foreign shards of
the same schemas: a folder *without* a manifest (say a folder of NVIDIA DLE
``*training*.hdf5`` files, Google ``*.tfrecord`` files or Megatron-style ``*_input_ids.idx``
field datasets) is recognised from file names and contents, with S and P taken from the array
shapes (or, where the layout has no fixed width, from the longest record seen).

The statistics are those of ``shared/specs/MASKING.md`` computed from the records alone (the
[MASK] / kept / random split is inferred per masked position: input equal to [MASK] -> mask,
equal to the original -> kept, else random), plus, for packed data, packs, pack sizes and the
packing efficiency. Records are streamed shard by shard; memory holds only the histograms.

Like ``verify``, this reads shards serially on the launcher, not in a Beam pipeline: it is one
pass of I/O whose result is a few numbers on the console.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from corpus_pipeline import resources
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import hdf5, mmap, mmap_bert, registry, tfrecord
from corpus_pipeline.formats.common import FormatError, atomic_output, sha256_file
from corpus_pipeline.formats.example_proto import ExampleDecodeError, decode_example
from corpus_pipeline.formats.manifest import MANIFEST, read_manifest
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.wordpiece import load_vocab_checked

__all__ = [
    "ShardSource",
    "FormatView",
    "DatasetView",
    "Vocabulary",
    "open_dataset",
    "load_vocabulary",
    "dataset_statistics",
    "format_statistics",
    "decode_instance",
    "sample_records",
    "render_text",
    "write_report",
]

_BATCH = 1024
_HDF5_SUFFIXES = (".hdf5", ".h5", ".hdf")
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")


# ------------------------------------------------------------------------------------------
# What a folder holds


@dataclass
class ShardSource:
    """One shard of one format: a display path and a function that opens its records."""

    path: str
    open: Callable[[], Iterable[Instance | Pack]]


@dataclass
class FormatView:
    """The shards of one format in a dataset folder.

    Attributes:
        fmt: ``hdf5``, ``tfrecord`` or ``mmap``.
        packed: True when the records are packs.
        max_seq_length: S (from the manifest, the shapes, or the longest record seen).
        max_predictions: P (same sources).
        max_per_pack: K for packed data, else None.
        shards: The shards, in order.
        derived: True when S/P come from the data rather than from a manifest or fixed widths.
    """

    fmt: str
    packed: bool
    max_seq_length: int
    max_predictions: int
    max_per_pack: int | None
    shards: list[ShardSource]
    derived: bool = False

    def records(self) -> Iterator[Instance | Pack]:
        """Every record, shard by shard."""
        for shard in self.shards:
            yield from shard.open()


@dataclass
class DatasetView:
    """A dataset folder: its manifest (if any) and the formats found."""

    root: Path
    manifest: dict[str, Any] | None
    formats: dict[str, FormatView] = field(default_factory=dict)

    def view(self, fmt: str | None) -> FormatView:
        """The view of ``fmt`` (default: the first format found).

        Raises:
            UserError: The folder has no shards of that format.
        """
        if fmt is None:
            return next(iter(self.formats.values()))
        if fmt not in self.formats:
            raise UserError(
                f"{self.root}: has no {fmt} shards (it has {', '.join(self.formats) or 'none'})"
            )
        return self.formats[fmt]


def _manifest_view(root: Path, manifest: dict[str, Any]) -> DatasetView:
    packed = manifest.get("kind") == "packed"
    try:
        name = str(manifest["name"])
        s, p = int(manifest["max_seq_length"]), int(manifest["max_predictions"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{root / MANIFEST}: incomplete manifest (no {e})") from None
    k = (int(manifest.get("max_per_pack") or 0) or None) if packed else None
    view = DatasetView(root, manifest)
    for fmt in manifest.get("formats", []):
        if fmt not in registry.FORMATS:
            continue
        shards = []
        for shard in registry.shards_with_files(manifest):
            index = int(shard["index"])
            if fmt == "mmap":
                display = str(root / "mmap" / f"{registry.shard_stem(name, index)}_*")
            else:
                rel = registry.resolve_shard_files(str(root), fmt, name, index, packed)[0]
                display = str(root / rel)

            def opener(fmt: str = fmt, index: int = index) -> Iterable[Instance | Pack]:
                return registry.read_shard(fmt, str(root), name, index, packed)

            shards.append(ShardSource(display, opener))
        view.formats[fmt] = FormatView(fmt, packed, s, p, k, shards)
    if not view.formats:
        raise UserError(f"{root / MANIFEST}: lists no shard format we can read")
    return view


def _files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    dirs = [root] + [root / f for f in registry.FORMATS if (root / f).is_dir()]
    out = []
    for d in dirs:
        for p in sorted(d.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes):
                out.append(p)
    return out


def _foreign_hdf5(root: Path) -> FormatView | None:
    files = _files(root, _HDF5_SUFFIXES)
    # DLE's loader keeps the names that contain "training", MLPerf's those that contain "part"
    # (registry.py): do the same when some do.
    kept = [p for p in files if "training" in p.name or "part" in p.name]
    files = kept or files
    if not files:
        return None
    first = files[0]
    try:
        with h5py.File(first, "r") as f:
            packed = "packed_input_len" in f
            if not packed:
                if "input_ids" not in f or "masked_lm_positions" not in f:
                    raise UserError(
                        f"{first}: not a BERT pretraining HDF5 shard (no input_ids / "
                        "masked_lm_positions)"
                    )
                s, p = int(f["input_ids"].shape[1]), int(f["masked_lm_positions"].shape[1])
    except OSError as e:
        raise FormatError(f"{first}: not a readable HDF5 file ({e})") from None
    derived = False
    k: int | None = None
    if packed:
        # Variable-length rows have no fixed width: S, P and K are the largest seen.
        s = p = k = 1
        for path in files:
            with h5py.File(path, "r") as f:
                lens = f["packed_input_len"]
                mlens = f["packed_masked_lm_len"]
                for start in range(0, lens.shape[0], 4 * _BATCH):
                    for row, mrow in zip(
                        lens[start : start + 4 * _BATCH],
                        mlens[start : start + 4 * _BATCH],
                        strict=True,
                    ):
                        s = max(s, int(np.sum(row, dtype=np.int64)))
                        k = max(k, int(row.shape[0]))
                        if mrow.shape[0]:
                            p = max(p, int(mrow.max()))
        derived = True
    reader: Callable[[Path], Iterable[Instance | Pack]] = (
        hdf5.read_packed_hdf5 if packed else hdf5.read_hdf5
    )
    shards = [ShardSource(str(path), functools.partial(reader, path)) for path in files]
    return FormatView("hdf5", packed, s, p, k, shards, derived)


def _foreign_tfrecord(root: Path) -> FormatView | None:
    files = _files(root, _TFRECORD_SUFFIXES)
    if not files:
        return None
    first = next(iter(tfrecord.iter_records(files[0], verify_crc=True)), None)
    if first is None:
        raise UserError(f"{files[0]}: empty TFRecord file: cannot tell its schema")
    try:
        feats = decode_example(first)
    except ExampleDecodeError as e:
        raise FormatError(f"{files[0]}: first record is not a tf.train.Example ({e})") from None

    def width(name: str) -> int:
        value = feats.get(name)
        if not isinstance(value, np.ndarray):
            raise UserError(f"{files[0]}: no {name!r} feature: not a BERT pretraining TFRecord")
        return int(value.shape[0])

    packed = "packed_input_ids" in feats
    k: int | None = None
    if packed:
        s, k = width("packed_input_ids"), width("packed_next_sentence_labels")
        p = width("packed_masked_lm_positions") - k + 1
        reader: Callable[[Path], Iterable[Instance | Pack]] = tfrecord.read_packed_tfrecord
    else:
        s, p = width("input_ids"), width("masked_lm_positions")
        reader = tfrecord.read_tfrecord
    shards = [ShardSource(str(path), functools.partial(reader, path)) for path in files]
    return FormatView("tfrecord", packed, s, p, k, shards)


def _foreign_mmap(root: Path) -> FormatView | None:
    suffix = "_input_ids.idx"
    idx = [p for p in _files(root, (suffix,))]
    if not idx:
        return None
    stems = [(p.parent, p.name[: -len(suffix)]) for p in idx]
    packed = all((d / f"{stem}_pack_lengths.idx").is_file() for d, stem in stems)
    s = p = 1
    k: int | None = 1 if packed else None
    for d, stem in stems:
        ids = mmap.IndexedDatasetReader(d / f"{stem}_input_ids")
        pos = mmap.IndexedDatasetReader(d / f"{stem}_masked_lm_positions")
        if len(ids):
            s = max(s, int(ids.lengths.max()))
        if len(pos):
            p = max(p, int(pos.lengths.max()))
        if packed:
            pl = mmap.IndexedDatasetReader(d / f"{stem}_pack_lengths")
            if len(pl):
                k = max(k or 1, int(pl.lengths.max()))
                for lo in range(0, len(pl), 16 * _BATCH):
                    flat, lens = pl.read_range(lo, min(len(pl), lo + 16 * _BATCH))
                    ends = np.cumsum(lens)
                    if flat.size:
                        sums = np.add.reduceat(flat.astype(np.int64), ends - lens)
                        s = max(s, int(np.max(sums)))
    reader: Callable[[Path, str], Iterable[Instance | Pack]] = (
        mmap_bert.read_mmap_packs if packed else mmap_bert.read_mmap_instances
    )
    shards = [
        ShardSource(str(d / f"{stem}_*"), functools.partial(reader, d, stem)) for d, stem in stems
    ]
    return FormatView("mmap", packed, s, p, k, shards, derived=True)


def open_dataset(out_dir: str | os.PathLike[str]) -> DatasetView:
    """Finds the shards of a folder, from its manifest or, without one, from its files.

    Raises:
        UserError: The folder does not exist or holds no shards we can read.
    """
    root = Path(out_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    if (root / MANIFEST).is_file():
        return _manifest_view(root, read_manifest(str(root)))
    view = DatasetView(root, None)
    for fmt, finder in (
        ("hdf5", _foreign_hdf5),
        ("tfrecord", _foreign_tfrecord),
        ("mmap", _foreign_mmap),
    ):
        found = finder(root)
        if found is not None:
            view.formats[fmt] = found
    if not view.formats:
        raise UserError(
            f"{root}: no manifest.json and no shards (*.hdf5, *.tfrecord, *_input_ids.idx): "
            "pass a dataset folder"
        )
    return view


# ------------------------------------------------------------------------------------------
# Vocabulary


@dataclass
class Vocabulary:
    """The tokens used to decode ids, and where they came from.

    Attributes:
        tokens: Token strings, index = id.
        source: The file read.
        warning: Set when the file does not match the manifest's vocabulary sha256.
    """

    tokens: list[str]
    source: str
    warning: str = ""

    @property
    def mask_id(self) -> int:
        """Id of ``[MASK]``."""
        return self.tokens.index("[MASK]")

    def token(self, i: int) -> str:
        """The token of id ``i`` (``<i>`` when outside the vocabulary)."""
        return self.tokens[i] if 0 <= i < len(self.tokens) else f"<{i}>"


def load_vocabulary(view: DatasetView, vocab: str | os.PathLike[str] | None = None) -> Vocabulary:
    """The vocabulary to decode a dataset with.

    ``vocab`` if given; else the manifest's vocabulary file when it exists (absolute or relative
    to the folder), else the bundled vocabulary of the manifest's ``cased`` flag; the bundled
    uncased vocabulary for a folder without a manifest. A file whose sha256 differs from the
    manifest's gets a warning (decoded text would be wrong).

    Raises:
        UserError: ``vocab`` is missing or not a BERT vocabulary.
    """
    meta = (view.manifest or {}).get("vocab") or {}
    if vocab is not None:
        path = Path(vocab)
    else:
        candidates = []
        if meta.get("file"):
            f = Path(str(meta["file"]))
            candidates += [f, view.root / f] if f.is_absolute() else [view.root / f]
            candidates.append(resources.VOCAB_DIR / f.name)
        candidates.append(resources.default_vocab(bool(meta.get("cased", False))))
        path = next(p for p in candidates if p.is_file() or p == candidates[-1])
    tokens = load_vocab_checked(path)
    warning = ""
    want = meta.get("sha256")
    if want and sha256_file(path) != want:
        warning = (
            f"{path}: sha256 differs from the manifest's vocabulary ({meta.get('file')}): "
            "decoded tokens may be wrong; pass --vocab with the vocabulary used"
        )
    return Vocabulary(tokens, str(path), warning)


# ------------------------------------------------------------------------------------------
# Statistics


def _instances(rec: Instance | Pack) -> list[Instance]:
    return rec.instances if isinstance(rec, Pack) else [rec]


def _check_masked_positions(batch: list[Instance], where: list[tuple[str, int]]) -> None:
    """Raise one line naming the first instance whose masked positions leave its sequence."""
    for inst, (path, row) in zip(batch, where, strict=True):
        pos = inst.masked_lm_positions
        if pos.size and (int(pos.max()) >= len(inst.input_ids) or int(pos.min()) < 0):
            bad = int(pos.max()) if int(pos.max()) >= len(inst.input_ids) else int(pos.min())
            raise FormatError(
                f"{path}: row {row}: masked position {bad} is outside its sequence of "
                f"{len(inst.input_ids)} tokens: not a valid BERT pretraining shard "
                "(run `corpus-pipeline verify` on folders we wrote)"
            )


def format_statistics(
    view: FormatView, mask_id: int, vocab_size: int | None = None
) -> dict[str, Any]:
    """Statistics of one format's records (streamed).

    With ``vocab_size``, token ids (inputs and masked originals) outside ``0..vocab_size-1``
    are counted in ``out_of_vocab_ids`` (``out_of_vocab_first``: where the first one is):
    decoded text shows them as ``<id>``, and a model with that vocabulary cannot embed them.

    Raises:
        FormatError: A masked position outside its sequence, or a pack longer than S.

    Returns:
        ``instances``, ``tokens``, ``mean_length``, ``padding_fraction``,
        ``length_histogram`` (``[i]`` = instances of i tokens, 0..S), ``random_next_fraction``,
        ``masked``, ``masked_per_instance``, ``masked_fraction``, ``mask_token_fraction``,
        ``kept_fraction``, ``random_fraction``, ``masked_count_histogram`` (0..P), ``records``,
        ``shards``; packed data adds ``packs``, ``packing_efficiency``,
        ``pack_size_histogram`` (0..K) and ``pack_length_histogram`` (0..S), and its
        ``padding_fraction`` is that of the packed rows.
    """
    s = view.max_seq_length
    stats = MaskStats(s, mask_id)
    masked_hist = np.zeros(view.max_predictions + 1, np.int64)
    k = view.max_per_pack or 1
    pack_sizes = np.zeros(k + 1, np.int64)
    pack_lengths = np.zeros(s + 1, np.int64)
    records = 0
    batch: list[Instance] = []
    where: list[tuple[str, int]] = []  # (shard path, row) of each instance of the batch
    oov = 0
    oov_first: str | None = None

    def flush() -> None:
        nonlocal masked_hist, oov, oov_first
        if not batch:
            return
        try:
            stats.add_many(batch)
        except IndexError:
            _check_masked_positions(batch, where)
            raise
        if vocab_size is not None:
            ids = np.concatenate([np.concatenate((i.input_ids, i.masked_lm_ids)) for i in batch])
            bad = (ids < 0) | (ids >= vocab_size)
            n_bad = int(np.count_nonzero(bad))
            if n_bad:
                if oov_first is None:
                    first = next(
                        j
                        for j, i in enumerate(batch)
                        if ((i.input_ids >= vocab_size) | (i.input_ids < 0)).any()
                        or ((i.masked_lm_ids >= vocab_size) | (i.masked_lm_ids < 0)).any()
                    )
                    oov_first = f"{where[first][0]} row {where[first][1]}"
                oov += n_bad
        m = np.fromiter((i.masked_lm_positions.shape[0] for i in batch), np.int64, len(batch))
        if m.max(initial=0) >= masked_hist.shape[0]:
            masked_hist = np.pad(masked_hist, (0, int(m.max()) + 1 - masked_hist.shape[0]))
        masked_hist += np.bincount(m, minlength=masked_hist.shape[0])
        batch.clear()
        where.clear()

    for shard in view.shards:
        for row, rec in enumerate(shard.open()):
            records += 1
            members = _instances(rec)
            if view.packed:
                n, length = len(members), sum(len(i) for i in members)
                if n >= pack_sizes.shape[0]:
                    pack_sizes = np.pad(pack_sizes, (0, n + 1 - pack_sizes.shape[0]))
                pack_sizes[n] += 1
                if length > s:
                    raise FormatError(
                        f"{shard.path}: row {row}: a pack of {length} tokens is longer than S={s}"
                    )
                pack_lengths[length] += 1
            batch.extend(members)
            where.extend([(shard.path, row)] * len(members))
            if len(batch) >= _BATCH:
                flush()
    flush()
    d = stats.to_dict()
    for key in ("short_target_fraction", "random_special"):
        d.pop(key, None)  # need the masking counters / a special-token table: not in the shards
    d["masked_count_histogram"] = masked_hist.tolist()
    d["records"] = records
    d["shards"] = len(view.shards)
    d["packs"] = records if view.packed else None
    if vocab_size is not None:
        d["out_of_vocab_ids"] = oov
        d["out_of_vocab_first"] = oov_first
    if view.packed:
        slots = records * s
        eff = d["tokens"] / slots if slots else None
        d["packing_efficiency"] = eff
        d["padding_fraction"] = None if eff is None else 1.0 - eff
        d["pack_size_histogram"] = pack_sizes.tolist()
        d["pack_length_histogram"] = pack_lengths.tolist()
    return d


def dataset_statistics(
    out_dir: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    vocab: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Statistics of a dataset folder, per format.

    Args:
        out_dir: A dataset folder (with or without a manifest).
        fmt: One format (default: every format found).
        vocab: Vocabulary file (to find [MASK]); see :func:`load_vocabulary`.

    Returns:
        ``{"path", "manifest" (bool), "vocab" (file), "formats": {fmt: {"kind",
        "max_seq_length", "max_predictions", "max_per_pack", "derived_widths", **statistics}}}``
        with the statistics of :func:`format_statistics`.

    Raises:
        UserError: No such folder, no shards, unknown format or unreadable shards.
    """
    view = open_dataset(out_dir)
    voc = load_vocabulary(view, vocab)
    fmts = [fmt] if fmt is not None else list(view.formats)
    out: dict[str, Any] = {
        "path": str(out_dir),
        "manifest": view.manifest is not None,
        "vocab": voc.source,
        "formats": {},
    }
    for f in fmts:
        fv = view.view(f)
        out["formats"][f] = {
            "kind": "packed" if fv.packed else "instances",
            "max_seq_length": fv.max_seq_length,
            "max_predictions": fv.max_predictions,
            "max_per_pack": fv.max_per_pack,
            "derived_widths": fv.derived,
            **format_statistics(fv, voc.mask_id, len(voc.tokens)),
        }
    return out


# ------------------------------------------------------------------------------------------
# Decoding


def decode_instance(inst: Instance, vocab: Vocabulary) -> list[str]:
    """The instance's segments as text, masked positions marked.

    ``[MASK→x]``: the input shows [MASK], the original token was ``x``; ``[~y→x]``: the input
    shows a random ``y``; ``[=x]``: the input kept ``x``. WordPiece continuations (``##``) are
    glued to the previous token unless either is a marker. [CLS] and [SEP] are left out.

    Returns:
        One string per segment (A, B).
    """
    ids = np.asarray(inst.input_ids, np.int64)
    seg = np.asarray(inst.segment_ids, np.int64)
    marks = {
        int(p): int(o)
        for p, o in zip(inst.masked_lm_positions.tolist(), inst.masked_lm_ids.tolist(), strict=True)
    }
    mask_id = vocab.mask_id
    segments: dict[int, list[tuple[str, bool]]] = {}
    for pos, tok_id in enumerate(ids.tolist()):
        tok = vocab.token(tok_id)
        if pos in marks:
            orig = vocab.token(marks[pos])
            if tok_id == mask_id:
                text, marked = f"[MASK→{orig}]", True
            elif tok_id == marks[pos]:
                text, marked = f"[={orig}]", True
            else:
                text, marked = f"[~{tok}→{orig}]", True
        elif tok in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        else:
            text, marked = tok, False
        segments.setdefault(int(seg[pos]), []).append((text, marked))
    out = []
    for key in sorted(segments):
        words: list[str] = []
        prev_marked = True
        for text, marked in segments[key]:
            if not marked and not prev_marked and text.startswith("##") and words:
                words[-1] += text[2:]
            else:
                words.append(text)
            prev_marked = marked
        out.append(" ".join(words))
    return out


def sample_records(view: FormatView, n: int) -> list[tuple[str, int, Instance | Pack]]:
    """The first ``n`` records of a format: ``(shard path, row, record)``."""
    out: list[tuple[str, int, Instance | Pack]] = []
    if n <= 0:
        return out
    for shard in view.shards:
        for row, rec in enumerate(shard.open()):
            out.append((shard.path, row, rec))
            if len(out) >= n:
                return out
    return out


# ------------------------------------------------------------------------------------------
# Text rendering


def _bar(value: int, top: int, width: int = 40) -> str:
    if top <= 0 or value <= 0:
        return ""
    n = value / top * width
    return "█" * int(n) + ("▌" if n - int(n) >= 0.5 else "") or "▏"


def histogram_table(hist: Sequence[int], buckets: int = 8, label: str = "length") -> list[str]:
    """A bucketed text histogram: ``lo-hi  count  pct  bar`` per non-empty range."""
    h = np.asarray(hist, np.int64)
    total = int(h.sum())
    if total == 0:
        return ["  (empty)"]
    nz = np.flatnonzero(h)
    lo_all, hi_all = int(nz[0]), int(nz[-1])
    width = max(1, math.ceil((hi_all - lo_all + 1) / buckets))
    rows = []
    for lo in range(lo_all, hi_all + 1, width):
        hi = min(hi_all, lo + width - 1)
        rows.append((lo, hi, int(h[lo : hi + 1].sum())))
    top = max(c for _, _, c in rows)
    lines = []
    for lo, hi, c in rows:
        rng = f"{lo}" if lo == hi else f"{lo}-{hi}"
        lines.append(f"  {label} {rng:>9}  {c:>9}  {c / total:6.1%}  {_bar(c, top)}")
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def render_text(stats: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for one format's statistics."""
    lines = [
        f"  instances            {stats['instances']}"
        + (f" in {stats['packs']} packs" if stats.get("packs") is not None else ""),
        f"  tokens               {stats['tokens']} (mean length {_num(stats['mean_length'])})",
        f"  padding fraction     {_pct(stats['padding_fraction'])}",
    ]
    if stats.get("packs") is not None:
        sizes = stats["pack_size_histogram"]
        lines.append(f"  packing efficiency   {_pct(stats['packing_efficiency'])}")
        lines.append(
            "  sequences per pack   "
            + ", ".join(f"{k}: {c}" for k, c in enumerate(sizes) if k and c)
        )
    lines += [
        f"  NSP random next      {_pct(stats['random_next_fraction'])}",
        f"  masked per instance  {_num(stats['masked_per_instance'])} "
        f"(masked fraction {_pct(stats['masked_fraction'])})",
        f"  masked -> [MASK]     {_pct(stats['mask_token_fraction'])}, kept "
        f"{_pct(stats['kept_fraction'])}, random {_pct(stats['random_fraction'])}",
        "  instance lengths:",
        *histogram_table(stats["length_histogram"]),
        "  masked positions per instance:",
        *histogram_table(stats["masked_count_histogram"], buckets=12, label="masked"),
    ]
    return lines


# ------------------------------------------------------------------------------------------
# PNG report


def write_report(stats: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> Path:
    """Writes the histograms of one format's statistics as a PNG (matplotlib, Agg backend).

    Panels: instance lengths, masked positions per instance and, for packed data, sequences per
    pack. Written atomically.

    Raises:
        UserError: The destination folder does not exist or is not writable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, str, Sequence[int]]] = [
        ("instance length (tokens)", "instances", stats["length_histogram"]),
        ("masked positions per instance", "instances", stats["masked_count_histogram"]),
    ]
    if stats.get("pack_size_histogram") is not None:
        panels.append(("sequences per pack", "packs", stats["pack_size_histogram"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    try:
        for ax, (xlabel, ylabel, hist) in zip(axes[0], panels, strict=True):
            ax.bar(np.arange(len(hist)), hist, width=1.0, color="#4477aa")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        final = Path(path)
        try:
            with atomic_output(final, suffix=".png") as tmp:
                fig.savefig(tmp, format="png", dpi=100)
        except OSError as e:
            raise UserError(
                f"{final}: cannot write the report ({e.strerror or e}): "
                "pass --report PATH or --no-report"
            ) from None
    finally:
        plt.close(fig)
    return final
