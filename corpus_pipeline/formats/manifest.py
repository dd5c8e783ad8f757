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
      "created": "2026-11-22T03:00:00Z"   # with timings, the only fields that differ between runs
    }

``records`` is the number of rows in a shard: instances when unpacked, packs when packed.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output

MANIFEST = "manifest.json"
VERSION = 1


def manifest_path(out_dir: str) -> str:
    """Where the manifest of a dataset folder lives."""
    return fsio.join(out_dir, MANIFEST)


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> str:
    """Write ``manifest.json`` atomically (sorted keys, so identical runs differ only in ``created``)."""
    data = dict(manifest)
    data.setdefault("version", VERSION)
    data["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = manifest_path(out_dir)
    if fsio.is_remote(path):
        fsio.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def read_manifest(out_dir: str) -> dict[str, Any]:
    """Read a dataset folder's manifest.

    Raises:
        UserError: No manifest, or it is not valid JSON.
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
    return data


def without_timestamps(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest minus fields that legitimately differ between identical runs."""
    return {k: v for k, v in manifest.items() if k not in ("created", "timings")}
