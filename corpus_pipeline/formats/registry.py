"""One place that knows every shard format: file names, writers and readers.

Layout of a dataset folder (``i`` = shard index, 5 digits)::

    hdf5/<name>_training_<i>.hdf5          NVIDIA DLE schema (unpacked)
    hdf5/<name>_part_<i>.hdf5              NVIDIA MLPerf schema (packed)
    tfrecord/<name>_<i>.tfrecord + .index  Google BERT (unpacked) or Graphcore (packed) schema
    mmap/<name>_<i>_<field>.bin + .idx     Megatron MMIDIDX, one indexed dataset per field
    mmap/<name>_text_sentence.bin + .idx   Megatron/ColossalAI sentence-level dataset (optional)
    manifest.json

HDF5 names follow what each consumer's loader keeps from ``os.listdir`` by default: DLE's
``run_pretraining.py`` keeps names containing ``training``; NVIDIA's MLPerf BERT
``run_pretraining.py`` (mlcommons/training_results_v2.1,
``NVIDIA/benchmarks/bert/implementations/pytorch-22.09/run_pretraining.py``) keeps names
containing ``part_`` in the first epoch and ``part`` in later ones. Unpacked names carry no
``part`` on purpose: MLPerf's unpacked mode expects variable-length rows and would read our
padded DLE rows with an all-ones input mask. Packed shards written before this naming
(``<name>_training_<i>.hdf5``) are still read and verified (:func:`resolve_shard_files`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import hdf5, hdf5_writer, mmap_bert, tfrecord, tfrecord_writer
from corpus_pipeline.records import Instance, Pack

FORMATS = ("hdf5", "tfrecord", "mmap")
MMAP_FIELDS = (
    "input_ids",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "next_sentence_labels",
)


def parse_formats(value: str) -> tuple[str, ...]:
    """``"hdf5,tfrecord"`` -> ``("hdf5", "tfrecord")``; ``all`` -> every format.

    Raises:
        UserError: An unknown format name.
    """
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise UserError(
            f"--format {value!r}: choose from {', '.join(FORMATS)} (comma-separated) or all"
        )
    return tuple(n for n in FORMATS if n in names)


def shard_stem(name: str, index: int) -> str:
    return f"{name}_{index:05d}"


def shard_files(fmt: str, name: str, index: int, packed: bool) -> list[str]:
    """Relative paths of the files of one shard in one format."""
    stem = shard_stem(name, index)
    if fmt == "hdf5":
        if packed:
            return [f"hdf5/{name}_part_{index:05d}.hdf5"]
        return [f"hdf5/{name}_training_{index:05d}.hdf5"]
    if fmt == "tfrecord":
        return [f"tfrecord/{stem}.tfrecord", f"tfrecord/{stem}.index"]
    fields = (*MMAP_FIELDS, "pack_lengths") if packed else MMAP_FIELDS
    return [f"mmap/{stem}_{f}.{ext}" for f in fields for ext in ("bin", "idx")]


def legacy_shard_files(fmt: str, name: str, index: int, packed: bool) -> list[str] | None:
    """The names an older version gave the shard's files, when they differ (packed HDF5)."""
    if fmt == "hdf5" and packed:
        return [f"hdf5/{name}_training_{index:05d}.hdf5"]
    return None


def resolve_shard_files(out_dir: str, fmt: str, name: str, index: int, packed: bool) -> list[str]:
    """:func:`shard_files`, or the legacy names when only those exist in ``out_dir``."""
    files = shard_files(fmt, name, index, packed)
    legacy = legacy_shard_files(fmt, name, index, packed)
    if (
        legacy is not None
        and not os.path.exists(os.path.join(out_dir, files[0]))
        and os.path.exists(os.path.join(out_dir, legacy[0]))
    ):
        return legacy
    return files


