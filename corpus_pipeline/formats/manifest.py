"""``manifest.json``: what a dataset folder holds, how it was made, and every shard's checksum.

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

``signature.sha256`` is the SHA-256 of the canonical JSON (sorted keys, no whitespace, ASCII)
of every other field. :func:`write_manifest` sets it; :func:`read_manifest` refuses a manifest
whose content no longer matches it (a hand edit that drops a format, changes the seed, the
statistics or a shard's sha256 would otherwise be trusted by ``verify``, ``pack`` and the
trainer). Manifests written before signatures existed (no ``signature``) are still read;
``verify`` warns about them. A manifest without ``version`` is read as version 1 (the only
schema so far); one of a newer version is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output

MANIFEST = "manifest.json"
VERSION = 1
SIGNATURE = "signature"
_SIGNATURE_SCHEME = "canonical-json-v1"

_T = TypeVar("_T")


class IncompleteManifest(ValueError):
    """A manifest misses a field the model needs, or holds a value of the wrong type."""


def _omit() -> Any:
    """A field left out of the JSON when None (written only by some verbs or versions)."""
    return field(default=None, metadata={"omit_none": True})


def _extra() -> Any:
    return field(default_factory=dict, metadata={"extra": True})


def _jsonify(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_jsonify(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonify(v) for k, v in value.items()}
    return value


class _Model:
    """``to_json`` for the dataclasses below: fields in order, ``None`` left out where the
    field says so, unknown keys (``extra``) written back."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this part (plain dicts, lists and scalars)."""
        out: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("extra"):
                extra = value
            elif value is not None or not f.metadata.get("omit_none"):
                out[f.name] = _jsonify(value)
        return {**extra, **out}


def _known(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if not f.metadata.get("extra"))


def _rest(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``d`` that ``cls`` has no field for (kept as they are)."""
    known = _known(cls)
    return {k: v for k, v in d.items() if k not in known}


def _get(d: Mapping[str, Any], key: str, kind: type[_T], where: str = "") -> _T:
    """``d[key]`` checked to be a ``kind`` (an int is not a bool, a float may be an int)."""
    if not isinstance(d, Mapping) or key not in d:
        raise IncompleteManifest(f"{where}{key}")
    value = d[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise IncompleteManifest(f"{where}{key}")
    return value  # type: ignore[no-any-return]


def _opt(d: Mapping[str, Any], key: str, kind: type[_T], where: str = "") -> _T | None:
    return None if d.get(key) is None else _get(d, key, kind, where)


def _dict(d: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    return dict(_get(d, key, dict, where))


def _opt_dict(d: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any] | None:
    return None if d.get(key) is None else _dict(d, key, where)


@dataclass
class Signature(_Model):
    """The SHA-256 of a manifest's canonical JSON, its ``signature`` left out."""

    sha256: str
    of: str = _SIGNATURE_SCHEME

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Signature:
        """Parse the ``signature`` object."""
        return cls(_get(d, "sha256", str, "signature."), str(d.get("of", _SIGNATURE_SCHEME)))


@dataclass
class Fingerprint(_Model):
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
    parts: dict[str, Any] = _extra()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Fingerprint:
        """Parse a fingerprint object (as ``outdir.fingerprint`` returns it)."""
        w = "fingerprint."
        return cls(
            _get(d, "sha256", str, w), _get(d, "verb", str, w), str(_get(d, "version", str, w)),
            _rest(cls, d),
        )  # fmt: skip


@dataclass
class FileEntry(_Model):
    """One file of a shard, relative to the dataset folder, with its SHA-256."""

    path: str
    sha256: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileEntry:
        """Parse ``{"path", "sha256"}``."""
        return cls(_get(d, "path", str, "files[]."), _get(d, "sha256", str, "files[]."))


def _files(value: Any, where: str) -> list[FileEntry]:
    if not isinstance(value, list):
        raise IncompleteManifest(where)
    return [FileEntry.from_json(e) for e in value]


@dataclass
class ShardEntry(_Model):
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
    packing: dict[str, Any] | None = _omit()
    timings: dict[str, float] | None = _omit()
    extra: dict[str, Any] = _extra()

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
        files = _opt_dict(d, "files", w) or {}
        return cls(
            index=_get(d, "index", int, w),
            instances=_get(d, "instances", int, w),
            records=_get(d, "records", int, w),
            files={fmt: _files(v, f"{w}files.{fmt}") for fmt, v in files.items()},
            packing=_opt_dict(d, "packing", w),
            timings=_opt_dict(d, "timings", w),
            extra=_rest(cls, d),
        )


@dataclass
class DocumentShard(_Model):
    """One shard of a documents folder: a ``.txt`` or ``.jsonl`` file."""

    shard: int
    path: str
    documents: int
    sha256: str
    extra: dict[str, Any] = _extra()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DocumentShard:
        """Parse one element of a documents manifest's ``shards``."""
        w = "shards[]."
        return cls(
            _get(d, "shard", int, w), _get(d, "path", str, w), _get(d, "documents", int, w),
            _get(d, "sha256", str, w), _rest(cls, d),
        )  # fmt: skip


@dataclass
class Megatron(_Model):
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
            _get(d, "prefix", str, w), _get(d, "documents", int, w), _get(d, "sentences", int, w),
            _files(d.get("files"), f"{w}files"),
        )  # fmt: skip


