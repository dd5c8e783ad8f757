"""Planning a masking run: the sizing rules (the input's text, the output estimate, the default
shard counts), its fingerprint, and the plan that the graph is built from (output and work
folders prepared, the JSON files its steps leave in the work folder).

Used by ``corpus-pipeline mask`` and ``run`` (``corpus_pipeline/commands/``) before the graph
(``pipelines/mask.py``) is built; the manifests are written from the plan by
``pipelines/mask_report.py``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from corpus_pipeline import diskspace, fsio, outdir
from corpus_pipeline.beam.shards import ShardSpec, prepare_output
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import SHARD_TARGET_INSTANCES, MaskConfig, PackConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.stages.masking import MaskVocab
from corpus_pipeline.stages.wordpiece import CHARS_PER_TOKEN

#: Instance tokens per document token and duplicate: random next segments come from other
#: documents and unused segments go back, so instances hold more tokens than the documents.
#: Measured (phase1, dupe 5): bundled excerpt 2.58M chars -> 27.7k instances (1.29); the same
#: replicated 40x, 103M bytes -> 1.14M instances (1.32).
_INSTANCE_TOKENS_PER_TOKEN = 1.3
#: Document text per byte of a dump, by suffix (bundled excerpt: 5.8 MB XML, 1.6 MB bz2, 2.6 MB
#: of text); anything else (books, documents) counts byte for byte.
_TEXT_PER_BYTE = {".bz2": 1.6, ".xz": 1.6, ".gz": 1.3, ".xml": 0.44}


#: The folder of the held-out documents' datasets (``--validation-docs``), beside the training
#: ones: ``mask``'s OUT/validation, ``run``'s OUT/validation/unpacked and OUT/validation/packed.
VALIDATION = "validation"

#: Text per document for sizing a ``--max-docs`` sample (the bundled excerpt: 2.6 MB of text in
#: 105 articles; a generous bound so the estimate stays above what is written).
_TEXT_PER_DOC = 25_000


def input_text_bytes(paths: Sequence[str], max_docs: int | None = None) -> int:
    """Rough size of the document text in ``paths`` (files or folders; remote ones count 0),
    or of the first ``max_docs`` documents of them."""
    total = 0.0
    for path in paths:
        if fsio.is_remote(path):
            continue
        files = [Path(path)] if os.path.isfile(path) else Path(path).rglob("*")
        for f in files:
            if f.is_file():
                total += f.stat().st_size * _TEXT_PER_BYTE.get(f.suffix, 1.0)
    if max_docs is not None:
        total = min(total, max_docs * _TEXT_PER_DOC)
    return int(total)


def estimated_instances(text_bytes: int, cfg: MaskConfig) -> float:
    """Instances that ``text_bytes`` of document text give (for sizing, before encoding)."""
    tokens = text_bytes / CHARS_PER_TOKEN * _INSTANCE_TOKENS_PER_TOKEN
    return cfg.dupe_factor * tokens / max(1, cfg.max_seq_length - 3)


def default_shards(text_bytes: int, cfg: MaskConfig) -> int:
    """4, or enough shards for ~:data:`SHARD_TARGET_INSTANCES` each (same input, same count)."""
    instances = estimated_instances(text_bytes, cfg)
    return max(4, -(-int(instances) // SHARD_TARGET_INSTANCES))


def validation_shards(cfg: MaskConfig, num_shards: int) -> int:
    """Shards of the validation dataset: the training count scaled by the held-out share
    (a count of documents sized like a ``--max-docs`` sample), at least 1. Fixed at planning,
    from the configuration alone, so the same run gives the same count."""
    v = cfg.validation_docs
    if v is None:
        return 0
    if v < 1:
        return max(1, math.ceil(num_shards * v))
    instances = estimated_instances(int(v) * _TEXT_PER_DOC, cfg)
    return max(1, math.ceil(instances / SHARD_TARGET_INSTANCES))


def validation_dir(out: str) -> str:
    """Where the validation dataset of a dataset folder goes, for ``mask``: ``OUT/validation``.

    ``run`` mirrors its whole layout instead: ``OUT/validation/unpacked`` (and ``packed``).
    """
    return fsio.join(out, VALIDATION)


def space_line(
    out: str,
    text_bytes: int,
    cfg: MaskConfig,
    formats: Sequence[str],
    *,
    packed: bool,
    unpacked: bool,
    docs: bool,
    skip: bool,
) -> str:
    """The estimated output size, checked against the output disk's free space."""
    need = diskspace.estimate_bytes(
        estimated_instances(text_bytes, cfg),
        cfg.max_seq_length,
        formats,
        unpacked=unpacked,
        packed=packed,
        docs_bytes=text_bytes if docs else 0,
    )
    return diskspace.check_space(out, need, skip=skip)


