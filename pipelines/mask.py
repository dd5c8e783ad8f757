"""The masking graph: documents -> WordPiece -> static masking -> (packing) -> shards.

Used by ``corpus-pipeline mask`` (:func:`mask_documents`) and by the whole-pipeline graph
(``pipelines/pretraining.py``: :func:`add_mask_branch`). The run is planned and sized in
``pipelines/mask_plan.py`` and finished (manifests, report) in ``pipelines/mask_report.py``.
No flags: the verbs build the configs (``corpus_pipeline/commands/``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio
from corpus_pipeline.beam.counters import Timer
from corpus_pipeline.beam.mask import MaskToShards
from corpus_pipeline.beam.progress import Progress, progress_bar
from corpus_pipeline.beam.runner import run_pipeline
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import MaskConfig, PackConfig
from corpus_pipeline.formats.spill import iter_spills
from corpus_pipeline.stages.masking import MaskVocab
from pipelines.mask_plan import MaskPlan, make_plan, save_json, validation_dir
from pipelines.mask_report import check_not_empty, finish_datasets


def add_mask_branch(
    files: Any, plan: MaskPlan, progress: Progress, write_progress: Progress | None = None
) -> None:
    """Wire masking + shard writing + collectors after a PCollection of (index, path).

    Each document file encoded ticks ``progress`` once, each shard written ``write_progress``
    (default: ``progress``) once.
    """
    res = files | "Mask" >> MaskToShards(
        plan.vspec,
        plan.cfg,
        plan.specs,
        plan.num_shards,
        os.path.join(plan.work, "spill"),
        progress,
        plan.mvocab.mask_id,
        plan.megatron,
        plan.val_specs,
        plan.val_shards,
        write_progress,
    )
    splits = [("", plan.specs)]
    if plan.val_specs:
        splits.append(("val_", plan.val_specs))
    for prefix, specs in splits:
        label = "Validation" if prefix else ""
        _ = (
            res[f"{prefix}shards"]
            | f"Collect{label}Shards" >> beam.combiners.ToList()
            | f"Save{label}Shards"
            >> beam.Map(save_json, os.path.join(plan.work, f"{prefix}shards.json"))
        )
        _ = res[f"{prefix}stats"] | f"Save{label}Stats" >> beam.Map(
            save_json, os.path.join(plan.work, f"{prefix}stats.json")
        )
        if plan.megatron:
            _ = (
                res[f"{prefix}docs"]
                | f"Collect{label}Docs" >> beam.combiners.ToList()
                | f"Write{label}Megatron"
                >> beam.Map(
                    _write_megatron,
                    specs[0].out_dir,
                    plan.name,
                    plan.vinfo["size"],
                    os.path.join(plan.work, f"{prefix}megatron.json"),
                )
            )


def mask_documents(
    files: list[str],
    out: str,
    cfg: MaskConfig,
    pcfg: PackConfig | None,
    formats: tuple[str, ...],
    num_shards: int,
    name: str,
    vspec: VocabSpec,
    vinfo: dict[str, Any],
    mvocab: MaskVocab,
    workers: int,
    beam_args: Sequence[str],
    fingerprint: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run the mask pipeline into ``out`` and write its manifest; returns the manifest, then
    the validation dataset's (``OUT/validation``) when ``cfg.validation_docs`` is set."""
    timer = Timer()
    plan = make_plan(
        [(out, pcfg)],
        cfg,
        formats,
        num_shards,
        name,
        vspec,
        vinfo,
        mvocab,
        os.path.join(out, ".work"),
        fingerprint,
        [validation_dir(out)],
    )
    tasks = len(files) + num_shards + plan.val_shards
    with progress_bar(tasks, "mask", unit="task") as progress:

        def build(p: beam.Pipeline) -> None:
            files_pc = p | "Files" >> beam.Create(list(enumerate(files)), reshuffle=False)
            add_mask_branch(files_pc, plan, progress)

        counts = run_pipeline(build, workers, beam_args)
    manifests = finish_datasets(plan, counts, files, timer.elapsed)
    check_not_empty(manifests[0], files)
    return manifests


def _write_megatron(ranges: list[Any], out: str, name: str, vocab_size: int, result: str) -> None:
    """The Megatron sentence dataset of every document (the writer uploads a remote one)."""
    from corpus_pipeline.formats.mmap import MegatronSentenceWriter

    fs = fsio.filesystem(out)
    mmap_dir = fs.join(out, "mmap")
    fs.makedirs(mmap_dir)
    batch: list[Any] = []
    with MegatronSentenceWriter(mmap_dir, name, vocab_size) as w:
        for doc in iter_spills(sorted(ranges)):
            batch.append(doc)
            if len(batch) >= 1024:
                w.write(batch)
                batch = []
        if batch:
            w.write(batch)
    prefix = f"mmap/{name}_text_sentence"
    save_json(
        {
            "prefix": prefix,
            "documents": w.num_documents,
            "sentences": w.num_records,
            "files": [
                {
                    "path": f"{prefix}.{ext}",
                    "sha256": w.file_sha256[f"{name}_text_sentence.{ext}"],
                }
                for ext in ("bin", "idx")
            ],
        },
        result,
    )
