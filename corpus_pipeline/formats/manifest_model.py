"""The typed model of ``manifest.json``: what a folder holds, how it was made, its checksums.

One typed model, read and written by every verb: :class:`DatasetManifest` (``mask``, ``pack``,
``run``: instances or packs in shard formats) and :class:`DocumentsManifest` (``extract``,
``run``'s ``docs/``), with their parts (:class:`ShardEntry`, :class:`FileEntry`,
:class:`Megatron`, :class:`Vocab`, :class:`Totals`, :class:`Statistics`, :class:`StatWarning`,
:class:`Loss`, :class:`Fingerprint`, :class:`Signature`). ``to_json`` / ``from_json`` convert
to and from the JSON below; keys a version does not know are kept (``extra``) and written
back, so reading then writing a manifest loses nothing.

Dataset schema (version 1), paths relative to the dataset folder::

    {
      "version": 1,
      "kind": "instances" | "packed",
      "name": "wiki",
      "formats": ["hdf5", "tfrecord", "mmap"],
      "max_seq_length": 128, "max_predictions": 20, "max_per_pack": null | 3,
      "seed": 12345,
      "vocab": {"file": "bert-base-uncased-vocab.txt", "sha256": "...", "size": 30522,
                "cased": false, "strip_accents": true},
      "config": {"mask": {...}, "pack": {...} | null},
      "inputs": ["wiki_00000.txt", ...],
      "source": "wiki-128",           # pack only: the folder it packed
      "shards": [
        {"index": 0, "instances": 1234, "records": 1234,
         "files": {"hdf5": [{"path": "hdf5/wiki_training_00000.hdf5", "sha256": "..."}],
                   "tfrecord": [{"path": "tfrecord/wiki_00000.tfrecord", "sha256": "..."},
                                {"path": "tfrecord/wiki_00000.index", "sha256": "..."}],
                   "mmap": [{"path": "mmap/wiki_00000_input_ids.bin", "sha256": "..."}, ...]},
         "packing": {...}}            # packed only: the shard's packing summary
      ],
      "megatron": null | {"prefix": "mmap/wiki_text_sentence", "documents": n, "sentences": n,
                          "files": [{"path": ..., "sha256": ...}]},
      "totals": {"instances": n, "records": n, "documents": n},
      "statistics": {...},          # masking statistics (README, "mask")
      "warnings": [{"code": ..., "message": ..., "value": ...}],
      "packing": {...},             # packed only: the packing report
      "counters": {...},            # every Beam counter of the run
      "timings": {"elapsed_seconds": 12.3, "strategy_seconds": 0.4},
      "fingerprint": {"sha256": ..., "verb": ..., "version": ..., ...},
      "created": "2026-11-22T03:00:00Z",  # with timings, the only fields that differ between runs
      "signature": {"sha256": "...", "of": "canonical-json-v1"}
    }

``records`` is the number of rows in a shard: instances when unpacked, packs when packed.

Documents schema: ``version``, ``kind: "documents"``, ``format`` (``text`` or ``jsonl``),
``lang`` (of the dumps and other text), ``books_lang`` (when there are books), ``inputs``
(absolute paths), ``shards`` (``{"shard", "path", "documents",
"sha256"}``), ``documents``, ``counters`` (``extract``; not ``run``'s docs/, whose counters are
in the datasets' manifests), ``loss``, ``config``, ``fingerprint``, ``created``, ``signature``.

Reading, writing and signing are in ``formats/manifest.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corpus_pipeline.formats.manifest_fields import (
    IncompleteManifest,
    Model,
    extra_keys,
    get_dict,
    get_typed,
    omitted,
    opt_dict,
    opt_typed,
    unknown_keys,
)

SIGNATURE = "signature"
_SIGNATURE_SCHEME = "canonical-json-v1"


@dataclass
class Signature(Model):
    """The SHA-256 of a manifest's canonical JSON, its ``signature`` left out."""

    sha256: str
    of: str = _SIGNATURE_SCHEME

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Signature:
        """Parse the ``signature`` object."""
        return cls(get_typed(d, "sha256", str, "signature."), str(d.get("of", _SIGNATURE_SCHEME)))