def mask_fingerprint(
    verb: str,
    cfg: MaskConfig,
    pcfg: PackConfig | None,
    formats: Sequence[str],
    num_shards: int,
    name: str,
    vinfo: dict[str, Any],
    inputs: Sequence[str],
    **more: Any,
) -> dict[str, Any]:
    """The fingerprint of a masking run (``mask`` or ``run``): see ``outdir.py``."""
    return outdir.fingerprint(
        verb,
        config={"mask": asdict(cfg), "pack": asdict(pcfg) if pcfg else None, **more},
        inputs=outdir.input_files(inputs),
        vocab={k: vinfo.get(k) for k in ("sha256", "cased", "strip_accents")},
        formats=list(formats),
        shards=num_shards,
        name=name,
    )


@dataclass
class MaskPlan:
    """Everything a masking branch of a Beam graph needs, and what it leaves in ``work``."""

    cfg: MaskConfig
    specs: list[ShardSpec]
    num_shards: int
    name: str
    vspec: VocabSpec
    vinfo: dict[str, Any]
    mvocab: MaskVocab
    work: str
    megatron: bool
    fingerprint: dict[str, Any] | None = None  # outdir.fingerprint of the run, if any
    val_specs: list[ShardSpec] = field(default_factory=list)  # the held-out datasets, if any
    val_shards: int = 0

    @property
    def formats(self) -> tuple[str, ...]:
        return self.specs[0].formats


def make_plan(
    out_dirs: list[tuple[str, PackConfig | None]],
    cfg: MaskConfig,
    formats: tuple[str, ...],
    num_shards: int,
    name: str,
    vspec: VocabSpec,
    vinfo: dict[str, Any],
    mvocab: MaskVocab,
    work: str,
    fingerprint: dict[str, Any] | None = None,
    val_dirs: list[str] | None = None,
) -> MaskPlan:
    """Prepare output folders (stale temps removed) and a fresh work folder.

    ``val_dirs`` (one per ``out_dirs`` entry, when ``cfg.validation_docs`` holds documents
    out) are the folders of the validation datasets, written like their training ones.
    """
    if "hdf5" in formats and any(p is not None for _, p in out_dirs) and vinfo["size"] >= 32768:
        raise UserError(
            f"{vinfo['file']}: {vinfo['size']} entries, but packed HDF5 (MLPerf) stores int16 ids "
            "and needs a vocabulary < 32768: drop hdf5 from --format or use a smaller vocabulary"
        )
    specs = []
    for out, pcfg in out_dirs:
        fsio.make_output_dir(out)
        prepare_output(out, formats)
        specs.append(
            ShardSpec(
                out,
                name,
                formats,
                cfg.max_seq_length,
                cfg.max_predictions,
                vinfo["size"],
                cfg.seed,
                pcfg,
                fingerprint["sha256"] if fingerprint else "",
            )
        )
    val_specs = []
    val_shards = validation_shards(cfg, num_shards)
    if val_shards:
        if val_dirs is None or len(val_dirs) != len(specs):
            raise ValueError("a validation split needs one validation folder per dataset")
        for spec, vdir in zip(specs, val_dirs, strict=True):
            fsio.make_output_dir(vdir)
            prepare_output(vdir, formats)
            val_specs.append(replace(spec, out_dir=vdir))
    fsio.rmtree(work)
    fsio.filesystem(work).makedirs(work)  # remote: no folders, spill objects under OUT/.work
    return MaskPlan(
        cfg,
        specs,
        num_shards,
        name,
        vspec,
        vinfo,
        mvocab,
        work,
        megatron="mmap" in formats and specs[0].pack is None,
        fingerprint=fingerprint,
        val_specs=val_specs,
        val_shards=val_shards,
    )


def save_json(obj: Any, path: str) -> None:
    """Write ``obj`` as JSON (numpy values as Python ones); it appears only once complete."""
    fsio.write_text(path, json.dumps(obj, default=_jsonable))


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def load_json(path: str) -> Any:
    with fsio.open_text(path) as f:
        return json.load(f)
