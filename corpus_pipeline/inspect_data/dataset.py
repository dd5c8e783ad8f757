"""What a dataset folder holds: its formats, their shards and the vocabulary to decode them.

Works on every format we write (HDF5, TFRecord, mmap; packed or not) and on foreign shards of
the same schemas: a folder *without* a manifest (say a folder of NVIDIA DLE
``*training*.hdf5`` files, Google ``*.tfrecord`` files or Megatron-style ``*_input_ids.idx``
field datasets) is recognised from file names and contents, with S and P taken from the array
shapes (or, where the layout has no fixed width, from the longest record seen).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from corpus_pipeline import resources
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import hdf5, mmap, mmap_bert, registry, tfrecord
from corpus_pipeline.formats.common import FormatError, sha256_file
from corpus_pipeline.formats.example_proto import ExampleDecodeError, decode_example
from corpus_pipeline.formats.manifest import MANIFEST, load_dataset_manifest, load_manifest
from corpus_pipeline.formats.manifest_model import DatasetManifest, Loss, Vocab
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_with_sha256

__all__ = [
    "ShardSource",
    "FormatView",
    "DatasetView",
    "Vocabulary",
    "open_dataset",
    "load_vocabulary",
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
    manifest: DatasetManifest | None
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


def _manifest_view(root: Path, manifest: DatasetManifest) -> DatasetView:
    packed = manifest.packed
    name, s, p = manifest.name, manifest.max_seq_length, manifest.max_predictions
    k = (manifest.max_per_pack or None) if packed else None
    view = DatasetView(root, manifest)
    for fmt in manifest.formats:
        if fmt not in registry.FORMATS:
            continue
        shards = []
        for shard in manifest.shards_with_files:
            index = shard.index
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
        return _manifest_view(root, load_dataset_manifest(str(root)))
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


def input_losses(view: DatasetView) -> list[tuple[str, Loss]]:
    """The ``loss`` section of the documents a ``run`` dataset was made from.

    A ``run`` folder holds ``run.json`` (its datasets by folder: ``docs``, ``unpacked``,
    ``packed``, ``validation/...``) beside or above the dataset: what damage in the dumps
    cost the dataset is in the ``docs`` manifest. Empty for other datasets (``mask`` of a
    documents folder records only its files' names and sha256).
    """
    for up in (view.root.parent, view.root.parent.parent):
        run = up / "run.json"
        if not run.is_file():
            continue
        try:
            docs = json.loads(run.read_text(encoding="utf-8")).get("datasets", {}).get("docs")
            manifest = load_manifest(str(up / docs), check_signature=False) if docs else None
        except (UserError, OSError, ValueError, AttributeError):
            return []  # moved, removed or edited since: nothing to say
        loss = getattr(manifest, "loss", None)
        return [(str(up / str(docs)), loss)] if isinstance(loss, Loss) else []
    return []


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

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Token -> id (the first id of a token listed twice)."""
        out: dict[str, int] = {}
        for i, t in enumerate(self.tokens):
            out.setdefault(t, i)
        return out

    def token(self, i: int) -> str:
        """The token of id ``i`` (``<i>`` when outside the vocabulary)."""
        return self.tokens[i] if 0 <= i < len(self.tokens) else f"<{i}>"


def _same_vocab_nearby(root: Path, meta: Vocab | None) -> Path | None:
    """The manifest's vocabulary file by its name in the dataset folder or the two above it
    (``vocab --output out/ja-vocab.txt`` then ``mask --output out/ja-128``), only when its
    sha256 is the manifest's: a trained vocabulary is found without ``--vocab``."""
    if meta is None or not meta.file or not meta.sha256:
        return None
    name = Path(meta.file).name
    for folder in (root, root.parent, root.parent.parent):
        candidate = folder / name
        if candidate.is_file() and sha256_file(candidate) == meta.sha256:
            return candidate
    return None


def load_vocabulary(view: DatasetView, vocab: str | os.PathLike[str] | None = None) -> Vocabulary:
    """The vocabulary to decode a dataset with.

    ``vocab`` if given; else the manifest's vocabulary file, by its name, in the folder or the
    two above it with the manifest's sha256; else the file when it exists (absolute or relative
    to the folder), else the bundled vocabulary of the manifest's ``cased`` flag; the bundled
    uncased vocabulary for a folder without a manifest. A file whose sha256 differs from the
    manifest's gets a warning (decoded text would be wrong).

    Raises:
        UserError: ``vocab`` is missing or not a BERT vocabulary.
    """
    meta = view.manifest.vocab if view.manifest is not None else None
    if vocab is not None:
        path = Path(vocab)
    else:
        candidates = []
        if meta is not None and meta.file:
            f = Path(meta.file)
            candidates += [f, view.root / f] if f.is_absolute() else [view.root / f]
            candidates.append(resources.VOCAB_DIR / f.name)
        candidates.append(resources.default_vocab(bool(meta is not None and meta.cased)))
        path = _same_vocab_nearby(view.root, meta) or next(
            p for p in candidates if p.is_file() or p == candidates[-1]
        )
    tokens, sha256 = load_vocab_with_sha256(path)
    warning = ""
    if meta is not None and meta.sha256 and sha256 != meta.sha256:
        warning = (
            f"{path}: sha256 differs from the manifest's vocabulary ({meta.file}): "
            "decoded tokens may be wrong; pass --vocab with the vocabulary used"
        )
    return Vocabulary(tokens, str(path), warning)
