"""``manifest.json``: what a dataset folder holds, how it was made, and every shard's checksum.

Schema (version 1), paths relative to the dataset folder::

    {
      "version": 1,
      "kind": "instances" | "packed",
      "name": "wiki",
      "formats": ["hdf5", "tfrecord", "mmap"],
      "max_seq_length": 128, "max_predictions": 20, "max_per_pack": null | 3,
      "seed": 12345,
      "vocab": {"file": "bert-base-uncased-vocab.txt", "sha256": "...", "size": 30522, "cased": false},
      "config": {"mask": {...}, "pack": {...} | null},
      "shards": [
        {"index": 0, "instances": 1234, "records": 1234,
         "files": {"hdf5": [{"path": "hdf5/wiki_training_00000.hdf5", "sha256": "..."}],
                   "tfrecord": [{"path": "tfrecord/wiki_00000.tfrecord", "sha256": "..."},
                                {"path": "tfrecord/wiki_00000.index", "sha256": "..."}],
                   "mmap": [{"path": "mmap/wiki_00000_input_ids.bin", "sha256": "..."}, ...]}}
      ],
      "megatron": null | {"prefix": "mmap/wiki_text_sentence", "documents": n, "sentences": n,
                          "files": [{"path": ..., "sha256": ...}]},
      "totals": {"instances": n, "records": n, "documents": n},
      "statistics": {...},          # MASKING.md statistics (mask) or packing report (pack)
      "counters": {...},            # every Beam counter of the run
      "timings": {"elapsed_seconds": 12.3, "strategy_seconds": 0.4},
      "created": "2026-11-22T03:00:00Z",  # with timings, the only fields that differ between runs
      "signature": {"sha256": "...", "of": "canonical-json-v1"}
    }

``records`` is the number of rows in a shard: instances when unpacked, packs when packed.

``signature.sha256`` is the SHA-256 of the canonical JSON (sorted keys, no whitespace, ASCII)
of every other field. :func:`write_manifest` sets it; :func:`read_manifest` refuses a manifest
whose content no longer matches it (a hand edit that drops a format, changes the seed, the
statistics or a shard's sha256 would otherwise be trusted by ``verify``, ``pack`` and the
trainer). Manifests written before signatures existed (no ``signature``) are still read;
``verify`` warns about them. Documents folders (``extract``) are signed the same way.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output

MANIFEST = "manifest.json"
VERSION = 1
SIGNATURE = "signature"
_SIGNATURE_SCHEME = "canonical-json-v1"


def manifest_path(out_dir: str) -> str:
    """Where the manifest of a dataset folder lives."""
    return fsio.join(out_dir, MANIFEST)


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> str:
    """Write ``manifest.json`` atomically (sorted keys, so identical runs differ only in ``created``)."""
    data = {k: v for k, v in manifest.items() if k != SIGNATURE}
    data.setdefault("version", VERSION)
    data["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Round-trip first so the signature is that of what a reader will load (tuples become
    # lists, int keys become strings, ...).
    data = json.loads(json.dumps(data))
    data[SIGNATURE] = {"sha256": content_sha256(data), "of": _SIGNATURE_SCHEME}
    path = manifest_path(out_dir)
    if fsio.is_remote(path):
        fsio.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def content_sha256(manifest: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a manifest, its ``signature`` left out."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def signature_problem(manifest: dict[str, Any], path: str) -> str | None:
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


def is_signed(manifest: dict[str, Any]) -> bool:
    """True when the manifest carries a signature (written by this version or later)."""
    return SIGNATURE in manifest


def read_manifest(out_dir: str, *, check_signature: bool = True) -> dict[str, Any]:
    """Read a dataset folder's manifest.

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


def without_timestamps(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest minus fields that legitimately differ between identical runs (and the
    signature, which covers them)."""
    return {k: v for k, v in manifest.items() if k not in ("created", "timings", SIGNATURE)}
