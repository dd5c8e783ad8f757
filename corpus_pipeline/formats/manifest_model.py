"""The typed model of ``manifest.json``: what a folder holds, how it was made, its checksums.

One typed model, read and written by every verb: :class:`DatasetManifest` (``mask``, ``pack``,
``run``: instances or packs in shard formats) and :class:`DocumentsManifest` (``extract``,
``run``'s ``docs/``), with their parts (:class:`ShardEntry`, :class:`FileEntry`,
:class:`Megatron`, :class:`Vocab`, :class:`Totals`, :class:`Statistics`, :class:`StatWarning`,
:class:`Loss`, :class:`Fingerprint`, :class:`Signature`). ``to_json`` / ``from_json`` convert
to and from the JSON below by the fields' names and types (``formats/manifest_fields.py``), so a
class declares only its fields and what is special about them; keys a version does not know
are kept (``extra``) and written back, so reading then writing a manifest loses nothing.

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

from corpus_pipeline.formats.manifest_fields import Model, extra_keys, if_absent, omitted

SIGNATURE = "signature"
_SIGNATURE_SCHEME = "canonical-json-v1"


@dataclass
class Signature(Model):
    """The SHA-256 of a manifest's canonical JSON, its ``signature`` left out."""

    sha256: str
    of: str = _SIGNATURE_SCHEME


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


@dataclass
class FileEntry(Model):
    """One file of a shard, relative to the dataset folder, with its SHA-256."""

    path: str
    sha256: str


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


@dataclass
class DocumentShard(Model):
    """One shard of a documents folder: a ``.txt`` or ``.jsonl`` file."""

    shard: int
    path: str
    documents: int
    sha256: str
    extra: dict[str, Any] = extra_keys()


@dataclass
class Megatron(Model):
    """The sentence-level Megatron dataset (``mmap/<name>_text_sentence.bin/.idx``)."""

    prefix: str
    documents: int
    sentences: int
    files: list[FileEntry]


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

    file: str = field(metadata=if_absent(""))
    sha256: str
    size: int
    cased: bool | None = omitted()
    strip_accents: bool | None = omitted()
    extra: dict[str, Any] = extra_keys()


@dataclass
class Totals(Model):
    """Sums over the shards (and the documents that went in)."""

    instances: int
    records: int
    documents: int | None = omitted()
    extra: dict[str, Any] = extra_keys()


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


@dataclass
class StatWarning(Model):
    """A silent statistical failure of a run (``stages.mask_stats.statistical_warnings``)."""

    code: str
    message: str
    value: Any = None


@dataclass
class Loss(Model):
    """What damage in the input cost (``beam.extract_loss.loss_report``).

    ``share`` is the largest of the page, byte, stream and block shares; ``share_of`` names
    it. The block fields are there when a dump was read by bz2 blocks (a single-stream dump):
    a block that does not decode loses the pages in it, which nobody can count;
    ``pages_lost_estimate`` is their number at the mean pages per block of the others.
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
    blocks_read: int | None = omitted()
    blocks_damaged: int | None = omitted()
    pages_lost_estimate: int | None = omitted()


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
    config: dict[str, Any] = field(metadata=if_absent({}))
    shards: list[ShardEntry]
    megatron: Megatron | None
    totals: Totals
    statistics: Statistics = field(metadata=if_absent({}))
    counters: dict[str, int] = field(metadata=if_absent({}))
    inputs: list[str] | None = omitted(tolerant=True)
    source: str | None = omitted()
    warnings: list[StatWarning] | None = omitted(tolerant=True)
    packing: dict[str, Any] | None = omitted()
    timings: dict[str, float] | None = omitted()
    fingerprint: Fingerprint | None = omitted(tolerant=True)
    version: int | None = omitted()
    created: str | None = omitted()
    signature: Signature | None = omitted(tolerant=True)
    extra: dict[str, Any] = extra_keys()

    @property
    def packed(self) -> bool:
        """Rows are packs (MLPerf / Graphcore schemas)."""
        return self.kind == "packed"

    @property
    def shards_with_files(self) -> list[ShardEntry]:
        """The shards, empty ones left out."""
        return [s for s in self.shards if not s.is_empty]


@dataclass
class DocumentsManifest(Model):
    """The manifest of a documents folder (``extract``, ``run``'s ``docs/``)."""

    format: str = field(metadata=if_absent("text"))
    inputs: list[str] = field(metadata=if_absent([]))
    shards: list[DocumentShard]
    documents: int
    config: dict[str, Any] = field(metadata=if_absent({}))
    kind: str = "documents"
    lang: str | None = omitted()
    books_lang: str | None = omitted()
    counters: dict[str, int] | None = omitted()
    loss: Loss | None = omitted(tolerant=True)
    fingerprint: Fingerprint | None = omitted(tolerant=True)
    version: int | None = omitted()
    created: str | None = omitted()
    signature: Signature | None = omitted(tolerant=True)
    extra: dict[str, Any] = extra_keys()


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