@dataclass
class Fingerprint(Model):
    """What determined a verb's output (``outdir.fingerprint``) and its sha256.

    Attributes:
        sha256: Of the canonical JSON of every other field.
        verb: ``extract``, ``mask``, ``pack`` or ``run``.
        version: corpus-pipeline's version.
        parts: The verb's parts (config, inputs, formats, shards, name, vocab...).
    """

    sha256: str
    verb: str
    version: str
    parts: dict[str, Any] = extra_keys()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Fingerprint:
        """Parse a fingerprint object (as ``outdir.fingerprint`` returns it)."""
        w = "fingerprint."
        return cls(
            get_typed(d, "sha256", str, w), get_typed(d, "verb", str, w),
            str(get_typed(d, "version", str, w)), unknown_keys(cls, d),
        )  # fmt: skip


@dataclass
class FileEntry(Model):
    """One file of a shard, relative to the dataset folder, with its SHA-256."""

    path: str
    sha256: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileEntry:
        """Parse ``{"path", "sha256"}``."""
        return cls(get_typed(d, "path", str, "files[]."), get_typed(d, "sha256", str, "files[]."))


def _files(value: Any, where: str) -> list[FileEntry]:
    if not isinstance(value, list):
        raise IncompleteManifest(where)
    return [FileEntry.from_json(e) for e in value]


@dataclass
class ShardEntry(Model):
    """One shard of a dataset, in every format.

    Attributes:
        index: Its number (0..N-1).
        instances: Instances it holds.
        records: Rows it holds (instances unpacked, packs packed).
        files: Per format, its files (an empty shard has none: ``{}``).
        packing: Packed: the shard's packing summary.
        timings: Wall-clock times of its writer (moved to the manifest's ``timings``).
    """

    index: int
    instances: int
    records: int
    files: dict[str, list[FileEntry]] = field(default_factory=dict)
    packing: dict[str, Any] | None = omitted()
    timings: dict[str, float] | None = omitted()
    extra: dict[str, Any] = extra_keys()

    @property
    def is_empty(self) -> bool:
        """No instance went to this shard (small inputs, many shards): it has no files."""
        return not self.files and not self.instances and not self.records

    def paths(self, fmt: str) -> list[str] | None:
        """The listed paths of ``fmt``, or None when the shard lists none for it."""
        entries = self.files.get(fmt)
        return None if entries is None else [e.path for e in entries]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ShardEntry:
        """Parse one element of ``shards``."""
        w = "shards[]."
        files = opt_dict(d, "files", w) or {}
        return cls(
            index=get_typed(d, "index", int, w),
            instances=get_typed(d, "instances", int, w),
            records=get_typed(d, "records", int, w),
            files={fmt: _files(v, f"{w}files.{fmt}") for fmt, v in files.items()},
            packing=opt_dict(d, "packing", w),
            timings=opt_dict(d, "timings", w),
            extra=unknown_keys(cls, d),
        )


@dataclass
class DocumentShard(Model):
    """One shard of a documents folder: a ``.txt`` or ``.jsonl`` file."""

    shard: int
    path: str
    documents: int
    sha256: str
    extra: dict[str, Any] = extra_keys()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DocumentShard:
        """Parse one element of a documents manifest's ``shards``."""
        w = "shards[]."
        return cls(
            get_typed(d, "shard", int, w), get_typed(d, "path", str, w),
            get_typed(d, "documents", int, w), get_typed(d, "sha256", str, w), unknown_keys(cls, d),
        )  # fmt: skip


@dataclass
class Megatron(Model):
    """The sentence-level Megatron dataset (``mmap/<name>_text_sentence.bin/.idx``)."""

    prefix: str
    documents: int
    sentences: int
    files: list[FileEntry]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Megatron:
        """Parse the ``megatron`` object."""
        w = "megatron."
        return cls(
            get_typed(d, "prefix", str, w), get_typed(d, "documents", int, w),
            get_typed(d, "sentences", int, w), _files(d.get("files"), f"{w}files"),
        )  # fmt: skip


@dataclass
class Vocab(Model):
    """The vocabulary the ids come from.

    Attributes:
        file: Its file name.
        sha256: Of its bytes.
        size: Number of tokens.
        cased: Keeps case (None in manifests written before the field: the trainer then
            compares the sha256 with the bundled cased vocabulary).
        strip_accents: Accents stripped (None before the field).
    """

    file: str
    sha256: str
    size: int
    cased: bool | None = omitted()
    strip_accents: bool | None = omitted()
    extra: dict[str, Any] = extra_keys()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Vocab:
        """Parse the ``vocab`` object."""
        w = "vocab."
        return cls(
            file=str(d.get("file", "")) if isinstance(d, Mapping) else "",
            sha256=get_typed(d, "sha256", str, w),
            size=get_typed(d, "size", int, w),
            cased=opt_typed(d, "cased", bool, w),
            strip_accents=opt_typed(d, "strip_accents", bool, w),
            extra=unknown_keys(cls, d),
        )