def open_writer(
    fmt: str,
    out_dir: str,
    name: str,
    index: int,
    *,
    max_seq_length: int,
    max_predictions: int,
    vocab_size: int,
    max_per_pack: int | None = None,
) -> Any:
    """A shard writer (context manager with ``write(batch)``); packed when ``max_per_pack``.

    ``out_dir`` may be remote: the writer builds its files locally and uploads them on close.
    """
    fs = fsio.filesystem(out_dir)
    fs.makedirs(fs.join(out_dir, fmt))
    packed = max_per_pack is not None
    main = fs.join(out_dir, shard_files(fmt, name, index, packed)[0])
    if fmt == "hdf5":
        if max_per_pack is not None:
            return hdf5_writer.PackedHDF5ShardWriter(
                main, max_seq_length, max_predictions, max_per_pack, vocab_size=vocab_size
            )
        return hdf5_writer.HDF5ShardWriter(main, max_seq_length, max_predictions)
    if fmt == "tfrecord":
        if max_per_pack is not None:
            return tfrecord_writer.PackedTFRecordShardWriter(
                main, max_seq_length, max_predictions, max_per_pack
            )
        return tfrecord_writer.TFRecordShardWriter(main, max_seq_length, max_predictions)
    if fmt == "mmap":
        cls = mmap_bert.MmapPackWriter if packed else mmap_bert.MmapInstanceWriter
        return cls(
            fs.join(out_dir, "mmap"),
            shard_stem(name, index),
            vocab_size,
            max_seq_length=max_seq_length,
        )
    raise ValueError(f"unknown format {fmt!r}")


def read_shard(fmt: str, out_dir: str, name: str, index: int, packed: bool) -> Iterable[Any]:
    """Records (Instance, or Pack when packed) of one shard in one format."""
    path = os.path.join(out_dir, resolve_shard_files(out_dir, fmt, name, index, packed)[0])
    if fmt == "hdf5":
        return hdf5.read_packed_hdf5(path) if packed else hdf5.read_hdf5(path)
    if fmt == "tfrecord":
        return tfrecord.read_packed_tfrecord(path) if packed else tfrecord.read_tfrecord(path)
    if fmt == "mmap":
        d = os.path.join(out_dir, "mmap")
        stem = shard_stem(name, index)
        return (
            mmap_bert.read_mmap_packs(d, stem) if packed else mmap_bert.read_mmap_instances(d, stem)
        )
    raise ValueError(f"unknown format {fmt!r}")


def iter_dataset(out_dir: str, manifest: dict[str, Any], fmt: str | None = None) -> Iterator[Any]:
    """Every record of a dataset folder, shard by shard in manifest order.

    Args:
        out_dir: The dataset folder.
        manifest: Its manifest (``formats.manifest.read_manifest``).
        fmt: Which format to read (default: the first the folder has).
    """
    fmt = fmt or manifest["formats"][0]
    if fmt not in manifest["formats"]:
        raise UserError(f"{out_dir}: has no {fmt} shards (it has {', '.join(manifest['formats'])})")
    packed = manifest.get("kind") == "packed"
    for shard in shards_with_files(manifest):
        yield from read_shard(fmt, out_dir, manifest["name"], shard["index"], packed)


def is_empty_shard(shard: Mapping[str, Any]) -> bool:
    """A manifest shard no instance went to (small inputs, many shards): it has no files."""
    return not shard.get("files") and not shard.get("instances") and not shard.get("records")


def shards_with_files(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's shards, empty ones left out."""
    return [s for s in manifest.get("shards", []) if not is_empty_shard(s)]


def instances_of(records: Iterable[Instance | Pack]) -> Iterator[Instance]:
    """Flatten packs into their instances (instances pass through)."""
    for r in records:
        if isinstance(r, Pack):
            yield from r.instances
        else:
            yield r


def writer_file_hashes(
    fmt: str, writer: Any, out_dir: str, name: str, index: int, packed: bool
) -> list[dict[str, str]]:
    """``[{path, sha256}]`` of a closed writer's files, relative to ``out_dir``."""
    digests = writer.file_sha256
    rels = shard_files(fmt, name, index, packed)
    return [
        {"path": rel, "sha256": digests[posixpath.basename(rel)]}
        for rel in rels
        if posixpath.basename(rel) in digests
    ]
