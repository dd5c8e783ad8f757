"""A dataset folder as the trainer sees it: its manifest's facts, its vocabulary, its records.

Records come from the format readers of ``corpus_pipeline.formats`` (HDF5, TFRecord, mmap;
:class:`~corpus_pipeline.records.Instance` rows or :class:`~corpus_pipeline.records.Pack` rows),
a range of one shard at a time, never from whole-file loads (:func:`read_records`). A packed
dataset can be read one instance per row (``open_dataset(unpack=True)``): the same instances
unpacked, to measure what packing buys. Batching, the work split and dynamic masking are
``data.py``'s.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus_pipeline import resources
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.common import FormatError, sha256_file
from corpus_pipeline.formats.manifest import load_dataset_manifest
from corpus_pipeline.formats.manifest_model import Vocab
from corpus_pipeline.records import Instance, Pack


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs from a dataset folder's manifest.

    Attributes:
        path: The folder.
        name: Shard name prefix.
        fmt: The format read (``hdf5``, ``tfrecord`` or ``mmap``).
        packed: Rows are packs.
        max_seq_length: S.
        max_predictions: P (per sequence).
        max_per_pack: K (1 when unpacked).
        vocab_sha256: sha256 of the vocabulary the ids come from.
        vocab_size: Its number of tokens.
        vocab_file: Its file name as recorded.
        shards: ``(index, records)`` of every shard, in manifest order.
        megatron_prefix: Relative prefix of the sentence-level dataset, or None.
        mask_config: The manifest's masking configuration (dynamic masking reuses it).
        source_packed: The shards are in a packed schema (True with ``packed`` False when a
            packed dataset is read one instance per row: ``open_dataset(unpack=True)``).
        vocab_cased: The vocabulary keeps case and accents (manifest ``vocab.cased``).
    """

    path: str
    name: str
    fmt: str
    packed: bool
    max_seq_length: int
    max_predictions: int
    max_per_pack: int
    vocab_sha256: str
    vocab_size: int
    vocab_file: str
    shards: tuple[tuple[int, int], ...]
    megatron_prefix: str | None = None
    mask_config: dict[str, Any] = field(default_factory=dict)
    source_packed: bool = False
    vocab_cased: bool = False

    @property
    def masked_width(self) -> int:
        """M: masked slots per row (P unpacked, P + K - 1 packed; README, "Output layout")."""
        return self.max_predictions + self.max_per_pack - 1

    @property
    def num_records(self) -> int:
        return sum(n for _, n in self.shards)

    def signature(self) -> dict[str, Any]:
        """The facts a model trained on this data depends on (stored in checkpoints)."""
        return {
            "vocab_sha256": self.vocab_sha256,
            "vocab_size": self.vocab_size,
            "max_seq_length": self.max_seq_length,
            "max_predictions": self.max_predictions,
        }


def open_dataset(
    path: str | os.PathLike[str], fmt: str | None = None, *, unpack: bool = False
) -> DatasetInfo:
    """Read a dataset folder's manifest and pick the format to train from.

    Args:
        path: A folder written by ``corpus-pipeline mask``/``pack``/``run``.
        fmt: Format to read; default: the first one the manifest lists.
        unpack: Read a packed dataset one instance per row (the same instances unpacked:
            what packing buys, measured on identical data). No effect on unpacked data.

    Raises:
        UserError: No/invalid manifest, or the requested format is not in the folder.
    """
    out = str(path)
    m = load_dataset_manifest(out)
    where = os.path.join(out, "manifest.json")
    formats = list(m.formats)
    if fmt is None:
        if not formats:
            raise UserError(f"{where}: lists no shard formats: regenerate the dataset")
        fmt = formats[0]
    elif fmt not in registry.FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(registry.FORMATS)}")
    elif fmt not in formats:
        raise UserError(
            f"{out}: has no {fmt} shards (it has {', '.join(formats) or 'none'}); "
            f"pass --format {formats[0] if formats else '...'}"
        )
    source_packed = m.packed
    packed = source_packed and not unpack
    return DatasetInfo(
        path=out,
        name=m.name,
        fmt=fmt,
        packed=packed,
        max_seq_length=m.max_seq_length,
        max_predictions=m.max_predictions,
        max_per_pack=(m.max_per_pack or 1) if packed else 1,
        vocab_sha256=m.vocab.sha256,
        vocab_size=m.vocab.size,
        vocab_file=m.vocab.file,
        shards=tuple(
            (s.index, s.instances if source_packed and unpack else s.records) for s in m.shards
        ),
        megatron_prefix=m.megatron.prefix if m.megatron is not None else None,
        mask_config=dict(m.config.get("mask") or {}),
        source_packed=source_packed,
        vocab_cased=_cased(m.vocab),
    )


