"""``manifest.json`` on disk: reading, writing, signing, and manifests of older versions.

The model (:class:`DatasetManifest`, :class:`DocumentsManifest` and their parts) and the
JSON schema are in ``formats/manifest_model.py``; its names are exported here too, so that
``from corpus_pipeline.formats import manifest as mf`` reaches the whole manifest API.

``signature.sha256`` is the SHA-256 of the canonical JSON (sorted keys, no whitespace, ASCII)
of every other field. :func:`write_manifest` sets it; :func:`read_manifest` refuses a manifest
whose content no longer matches it (a hand edit that drops a format, changes the seed, the
statistics or a shard's sha256 would otherwise be trusted by ``verify``, ``pack`` and the
trainer). Manifests written before signatures existed (no ``signature``) are still read;
``verify`` warns about them. A manifest without ``version`` is read as version 1 (the only
schema so far); one of a newer version is refused.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output
from corpus_pipeline.formats.manifest_fields import IncompleteManifest, Model
from corpus_pipeline.formats.manifest_model import (
    SIGNATURE,
    DatasetManifest,
    DocumentShard,
    DocumentsManifest,
    FileEntry,
    Fingerprint,
    Loss,
    Manifest,
    Megatron,
    ShardEntry,
    Signature,
    Statistics,
    StatWarning,
    Totals,
    Vocab,
    from_json,
)

MANIFEST = "manifest.json"
VERSION = 1


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
    raw = manifest.to_json() if isinstance(manifest, Model) else dict(manifest)
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


__all__ = [
    "MANIFEST",
    "SIGNATURE",
    "VERSION",
    "DatasetManifest",
    "DocumentShard",
    "DocumentsManifest",
    "FileEntry",
    "Fingerprint",
    "IncompleteManifest",
    "Loss",
    "Manifest",
    "Megatron",
    "ShardEntry",
    "Signature",
    "StatWarning",
    "Statistics",
    "Totals",
    "Vocab",
    "content_sha256",
    "from_json",
    "is_signed",
    "load_dataset_manifest",
    "load_manifest",
    "manifest_path",
    "parse_manifest",
    "read_manifest",
    "signature_problem",
    "unsigned_warning",
    "without_timestamps",
    "write_manifest",
]
