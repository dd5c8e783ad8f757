"""Wikipedia + books -> documents -> WordPiece -> masking -> (packing) -> shards, one Beam graph.

``build(p, cfg, ...)`` composes the PTransforms of every stage and :func:`run` runs it; the
flags live in ``corpus_pipeline/commands/run.py``. Output layout::

    OUT/docs/        sentence-split documents (Google text format) + manifest.json
    OUT/unpacked/    hdf5/ tfrecord/ mmap/ (+ the Megatron sentence dataset) + manifest.json
    OUT/packed/      the same instances packed (--pack) + manifest.json
    OUT/run.json     what was run, and where each dataset is

Only chunks and spill references cross fusion breaks; every shard is written by one DoFn to
temp names, then renamed; a rerun after a kill skips shards whose completion marker exists.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio, outdir
from corpus_pipeline.beam.counters import Timer, format_summary
from corpus_pipeline.beam.extract import ExtractDocuments, cleanup_chunks
from corpus_pipeline.beam.extract_loss import loss_report, report_loss
from corpus_pipeline.beam.extract_plan import plan_tasks, skipped_book_files, total_bytes
from corpus_pipeline.beam.progress import Progress, progress_bar
from corpus_pipeline.beam.runner import run_pipeline
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import ExtractConfig, MaskConfig, PackConfig, SentenceConfig
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.formats import registry
from corpus_pipeline.stages.masking import MaskVocab
from pipelines import mask as mask_graph
from pipelines import mask_plan, mask_report

#: The vocabulary of a run: how workers rebuild it, what the manifest says, the masking view.
VocabInfo = tuple[VocabSpec, dict[str, Any], MaskVocab]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run of the whole pipeline needs."""

    output: str
    dumps: tuple[tuple[str, str | None], ...] = ()
    books: tuple[str, ...] = ()
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    sentences: SentenceConfig = field(default_factory=SentenceConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    pack: PackConfig | None = None
    formats: tuple[str, ...] = registry.FORMATS
    doc_shards: int = 8
    shards: int = 4
    name: str = "wiki"


@dataclass
class _Built:
    plan: mask_plan.MaskPlan
    docs_dir: str
    docs_json: str
    tasks: int
    fingerprint: dict[str, Any]


def prepare(
    cfg: PipelineConfig, vocab: VocabInfo, *, space_check: bool = True, overwrite: bool = False
) -> _Built:
    """Claim OUT (one lock for docs/, unpacked/ and packed/; see ``outdir.py``), prepare it.

    ``vocab`` is ``(VocabSpec, manifest info, MaskVocab)``, from the verb's vocabulary flags.
    """
    vspec, vinfo, mvocab = vocab
    print(
        mask_plan.space_line(
            cfg.output,
            mask_plan.input_text_bytes(
                [d for d, _ in cfg.dumps] + list(cfg.books), cfg.extract.max_docs
            ),
            cfg.mask,
            cfg.formats,
            packed=cfg.pack is not None,
            unpacked=True,
            docs=True,
            skip=not space_check,
        ),
        flush=True,
    )
    fp = mask_plan.mask_fingerprint(
        "run",
        cfg.mask,
        cfg.pack,
        cfg.formats,
        cfg.shards,
        cfg.name,
        vinfo,
        [*(x for pair in cfg.dumps for x in pair if x), *cfg.books],
        extract=asdict(cfg.extract),
        sentences=asdict(cfg.sentences),
        doc_shards=cfg.doc_shards,
    )
    outdir.claim(cfg.output, fp, overwrite=overwrite)
    docs_dir = os.path.join(cfg.output, "docs")
    fs = fsio.filesystem(docs_dir)
    if fs.remote:
        fsio.check_writable(cfg.output)  # object stores make no folders: fail here if read-only
    fs.makedirs(docs_dir)
    fs.remove_stale_temps(docs_dir)
    outs = [(os.path.join(cfg.output, name), p) for name, p in _datasets(cfg)]
    # The held-out documents' datasets mirror the layout: OUT/validation/unpacked, /packed.
    val_dirs = [os.path.join(cfg.output, mask_plan.VALIDATION, n) for n, _ in _datasets(cfg)]
    work = os.path.join(cfg.output, ".work")
    plan = mask_plan.make_plan(
        outs, cfg.mask, cfg.formats, cfg.shards, cfg.name, vspec, vinfo, mvocab, work, fp, val_dirs
    )
    return _Built(plan, docs_dir, os.path.join(work, "docs.json"), 0, fp)


def _datasets(cfg: PipelineConfig) -> list[tuple[str, PackConfig | None]]:
    """The masked datasets of a run, by folder name: unpacked, and packed with ``--pack``."""
    return [("unpacked", None)] + ([("packed", cfg.pack)] if cfg.pack is not None else [])


#: Shares of ``run``'s progress bar: extraction (by input bytes), encoding (by document
#: file), masking and writing (by shard). Measured on the bundled demo (2 workers): extract
#: 12.7 s, mask --pack with every format 22.5 s, about a third of it encoding.
RUN_SHARES = {"extract": 0.35, "encode": 0.25, "write": 0.40}


def build(p: beam.Pipeline, cfg: PipelineConfig, built: _Built, progress: Progress) -> None:
    """The whole graph: extract -> split -> encode -> mask -> (pack) -> write every format.

    ``progress`` is a bar of total 100 (``progress_bar(percent=True)``): each step ticks its
    share of :data:`RUN_SHARES`, divided by what is known when the graph is planned (input
    bytes, document files, shards).
    """
    tasks = plan_tasks(cfg.dumps, cfg.books, cfg.extract, cfg.sentences)
    built.tasks = len(tasks)
    shards = built.plan.num_shards + built.plan.val_shards
    extracted = progress.scaled(100 * RUN_SHARES["extract"] / max(1, total_bytes(tasks)))
    encoded = progress.scaled(100 * RUN_SHARES["encode"] / cfg.doc_shards)
    written = progress.scaled(100 * RUN_SHARES["write"] / shards)
    docs = p | "Extract" >> ExtractDocuments(
        tasks,
        built.docs_dir,
        cfg.extract,
        cfg.sentences,
        cfg.doc_shards,
        cfg.name,
        "text",
        extracted,
        skipped_book_files(cfg.books),
    )
    _ = (
        docs
        | "CollectDocShards" >> beam.combiners.ToList()
        | "SaveDocShards" >> beam.Map(mask_plan.save_json, built.docs_json)
    )
    files = (
        docs
        | "NonEmpty" >> beam.FlatMap(_non_empty, encoded)
        | "DocFiles"
        >> beam.Map(lambda s, d: (s["shard"], os.path.join(d, s["path"])), built.docs_dir)
    )
    mask_graph.add_mask_branch(files, built.plan, encoded, written)


def _non_empty(shard: dict[str, Any], progress: Progress) -> Iterator[dict[str, Any]]:
    """Document shards that hold documents; an empty one is not encoded, so it ticks here."""
    if shard["documents"] > 0:
        yield shard
    else:
        progress.tick()


@outdir.releasing
def run(
    cfg: PipelineConfig,
    vocab: VocabInfo,
    workers: int,
    beam_args: Sequence[str],
    *,
    space_check: bool = True,
    overwrite: bool = False,
) -> int:
    """Run the whole graph into ``cfg.output`` and write every manifest; prints the report."""
    timer = Timer()
    built = prepare(cfg, vocab, space_check=space_check, overwrite=overwrite)
    with progress_bar(100, "run", percent=True) as progress:
        counts = run_pipeline(lambda p: build(p, cfg, built, progress), workers, beam_args)
    with fsio.open_text(built.docs_json) as f:
        doc_shards = sorted(json.load(f), key=lambda s: s["shard"])
    cleanup_chunks(built.docs_dir)
    loss = loss_report(counts, cfg.extract.max_loss)
    docs_manifest = mf.DocumentsManifest(
        format="text",
        lang=cfg.sentences.language,
        books_lang=cfg.sentences.books_language if cfg.books else None,
        inputs=[fsio.abspath(d) for d, _ in cfg.dumps] + [fsio.abspath(b) for b in cfg.books],
        shards=[mf.DocumentShard.from_json(s) for s in doc_shards],
        documents=sum(s["documents"] for s in doc_shards),
        loss=loss,
        config={"extract": asdict(cfg.extract), "sentences": asdict(cfg.sentences)},
        fingerprint=mf.Fingerprint.from_json(built.fingerprint),
    )
    mf.write_manifest(built.docs_dir, docs_manifest)
    inputs = [os.path.join(built.docs_dir, s["path"]) for s in doc_shards]
    manifests = mask_report.finish_datasets(built.plan, counts, inputs, timer.elapsed)
    fsio.rmtree(built.plan.work)
    # Manifests come as the training datasets, then their validation twins (if any).
    names = [n for n, _ in _datasets(cfg)]
    if built.plan.val_specs:
        names += [f"{mask_plan.VALIDATION}/{n}" for n in names]
    datasets = {"docs": "docs", **{n: n for n in names}}
    run_info = {"datasets": datasets, "argv": sys.argv[1:], "fingerprint": built.fingerprint}
    fsio.write_text(
        fsio.join(cfg.output, "run.json"), json.dumps(run_info, indent=2, sort_keys=True)
    )
    mask_report.check_not_empty(manifests[0], inputs)
    keep = ["run.json", *(f"docs/{f}" for f in outdir.manifest_files(docs_manifest.to_json()))]
    for name, m in zip(names, manifests, strict=True):
        keep.extend(mask_report.dataset_files(m, name))
    outdir.finish(cfg.output, keep)
    print(
        format_summary(
            f"run: {docs_manifest.documents:,} documents -> "
            f"{manifests[0]['totals']['instances']:,} instances",
            counts,
            timer.elapsed,
        )
    )
    for name, m in zip(names, manifests, strict=True):
        print(f"\n{name}: {os.path.join(cfg.output, name)}")
        mask_report.print_report(m, os.path.join(cfg.output, name), counters=False, warnings=False)
    mask_report.print_warnings(manifests[0])  # the same for both datasets: once
    if built.plan.val_specs:
        mask_report.print_warnings(manifests[len(names) // 2])
    report_loss(loss, [d for d, _ in cfg.dumps], built.docs_dir)
    return 0