@dataclass
class Vocab(_Model):
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
    cased: bool | None = _omit()
    strip_accents: bool | None = _omit()
    extra: dict[str, Any] = _extra()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Vocab:
        """Parse the ``vocab`` object."""
        w = "vocab."
        return cls(
            file=str(d.get("file", "")) if isinstance(d, Mapping) else "",
            sha256=_get(d, "sha256", str, w),
            size=_get(d, "size", int, w),
            cased=_opt(d, "cased", bool, w),
            strip_accents=_opt(d, "strip_accents", bool, w),
            extra=_rest(cls, d),
        )


@dataclass
class Totals(_Model):
    """Sums over the shards (and the documents that went in)."""

    instances: int
    records: int
    documents: int | None = _omit()
    extra: dict[str, Any] = _extra()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Totals:
        """Parse the ``totals`` object."""
        w = "totals."
        return cls(
            _get(d, "instances", int, w), _get(d, "records", int, w),
            _opt(d, "documents", int, w), _rest(cls, d),
        )  # fmt: skip


@dataclass
class Statistics(_Model):
    """The masking statistics of a dataset (the README's "What the manifest says").

    ``instances``, ``tokens`` and ``masked`` are typed; the fractions, the length histogram
    and the counter-derived values are kept in ``values`` under their names.
    """

    instances: int | None = _omit()
    tokens: int | None = _omit()
    masked: int | None = _omit()
    values: dict[str, Any] = _extra()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Statistics:
        """Parse the ``statistics`` object."""
        w = "statistics."
        return cls(
            _opt(d, "instances", int, w), _opt(d, "tokens", int, w), _opt(d, "masked", int, w),
            _rest(cls, d),
        )  # fmt: skip


@dataclass
class StatWarning(_Model):
    """A silent statistical failure of a run (``stages.mask_stats.statistical_warnings``)."""

    code: str
    message: str
    value: Any = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StatWarning:
        """Parse one element of ``warnings``."""
        return cls(
            _get(d, "code", str, "warnings[]."), _get(d, "message", str, "warnings[]."),
            d.get("value"),
        )  # fmt: skip