def _cased(vocab: Vocab) -> bool:
    """The manifest's ``vocab.cased``; older manifests: cased iff it is the bundled cased one."""
    if vocab.cased is not None:
        return vocab.cased
    return vocab.sha256 == sha256_file(resources.CASED_VOCAB)


def check_signature(info: DatasetInfo, expected: dict[str, Any], what: str) -> None:
    """Refuse data whose vocabulary or S/P differ from what a model/checkpoint expects.

    Args:
        info: The dataset.
        expected: A :meth:`DatasetInfo.signature` (keys may be missing: not checked).
        what: Who expects it, for the message (``checkpoint ckpt/step_00000100.pt``).

    Raises:
        UserError: One line naming the mismatch and the fix.
    """
    got = info.signature()
    if "vocab_sha256" in expected and (
        expected["vocab_sha256"] != got["vocab_sha256"]
        or int(expected.get("vocab_size", got["vocab_size"])) != got["vocab_size"]
    ):
        raise UserError(
            f"{info.path}: vocabulary {got['vocab_sha256'][:12]} ({got['vocab_size']} tokens) "
            f"does not match the {what}'s {str(expected['vocab_sha256'])[:12]} "
            f"({expected.get('vocab_size')} tokens): use data encoded with the same vocab.txt"
        )
    if "vocab_size" in expected and int(expected["vocab_size"]) != got["vocab_size"]:
        raise UserError(
            f"{info.path}: vocabulary has {got['vocab_size']} tokens but the {what} has "
            f"{expected['vocab_size']}: use data encoded with the same vocab.txt"
        )
    for key, flag in (("max_seq_length", "S"), ("max_predictions", "P")):
        if key in expected and int(expected[key]) != got[key]:
            raise UserError(
                f"{info.path}: {key} {flag}={got[key]} does not match the {what}'s "
                f"{flag}={expected[key]}: use data made with --{key.replace('_', '-')} "
                f"{expected[key]}, or start a new run"
            )


def resolve_vocab(info: DatasetInfo, vocab: str | os.PathLike[str] | None = None) -> Path:
    """The vocabulary file of a dataset, checked against the manifest's sha256 and size.

    Looks at ``vocab`` when given, else the manifest's file name inside the dataset folder and
    among the bundled vocabularies.

    Raises:
        UserError: Not found, or a file whose content differs from the manifest's vocabulary.
    """
    if vocab is not None:
        candidates = [Path(vocab)]
    else:
        base = os.path.basename(info.vocab_file)
        candidates = [Path(info.path) / base, resources.VOCAB_DIR / base] if base else []
    for p in candidates:
        if not p.is_file():
            continue
        digest = sha256_file(p)
        if digest != info.vocab_sha256:
            if vocab is None:
                continue
            raise UserError(
                f"{p}: sha256 {digest[:12]} is not the dataset's vocabulary "
                f"{info.vocab_sha256[:12]} ({info.vocab_size} tokens): pass the vocab.txt "
                "the data was made with"
            )
        return p
    if vocab is not None:
        raise UserError(f"{vocab}: no such vocabulary file")
    raise UserError(
        f"{info.path}: cannot find its vocabulary {info.vocab_file!r} "
        f"(sha256 {info.vocab_sha256[:12]}): pass --vocab <vocab.txt>"
    )


def read_records(
    info: DatasetInfo, index: int, n: int, a: int, b: int
) -> Iterator[Instance | Pack]:
    """Records ``a`` to ``b`` (exclusive) of shard ``index``, which the manifest says holds
    ``n`` (instances, one per record, when a packed dataset is read unpacked).

    Raises:
        FormatError: The shard ends before ``b`` (truncated shard or stale manifest).
    """
    reader = registry.read_shard(info.fmt, info.path, info.name, index, info.source_packed)
    records: Iterable[Any] = reader
    if info.source_packed and not info.packed:
        records = registry.instances_of(reader)
    got = a
    for rec in itertools.islice(iter(records), a, b):
        got += 1
        yield rec
    if got != b:
        rel = registry.resolve_shard_files(
            info.path, info.fmt, info.name, index, info.source_packed
        )[0]
        what = "instances" if info.source_packed and not info.packed else "records"
        raise FormatError(
            f"{os.path.join(info.path, rel)}: {got} {what} but the manifest says {n}: "
            "truncated shard or stale manifest; regenerate the dataset"
        )
