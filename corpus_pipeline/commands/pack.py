"""``corpus-pipeline pack``: pack an unpacked dataset, up to K sequences per row.

One Beam element per input shard: its instances are read back, packed with the chosen
strategy on that shard's length histogram (memory bounded by shard size; see
``stages/packing.py`` for the efficiency cost of per-shard histograms, which is negligible at
shard sizes of a few thousand instances and up), and written in every requested format.
Flags -> :class:`PackConfig`; the Beam modules are imported when the verb runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from corpus_pipeline import fsio, outdir
from corpus_pipeline.commands.common import add_beam_flags, add_overwrite_flag, runner_args
from corpus_pipeline.commands.options import add_options, from_args
from corpus_pipeline.config import PackConfig
from corpus_pipeline.errors import UserError

DESCRIPTION = """\
Pack an unpacked dataset (from `mask`, or run's OUT/unpacked/): up to K instances per row,
with the attention kept block-diagonal, so less of each row is padding. Packed shard i holds
the instances of input shard i."""

EXAMPLES = """examples:
  corpus-pipeline pack --input out/wiki-512 --output out/wiki-512-packed --max-per-pack 3
  corpus-pipeline pack --input out/wiki-128 --output out/packed --strategy spfhp --format tfrecord
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``pack`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "pack",
        help="pack masked instances, up to K per row (block-diagonal attention)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, metavar="DIR", help="an unpacked dataset folder")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", default=None, help="output formats (default: those of the input)")
    p.add_argument(
        "--read-format", default=None, help="which input format to read (default: the first)"
    )
    add_options(
        p.add_argument_group("packing"),
        PackConfig,
        default_help={"seed": "the input dataset's seed"},
    )
    add_overwrite_flag(p)
    add_beam_flags(p)
    return p


@outdir.releasing
def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Pack ``--input`` into ``--output``; print the report."""
    import apache_beam as beam

    from corpus_pipeline.beam.counters import Timer
    from corpus_pipeline.beam.options import spread
    from corpus_pipeline.beam.progress import progress_bar
    from corpus_pipeline.beam.runner import run_pipeline
    from corpus_pipeline.beam.shards import (
        PackShardFromDataset,
        ShardSpec,
        manifest_counters,
        prepare_output,
    )
    from corpus_pipeline.formats import manifest as mf
    from corpus_pipeline.formats import registry
    from corpus_pipeline.stages.pack_strategies import STRATEGIES
    from pipelines.mask_plan import save_json
    from pipelines.mask_report import packing_report, print_report, split_timings

    src = fsio.abspath(args.input)
    m = mf.load_manifest(src)
    if isinstance(m, mf.DocumentsManifest):
        raise UserError(
            f"{src}: is a documents folder (from `extract`), not a masked dataset: pack needs "
            "the output of `corpus-pipeline mask` (or the unpacked/ folder of `run`)"
        )
    if m.packed:
        raise UserError(f"{src}: already packed; pack an unpacked dataset (from `mask`)")
    formats = registry.parse_formats(args.format) if args.format else tuple(m.formats)
    read_fmt = args.read_format or m.formats[0]
    if read_fmt not in m.formats:
        raise UserError(f"--read-format {read_fmt}: {src} has {', '.join(m.formats)}")
    workers, beam_args = runner_args(
        args.workers, beam_args, [src], [("--output", args.output), ("--input", args.input)]
    )
    if "hdf5" in formats and m.vocab.size >= 32768:
        raise UserError(
            f"{src}: vocabulary of {m.vocab.size} entries, but packed HDF5 (MLPerf) stores "
            "int16 ids and needs < 32768: choose --format tfrecord,mmap"
        )
    pcfg = from_args(args, PackConfig, {"seed": m.seed})  # default: the input's seed
    if pcfg.strategy not in STRATEGIES:
        raise UserError(f"--strategy {pcfg.strategy!r}: choose from {', '.join(STRATEGIES)}")
    seed = pcfg.seed
    out = fsio.abspath(args.output)
    fsio.check_output_path(out, [src])
    fp = outdir.fingerprint(
        "pack",
        config={"pack": asdict(pcfg)},
        # The input dataset is its manifest (every shard's sha256 is in it).
        inputs={"manifest": fsio.sha256(mf.manifest_path(src)), "read_format": read_fmt},
        formats=list(formats),
        shards=len(m.shards),
        name=m.name,
    )
    outdir.claim(out, fp, overwrite=args.overwrite)
    timer = Timer()
    spec = ShardSpec(
        out,
        m.name,
        formats,
        m.max_seq_length,
        m.max_predictions,
        m.vocab.size,
        seed,
        pcfg,
        fp["sha256"],
    )
    prepare_output(out, formats)
    work = os.path.join(out, ".work")
    fsio.rmtree(work)
    fsio.filesystem(work).makedirs(work)
    # Every source shard, so packed shard i is source shard i; empty ones give empty shards.
    indices = [s.index for s in m.shards]
    empty = frozenset(s.index for s in m.shards if s.is_empty)
    with progress_bar(len(indices), "pack", unit="shard") as progress:

        def build(p: beam.Pipeline) -> None:
            shards = p | "Shards" >> beam.Create(indices, reshuffle=False)
            _ = (
                spread(shards, "Spread")
                | "Pack"
                >> beam.ParDo(PackShardFromDataset(spec, src, m.name, read_fmt, progress, empty))
                | "Collect" >> beam.combiners.ToList()
                | "Save" >> beam.Map(save_json, os.path.join(work, "shards.json"))
            )

        counts = run_pipeline(build, workers, beam_args)
    with fsio.open_text(os.path.join(work, "shards.json")) as f:
        shards = sorted(json.load(f), key=lambda s: s["index"])
    timings = split_timings(shards)
    fsio.rmtree(work)
    fsio.rmtree(os.path.join(out, ".markers"))
    n_in = m.totals.instances
    n_out = sum(s["instances"] for s in shards)
    if n_in != n_out:
        raise UserError(
            f"{src}: read {n_out} instances but the manifest lists {n_in}: "
            "run `corpus-pipeline verify` on it"
        )
    manifest = dataclasses.replace(
        m,
        kind="packed",
        formats=list(formats),
        max_per_pack=pcfg.max_per_pack,
        seed=seed,
        shards=[mf.ShardEntry.from_json(s) for s in shards],
        megatron=None,
        config={**m.config, "pack": asdict(pcfg)},
        totals=dataclasses.replace(m.totals, records=sum(s["records"] for s in shards)),
        counters=manifest_counters(counts),
        packing=packing_report(shards, m.max_seq_length),
        source=os.path.basename(src),
        timings={"elapsed_seconds": round(timer.elapsed, 2), **timings},
        fingerprint=mf.Fingerprint.from_json(fp),
        version=None,
        created=None,
        signature=None,
    )
    mf.write_manifest(out, manifest)
    written = manifest.to_json()
    outdir.finish(out, outdir.manifest_files(written))
    print_report(written, out)
    return 0