@dataclass
class Loss(_Model):
    """What damage in the input cost (``beam.extract.loss_report``).

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
            pages_read=_get(d, "pages_read", int, w),
            pages_dropped=_get(d, "pages_dropped", int, w),
            pages_dropped_by_reason=_dict(d, "pages_dropped_by_reason", w),
            bytes_read=_get(d, "bytes_read", int, w),
            bytes_dropped=_get(d, "bytes_dropped", int, w),
            streams_read=_get(d, "streams_read", int, w),
            streams_damaged=_get(d, "streams_damaged", int, w),
            streams_damaged_by_problem=_dict(d, "streams_damaged_by_problem", w),
            share=float(_get(d, "share", float, w)),
            share_of=_get(d, "share_of", str, w),
            max_loss=float(_get(d, "max_loss", float, w)),
        )


@dataclass
class DatasetManifest(_Model):
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
    inputs: list[str] | None = _omit()
    source: str | None = _omit()
    warnings: list[StatWarning] | None = _omit()
    packing: dict[str, Any] | None = _omit()
    timings: dict[str, float] | None = _omit()
    fingerprint: Fingerprint | None = _omit()
    version: int | None = _omit()
    created: str | None = _omit()
    signature: Signature | None = _omit()
    extra: dict[str, Any] = _extra()

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
        formats = _get(d, "formats", list)
        if not all(isinstance(f, str) for f in formats):
            raise IncompleteManifest("formats")
        shards = _get(d, "shards", list)
        return cls(
            kind=_get(d, "kind", str),
            name=_get(d, "name", str),
            formats=list(formats),
            max_seq_length=_get(d, "max_seq_length", int),
            max_predictions=_get(d, "max_predictions", int),
            max_per_pack=_opt(d, "max_per_pack", int),
            seed=_get(d, "seed", int),
            vocab=Vocab.from_json(_dict(d, "vocab")),
            config=_opt_dict(d, "config") or {},
            shards=[ShardEntry.from_json(s) for s in shards],
            megatron=Megatron.from_json(meg) if meg is not None else None,
            totals=Totals.from_json(_dict(d, "totals")),
            statistics=Statistics.from_json(_opt_dict(d, "statistics") or {}),
            counters=_opt_dict(d, "counters") or {},
            inputs=list(inputs) if isinstance(inputs, list) else None,
            source=_opt(d, "source", str),
            warnings=[StatWarning.from_json(x) for x in warnings]
            if isinstance(warnings, list)
            else None,
            packing=_opt_dict(d, "packing"),
            timings=_opt_dict(d, "timings"),
            fingerprint=Fingerprint.from_json(fp) if isinstance(fp, Mapping) else None,
            version=_opt(d, "version", int),
            created=_opt(d, "created", str),
            signature=Signature.from_json(sig) if isinstance(sig, Mapping) else None,
            extra=_rest(cls, d),
        )


@dataclass
class DocumentsManifest(_Model):
    """The manifest of a documents folder (``extract``, ``run``'s ``docs/``)."""

    format: str
    inputs: list[str]
    shards: list[DocumentShard]
    documents: int
    config: dict[str, Any]
    kind: str = "documents"
    lang: str | None = _omit()
    books_lang: str | None = _omit()
    counters: dict[str, int] | None = _omit()
    loss: Loss | None = _omit()
    fingerprint: Fingerprint | None = _omit()
    version: int | None = _omit()
    created: str | None = _omit()
    signature: Signature | None = _omit()
    extra: dict[str, Any] = _extra()

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
            shards=[DocumentShard.from_json(s) for s in _get(d, "shards", list)],
            documents=_get(d, "documents", int),
            config=_opt_dict(d, "config") or {},
            lang=_opt(d, "lang", str),
            books_lang=_opt(d, "books_lang", str),
            counters=_opt_dict(d, "counters"),
            loss=Loss.from_json(loss) if isinstance(loss, Mapping) else None,
            fingerprint=Fingerprint.from_json(fp) if isinstance(fp, Mapping) else None,
            version=_opt(d, "version", int),
            created=_opt(d, "created", str),
            signature=Signature.from_json(sig) if isinstance(sig, Mapping) else None,
            extra=_rest(cls, d),
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


def manifest_path(out_dir: str) -> str:
    """Where the manifest of a dataset folder lives."""
    return fsio.join(out_dir, MANIFEST)


def write_manifest(out_dir: str, manifest: Manifest | Mapping[str, Any]) -> str:
    """Write ``manifest.json`` atomically, signed (sorted keys, so identical runs differ only
    in ``created`` and ``timings``).

    Args:
        out_dir: The dataset (or documents) folder.
        manifest: The model, or its JSON object (a manifest read back, edited).
    """
    raw = manifest.to_json() if isinstance(manifest, _Model) else dict(manifest)
    data = {k: v for k, v in raw.items() if k != SIGNATURE}
    data.setdefault("version", VERSION)
    data["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Round-trip first so the signature is that of what a reader will load (tuples become
    # lists, int keys become strings, ...).
    data = json.loads(json.dumps(data))
    data[SIGNATURE] = Signature(content_sha256(data)).to_json()
    path = manifest_path(out_dir)
    if fsio.is_remote(path):
        fsio.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def content_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a manifest, its ``signature`` left out."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def signature_problem(manifest: Mapping[str, Any], path: str) -> str | None:
    """One line when the manifest was edited after it was written, else None.

    An unsigned manifest (written before signatures existed) is not a problem here: see
    :func:`is_signed`.
    """
    sig = manifest.get(SIGNATURE)
    if sig is None:
        return None
    want = sig.get("sha256") if isinstance(sig, dict) else None
    if not isinstance(want, str) or want != content_sha256(manifest):
        return (
            f"{path}: manifest.json was edited after it was written (its content no longer "
            "matches its signature): re-run the command that wrote it, or restore the original"
        )
    return None


def is_signed(manifest: Mapping[str, Any]) -> bool:
    """True when the manifest carries a signature (written by this version or later)."""
    return SIGNATURE in manifest


def unsigned_warning(path: str) -> str:
    """The warning line of a manifest written before manifests were signed."""
    return (
        f"{path}: unsigned manifest (written before manifests were signed): an edit to it "
        "cannot be detected; re-run the command that wrote it to sign it"
    )


def read_manifest(out_dir: str, *, check_signature: bool = True) -> dict[str, Any]:
    """Read a dataset folder's manifest as its JSON object (see :func:`load_manifest` for
    the model).

    Args:
        out_dir: The dataset (or documents) folder.
        check_signature: Refuse a manifest whose content does not match its signature
            (``verify`` reads with False and reports it as one problem among the others).

    Raises:
        UserError: No manifest, not valid JSON, or edited after it was written.
    """
    path = manifest_path(out_dir)
    if not fsio.isfile(path):
        raise UserError(
            f"{path}: no manifest: pass a folder written by `corpus-pipeline mask`, `pack` or `run`"
        )
    try:
        data: dict[str, Any]
        if fsio.is_remote(path):
            data = json.loads(fsio.read_text(path))
        else:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: unreadable manifest ({e}): re-run the command that wrote it"
        ) from None
    if not isinstance(data, dict) or "shards" not in data:
        raise UserError(f"{path}: not a corpus-pipeline manifest (no 'shards')")
    if check_signature:
        problem = signature_problem(data, path)
        if problem is not None:
            raise UserError(problem)
    return data


def parse_manifest(data: Mapping[str, Any], path: str) -> Manifest:
    """The model of a manifest read by :func:`read_manifest`.

    Raises:
        UserError: A newer schema version, or a missing or mistyped field (one line).
    """
    version = data.get("version")
    if isinstance(version, int) and version > VERSION:
        raise UserError(
            f"{path}: manifest version {version} was written by a newer corpus-pipeline "
            f"(this one reads version {VERSION}): upgrade corpus-pipeline"
        )
    try:
        return from_json(data)
    except IncompleteManifest as e:
        raise UserError(
            f"{path}: incomplete manifest (missing or bad {e}): re-run the command that wrote it"
        ) from None


def load_manifest(out_dir: str, *, check_signature: bool = True) -> Manifest:
    """Read a folder's manifest into the model (:class:`DatasetManifest` or
    :class:`DocumentsManifest`).

    Raises:
        UserError: No manifest, unreadable, edited after it was written, or incomplete.
    """
    data = read_manifest(out_dir, check_signature=check_signature)
    return parse_manifest(data, manifest_path(out_dir))


def load_dataset_manifest(out_dir: str, *, check_signature: bool = True) -> DatasetManifest:
    """:func:`load_manifest` for a folder that must hold instances or packs.

    Raises:
        UserError: As :func:`load_manifest`, or a documents folder.
    """
    m = load_manifest(out_dir, check_signature=check_signature)
    if isinstance(m, DocumentsManifest):
        raise UserError(
            f"{out_dir}: is a documents folder (from `extract`), not a masked dataset: pass "
            "the output of `corpus-pipeline mask`, `pack` or `run`"
        )
    return m


def without_timestamps(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest minus fields that legitimately differ between identical runs (and the
    signature, which covers them)."""
    return {k: v for k, v in manifest.items() if k not in ("created", "timings", SIGNATURE)}
