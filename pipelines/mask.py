"""The masking graph: documents -> WordPiece -> static masking -> (packing) -> shards.

Used by ``corpus-pipeline mask`` (:func:`mask_documents`) and by the whole-pipeline graph
(``pipelines/pretraining.py``: :func:`make_plan`, :func:`add_mask_branch`,
:func:`finish_datasets`). Holds the sizing rules (default shard count, the output estimate),
the manifest of a masked dataset and the report printed at the end. No flags: the verbs
build the configs (``corpus_pipeline/commands/``).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import apache_beam as beam

from corpus_pipeline import diskspace, fsio, outdir
from corpus_pipeline.beam.counters import Timer, format_summary
from corpus_pipeline.beam.mask import VAL_COUNTERS, MaskToShards
from corpus_pipeline.beam.progress import Progress, progress_bar
from corpus_pipeline.beam.runner import run_pipeline
from corpus_pipeline.beam.shards import ShardSpec, manifest_counters, prepare_output
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import SHARD_TARGET_INSTANCES, MaskConfig, PackConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.formats.spill import iter_spills
from corpus_pipeline.stages.mask_stats import counter_statistics, statistical_warnings
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


def finish_datasets(
    plan: MaskPlan, counts: dict[str, int], inputs: list[str], elapsed: float
) -> list[dict[str, Any]]:
    """Write each dataset's manifest from what the pipeline left in ``plan.work``.

    Returns the training datasets' manifests; with a validation split the validation ones
    follow them, in the same order (``plan.specs`` then ``plan.val_specs``).
    """
    held = counts.get("mask/validation_documents", 0)
    documents = counts.get("encode/passed", 0)
    splits = [("", plan.specs, documents - held, counts)]
    if plan.val_specs:
        splits.append(("val_", plan.val_specs, held, validation_counts(counts)))
    loaded = [
        (
            specs,
            docs,
            split_counts,
            load_json(os.path.join(plan.work, f"{prefix}shards.json")),
            load_json(os.path.join(plan.work, f"{prefix}stats.json")),
            load_json(os.path.join(plan.work, f"{prefix}megatron.json")) if plan.megatron else None,
        )
        for prefix, specs, docs, split_counts in splits
    ]
    fsio.rmtree(plan.work)
    manifests = []
    for specs, docs, split_counts, entries, stats, megatron in loaded:
        manifests.extend(
            _write_manifests(
                plan, specs, docs, entries, stats, megatron, split_counts, counts, inputs, elapsed
            )
        )
    return manifests


def validation_counts(counts: dict[str, int]) -> dict[str, int]:
    """The counters as the validation split sees them: its masking counters
    (``mask-validation/*``, see ``beam/mask.py``) under their usual ``mask/`` names, beside
    the run's encoding counters (the same corpus, encoded once)."""
    out = {k: v for k, v in counts.items() if not k.startswith(("mask/", VAL_COUNTERS))}
    out.update(
        (k.replace(VAL_COUNTERS, "mask/", 1), v)
        for k, v in counts.items()
        if k.startswith(VAL_COUNTERS)
    )
    return out


def _shown(v: float | None) -> float | int | None:
    """``--validation-docs`` as given: a count prints as an integer."""
    return int(v) if v is not None and v >= 1 else v


def _split_info(plan: MaskPlan, spec: ShardSpec, documents: int) -> dict[str, Any]:
    """The manifest's ``split`` section: which side of ``--validation-docs`` it holds."""
    held = spec in plan.val_specs
    return {
        "split": {
            "role": "validation" if held else "training",
            "validation_docs": _shown(plan.cfg.validation_docs),
            "documents": documents,
            "seed": plan.cfg.seed,
        }
    }


def _write_manifests(
    plan: MaskPlan,
    specs: list[ShardSpec],
    documents: int,
    entries: list[Any],
    stats: dict[str, Any],
    megatron: dict[str, Any] | None,
    split_counts: dict[str, int],
    counts: dict[str, int],
    inputs: list[str],
    elapsed: float,
) -> list[dict[str, Any]]:
    """One split's datasets: statistics from its own counters, the run's in ``counters``."""
    instances = stats["instances"]
    stats["short_target_fraction"] = (
        split_counts.get("mask/short_target", 0) / instances if instances else None
    )
    stats.update(counter_statistics(split_counts))
    warnings = statistical_warnings(stats, split_counts)
    manifests = []
    for spec in specs:
        shards = sorted((e for d, e in entries if d == spec.out_dir), key=lambda e: e["index"])
        timings = split_timings(shards)
        pcfg = spec.pack
        manifest = mf.DatasetManifest(
            kind="packed" if pcfg else "instances",
            name=plan.name,
            formats=list(spec.formats),
            max_seq_length=plan.cfg.max_seq_length,
            max_predictions=plan.cfg.max_predictions,
            max_per_pack=pcfg.max_per_pack if pcfg else None,
            seed=plan.cfg.seed,
            vocab=mf.Vocab.from_json(plan.vinfo),
            config={"mask": asdict(plan.cfg), "pack": asdict(pcfg) if pcfg else None},
            inputs=[os.path.basename(f) for f in inputs],
            shards=[mf.ShardEntry.from_json(s) for s in shards],
            megatron=(mf.Megatron.from_json(megatron) if megatron and spec is specs[0] else None),
            totals=mf.Totals(
                instances=sum(s["instances"] for s in shards),
                records=sum(s["records"] for s in shards),
                documents=documents,
            ),
            statistics=mf.Statistics.from_json(stats),
            warnings=[mf.StatWarning.from_json(w) for w in warnings],
            counters=manifest_counters(counts),
            timings={"elapsed_seconds": round(elapsed, 2), **timings},
            packing=packing_report(shards, plan.cfg.max_seq_length) if pcfg else None,
            fingerprint=(
                mf.Fingerprint.from_json(plan.fingerprint) if plan.fingerprint is not None else None
            ),
            extra=_split_info(plan, spec, documents) if plan.val_specs else {},
        )
        mf.write_manifest(spec.out_dir, manifest)
        fsio.rmtree(os.path.join(spec.out_dir, ".markers"))
        manifests.append(manifest.to_json())
    return manifests


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


def dataset_files(manifest: dict[str, Any], folder: str = "") -> list[str]:
    """The files a dataset's manifest names, relative to its parent when ``folder`` is given
    (``outdir.finish`` keeps exactly these)."""
    return [posixpath.join(folder, f) if folder else f for f in outdir.manifest_files(manifest)]


def mask_output_files(manifests: list[dict[str, Any]]) -> list[str]:
    """What ``mask``'s OUT holds when done: the dataset's files and its validation dataset's
    (``validation/...``)."""
    return [
        f for m, d in zip(manifests, ("", VALIDATION), strict=False) for f in dataset_files(m, d)
    ]


def print_mask_reports(manifests: list[dict[str, Any]], out: str) -> None:
    """``mask``'s report: the dataset's, then the validation dataset's (without counters)."""
    print_report(manifests[0], out, warnings=len(manifests) == 1)
    if len(manifests) > 1:
        print(f"\nvalidation: {validation_dir(out)}")
        print_report(manifests[1], validation_dir(out), counters=False, warnings=False)
        print_warnings(manifests[0])
        print_warnings(manifests[1])


def check_not_empty(manifest: dict[str, Any], inputs: list[str]) -> None:
    """No instance at all is a user mistake (wrong input), not a success."""
    split = manifest.get("split")
    if manifest["totals"]["instances"] == 0 and split:
        raise UserError(
            f"{', '.join(inputs)}: --validation-docs {split['validation_docs']} held out every "
            "document that had tokens, none is left for training: give a smaller count or "
            "fraction"
        )
    if manifest["totals"]["instances"] == 0:
        raise UserError(
            f"{', '.join(inputs)}: no instances were produced (no document had tokens): "
            "check the input is sentence-split text from `extract`"
        )


def split_timings(shards: list[dict[str, Any]]) -> dict[str, float]:
    """Remove wall-clock fields from shard entries (they differ between identical runs)."""
    total = 0.0
    for s in shards:
        total += float(s.pop("timings", {}).get("strategy_seconds", 0.0))
    return {"strategy_seconds": round(total, 3)} if total else {}


def packing_report(shards: list[dict[str, Any]], max_seq_length: int) -> dict[str, Any]:
    """Instances, packs, efficiency before/after and padded packs, summed over shards."""
    inst = sum(s["instances"] for s in shards)
    packs = sum(s["records"] for s in shards)
    real = sum(s.get("packing", {}).get("real_tokens", 0) for s in shards)
    padded = sum(
        (s.get("packing", {}).get("strategy") or {}).get("padded_packs", 0) for s in shards
    )
    return {
        "instances": inst,
        "packs": packs,
        "efficiency_unpacked": real / (inst * max_seq_length) if inst else None,
        "efficiency": real / (packs * max_seq_length) if packs else None,
        "speedup": inst / packs if packs else None,
        "padded_packs": padded,
    }


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


def print_warnings(manifest: dict[str, Any]) -> None:
    """The manifest's statistical warnings, one ``warning: `` line each on stderr."""
    split = manifest.get("split")
    if split and split["role"] == "validation" and not manifest["totals"]["instances"]:
        print(
            f"warning: --validation-docs {split['validation_docs']} held out no document "
            "with tokens: the validation dataset is empty (give a larger count or fraction)",
            file=sys.stderr,
        )
    for w in manifest.get("warnings") or []:
        print(f"warning: {w['message']}", file=sys.stderr)


def print_report(
    manifest: dict[str, Any], out: str, counters: bool = True, warnings: bool = True
) -> None:
    """The masking statistics (and the packing report) in a few lines, then warnings."""
    s = manifest["statistics"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        f"instances            {s['instances']:,} in {len(manifest['shards'])} shards "
        f"({', '.join(manifest['formats'])}) -> {out}",
        f"mean length          {s['mean_length'] or 0:.1f} tokens (padding {pct(s['padding_fraction'])})",
        f"short targets        {pct(s['short_target_fraction'])}",
        f"NSP random next      {pct(s['random_next_fraction'])}",
        f"masked per instance  {s['masked_per_instance'] or 0:.2f} ({pct(s['masked_fraction'])} of tokens)",
        f"[MASK]/kept/random   {pct(s['mask_token_fraction'])} / {pct(s['kept_fraction'])} / "
        f"{pct(s['random_fraction'])}",
    ]
    if manifest.get("packing"):
        pk = manifest["packing"]
        lines.append(
            f"packing              {pk['instances']:,} instances -> {pk['packs']:,} packs, "
            f"efficiency {pct(pk['efficiency_unpacked'])} -> {pct(pk['efficiency'])}, "
            f"speed-up {pk['speedup'] or 0:.3f}, strategy "
            f"{manifest.get('timings', {}).get('strategy_seconds', 0.0):.2f} s"
        )
    if manifest.get("megatron"):
        m = manifest["megatron"]
        lines.append(
            f"megatron             {m['documents']:,} documents, {m['sentences']:,} sentences "
            f"-> {m['prefix']}.bin/.idx"
        )
    if counters:
        print(
            format_summary(
                f"done in {manifest['timings']['elapsed_seconds']:.1f} s", manifest["counters"]
            )
        )
    print("\n".join(lines))
    if warnings:
        sys.stdout.flush()
        print_warnings(manifest)