@dataclass
class Totals(Model):
    """Sums over the shards (and the documents that went in)."""

    instances: int
    records: int
    documents: int | None = omitted()
    extra: dict[str, Any] = extra_keys()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Totals:
        """Parse the ``totals`` object."""
        w = "totals."
        return cls(
            get_typed(d, "instances", int, w), get_typed(d, "records", int, w),
            opt_typed(d, "documents", int, w), unknown_keys(cls, d),
        )  # fmt: skip


@dataclass
class Statistics(Model):
    """The masking statistics of a dataset (the README's "What the manifest says").

    ``instances``, ``tokens`` and ``masked`` are typed; the fractions, the length histogram
    and the counter-derived values are kept in ``values`` under their names.
    """

    instances: int | None = omitted()
    tokens: int | None = omitted()
    masked: int | None = omitted()
    values: dict[str, Any] = extra_keys()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Statistics:
        """Parse the ``statistics`` object."""
        w = "statistics."
        return cls(
            opt_typed(d, "instances", int, w), opt_typed(d, "tokens", int, w),
            opt_typed(d, "masked", int, w), unknown_keys(cls, d),
        )  # fmt: skip


@dataclass
class StatWarning(Model):
    """A silent statistical failure of a run (``stages.mask_stats.statistical_warnings``)."""

    code: str
    message: str
    value: Any = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StatWarning:
        """Parse one element of ``warnings``."""
        return cls(
            get_typed(d, "code", str, "warnings[]."), get_typed(d, "message", str, "warnings[]."),
            d.get("value"),
        )  # fmt: skip


@dataclass
class Loss(Model):
    """What damage in the input cost (``beam.extract_loss.loss_report``).

    ``share`` is the largest of the page, byte and stream shares; ``share_of`` names it.
    """

    pages_read: int
    pages_dropped: int
    pages_dropped_by_reason: dict[str, int]
    bytes_read: int
    bytes_dropped: int
    streams_read: int
    streams_damaged: int
    streams_damaged_by_problem: dict[str, int]
    share: float
    share_of: str
    max_loss: float

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Loss:
        """Parse the ``loss`` object."""
        w = "loss."
        return cls(
            pages_read=get_typed(d, "pages_read", int, w),
            pages_dropped=get_typed(d, "pages_dropped", int, w),
            pages_dropped_by_reason=get_dict(d, "pages_dropped_by_reason", w),
            bytes_read=get_typed(d, "bytes_read", int, w),
            bytes_dropped=get_typed(d, "bytes_dropped", int, w),
            streams_read=get_typed(d, "streams_read", int, w),
            streams_damaged=get_typed(d, "streams_damaged", int, w),
            streams_damaged_by_problem=get_dict(d, "streams_damaged_by_problem", w),
            share=float(get_typed(d, "share", float, w)),
            share_of=get_typed(d, "share_of", str, w),
            max_loss=float(get_typed(d, "max_loss", float, w)),
        )


