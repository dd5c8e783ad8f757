"""Finishing a masking run: each dataset's manifest from what the graph left in the plan's
work folder, the files a dataset consists of, and the report printed at the end.

Used by ``corpus-pipeline mask`` (``pipelines/mask.py``), ``run`` (``pipelines/pretraining.py``)
and ``pack``.
"""

from __future__ import annotations

import os
import posixpath
import sys
from dataclasses import asdict
from typing import Any

from corpus_pipeline import fsio, outdir
from corpus_pipeline.beam.counters import format_summary
from corpus_pipeline.beam.mask import VAL_COUNTERS
from corpus_pipeline.beam.shards import ShardSpec, manifest_counters
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.stages.mask_stats import counter_statistics, statistical_warnings
from pipelines.mask_plan import VALIDATION, MaskPlan, load_json, validation_dir


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