@dataclass
class DatasetManifest(Model):
    """The manifest of a dataset of instances or packs (``mask``, ``pack``, ``run``).

    Attributes mirror the JSON keys of the module docstring; ``created`` and ``signature``
    are set by :func:`write_manifest`.
    """

    kind: str
    name: str
    formats: list[str]
    max_seq_length: int
    max_predictions: int
    max_per_pack: int | None
    seed: int
    vocab: Vocab
    config: dict[str, Any]
    shards: list[ShardEntry]
    megatron: Megatron | None
    totals: Totals
    statistics: Statistics
    counters: dict[str, int]
    inputs: list[str] | None = omitted()
    source: str | None = omitted()
    warnings: list[StatWarning] | None = omitted()
    packing: dict[str, Any] | None = omitted()
    timings: dict[str, float] | None = omitted()
    fingerprint: Fingerprint | None = omitted()
    version: int | None = omitted()
    created: str | None = omitted()
    signature: Signature | None = omitted()
    extra: dict[str, Any] = extra_keys()

    @property
    def packed(self) -> bool:
        """Rows are packs (MLPerf / Graphcore schemas)."""
        return self.kind == "packed"

    @property
    def shards_with_files(self) -> list[ShardEntry]:
        """The shards, empty ones left out."""
        return [s for s in self.shards if not s.is_empty]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DatasetManifest:
        """Parse a dataset manifest.

        Raises:
            IncompleteManifest: A field is missing or of the wrong type (its name).
        """
        meg = d.get("megatron")
        fp = d.get("fingerprint")
        sig = d.get(SIGNATURE)
        warnings = d.get("warnings")
        inputs = d.get("inputs")
        formats = get_typed(d, "formats", list)
        if not all(isinstance(f, str) for f in formats):
            raise IncompleteManifest("formats")
        shards = get_typed(d, "shards", list)
        return cls(
            kind=get_typed(d, "kind", str),
            name=get_typed(d, "name", str),
            formats=list(formats),
            max_seq_length=get_typed(d, "max_seq_length", int),
            max_predictions=get_typed(d, "max_predictions", int),
            max_per_pack=opt_typed(d, "max_per_pack", int),
            seed=get_typed(d, "seed", int),
            vocab=Vocab.from_json(get_dict(d, "vocab")),
            config=opt_dict(d, "config") or {},
            shards=[ShardEntry.from_json(s) for s in shards],
            megatron=Megatron.from_json(meg) if meg is not None else None,
            totals=Totals.from_json(get_dict(d, "totals")),
            statistics=Statistics.from_json(opt_dict(d, "statistics") or {}),
            counters=opt_dict(d, "counters") or {},
            inputs=list(inputs) if isinstance(inputs, list) else None,
            source=opt_typed(d, "source", str),
            warnings=[StatWarning.from_json(x) for x in warnings]
            if isinstance(warnings, list)
            else None,
            packing=opt_dict(d, "packing"),
            timings=opt_dict(d, "timings"),
            fingerprint=Fingerprint.from_json(fp) if isinstance(fp, Mapping) else None,
            version=opt_typed(d, "version", int),
            created=opt_typed(d, "created", str),
            signature=Signature.from_json(sig) if isinstance(sig, Mapping) else None,
            extra=unknown_keys(cls, d),
        )


@dataclass
class DocumentsManifest(Model):
    """The manifest of a documents folder (``extract``, ``run``'s ``docs/``)."""

    format: str
    inputs: list[str]
    shards: list[DocumentShard]
    documents: int
    config: dict[str, Any]
    kind: str = "documents"
    lang: str | None = omitted()
    books_lang: str | None = omitted()
    counters: dict[str, int] | None = omitted()
    loss: Loss | None = omitted()
    fingerprint: Fingerprint | None = omitted()
    version: int | None = omitted()
    created: str | None = omitted()
    signature: Signature | None = omitted()
    extra: dict[str, Any] = extra_keys()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DocumentsManifest:
        """Parse a documents manifest.

        Raises:
            IncompleteManifest: A field is missing or of the wrong type (its name).
        """
        loss = d.get("loss")
        fp = d.get("fingerprint")
        sig = d.get(SIGNATURE)
        return cls(
            format=str(d.get("format") or "text"),
            inputs=list(d.get("inputs") or []),
            shards=[DocumentShard.from_json(s) for s in get_typed(d, "shards", list)],
            documents=get_typed(d, "documents", int),
            config=opt_dict(d, "config") or {},
            lang=opt_typed(d, "lang", str),
            books_lang=opt_typed(d, "books_lang", str),
            counters=opt_dict(d, "counters"),
            loss=Loss.from_json(loss) if isinstance(loss, Mapping) else None,
            fingerprint=Fingerprint.from_json(fp) if isinstance(fp, Mapping) else None,
            version=opt_typed(d, "version", int),
            created=opt_typed(d, "created", str),
            signature=Signature.from_json(sig) if isinstance(sig, Mapping) else None,
            extra=unknown_keys(cls, d),
        )


Manifest = DatasetManifest | DocumentsManifest


def from_json(d: Mapping[str, Any]) -> Manifest:
    """The model of a manifest's JSON object (documents or dataset, by ``kind``).

    Raises:
        IncompleteManifest: A field is missing or of the wrong type (its name).
    """
    if d.get("kind") == "documents":
        return DocumentsManifest.from_json(d)
    return DatasetManifest.from_json(d)


__all__ = [
    "SIGNATURE",
    "DatasetManifest",
    "DocumentShard",
    "DocumentsManifest",
    "FileEntry",
    "Fingerprint",
    "Loss",
    "Manifest",
    "Megatron",
    "ShardEntry",
    "Signature",
    "StatWarning",
    "Statistics",
    "Totals",
    "Vocab",
    "from_json",
]
