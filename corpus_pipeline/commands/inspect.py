"""``corpus-pipeline inspect OUT``: statistics of a dataset, decoded instances, a PNG report.

Prints, per format: instances (and packs), tokens, padding fraction (and packing efficiency),
a length histogram, the NSP random-next rate, masked positions per instance, the masked
fraction and the [MASK] / kept / random split; then decodes ``--show`` records back to text
(``[MASK→x]`` masked, ``[~y→x]`` replaced by a random ``y``, ``[=x]`` kept) and writes the
histograms to ``report.png``.

Works on folders written by this project (with ``manifest.json``) and on foreign folders of the
same schemas without a manifest (DLE ``*training*.hdf5``, Google ``*.tfrecord``, ...): the
format is recognised from names and contents, S and P from the shapes.

Runs in-process, not as a Beam pipeline: one streaming pass over the shards on the launcher.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from corpus_pipeline.errors import UserError

EXAMPLES = """examples:
  corpus-pipeline inspect out/wiki
  corpus-pipeline inspect out/wiki --format tfrecord --show 5 --report /tmp/wiki.png
  corpus-pipeline inspect /data/dle_hdf5 --vocab vocab.txt --no-report   # no manifest
"""

# Statistics that identify a format's content (the same data in two formats agree on them).
_COMPARED = (
    "instances",
    "packs",
    "tokens",
    "length_histogram",
    "masked_count_histogram",
    "random_next_fraction",
    "mask_token_fraction",
    "kept_fraction",
    "random_fraction",
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``inspect`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "inspect",
        help="statistics, decoded samples and a PNG report of a dataset folder",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="dataset folder (with or without manifest.json)")
    p.add_argument(
        "--format",
        default=None,
        metavar="F",
        help="one format: hdf5, tfrecord or mmap (default: every format found)",
    )
    p.add_argument(
        "--show", type=int, default=2, metavar="N", help="records decoded to text (default: 2)"
    )
    p.add_argument(
        "--report", default=None, metavar="PATH", help="PNG report path (default: OUT/report.png)"
    )
    p.add_argument("--no-report", action="store_true", help="do not write the PNG report")
    p.add_argument(
        "--vocab",
        default=None,
        metavar="FILE",
        help="vocabulary to decode with (default: the manifest's, found by name and sha256 in the "
        "folder or the two above it, else the bundled one)",
    )
    p.add_argument("--json", action="store_true", help="print the statistics as JSON instead")
    return p


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Print the statistics and samples, write the report; returns 0."""
    from corpus_pipeline.beam.extract_loss import describe_loss
    from corpus_pipeline.formats.registry import FORMATS
    from corpus_pipeline.inspect_data import (
        decode_instance,
        format_statistics,
        input_losses,
        load_vocabulary,
        open_dataset,
        render_text,
        sample_records,
        write_report,
    )
    from corpus_pipeline.records import Pack

    if beam_args:
        raise UserError(
            f"inspect does not run a Beam pipeline; unknown option {beam_args[0]!r} "
            "(see corpus-pipeline inspect --help)"
        )
    if args.format is not None and args.format not in FORMATS:
        raise UserError(f"--format {args.format}: choose one of {', '.join(FORMATS)}")
    if args.show < 0:
        raise UserError(f"--show must be >= 0 (got {args.show})")
    view = open_dataset(args.out)
    vocab = load_vocabulary(view, args.vocab)
    if vocab.warning:
        print(f"warning: {vocab.warning}", file=sys.stderr)
    for w in (view.manifest.warnings if view.manifest else None) or []:
        print(f"warning: {w.message}", file=sys.stderr)
    fmts = [args.format] if args.format else list(view.formats)
    stats = {}
    for fmt in fmts:
        stats[fmt] = format_statistics(view.view(fmt), vocab)
        if stats[fmt].get("out_of_vocab_ids"):
            print(
                f"warning: {fmt}: {stats[fmt]['out_of_vocab_ids']:,} token id(s) outside the "
                f"vocabulary of {len(vocab.tokens):,} ({vocab.source}), first at "
                f"{stats[fmt]['out_of_vocab_first']}: wrong --vocab, or damaged shards",
                file=sys.stderr,
            )
    first = fmts[0]
    report_path = None
    if not args.no_report:
        report_path = Path(args.report) if args.report else Path(args.out) / "report.png"
        write_report(stats[first], report_path, f"{args.out} ({first})")
    losses = input_losses(view)
    if args.json:
        doc = {"path": str(args.out), "manifest": view.manifest is not None, "formats": stats}
        doc["input_loss"] = {folder: loss.to_json() for folder, loss in losses}
        print(json.dumps(doc, indent=2))
        return 0
    source = "manifest" if view.manifest is not None else "no manifest: detected from the files"
    print(f"{args.out} ({source}); vocabulary {vocab.source}")
    for folder, loss in losses:
        what = describe_loss(loss) or f"none ({loss.pages_read:,} pages read)"
        print(f"input loss ({folder}): {what}")
    for fmt in fmts:
        fv = view.view(fmt)
        widths = f"S={fv.max_seq_length}, P={fv.max_predictions}"
        if fv.max_per_pack:
            widths += f", K={fv.max_per_pack}"
        if fv.derived:
            widths += " (largest seen)"
        kind = "packed" if fv.packed else "instances"
        print(f"{fmt}: {len(fv.shards)} shard(s), {kind}, {widths}")
        same = next(
            (
                g
                for g in fmts[: fmts.index(fmt)]
                if all(stats[g].get(k) == stats[fmt].get(k) for k in _COMPARED)
            ),
            None,
        )
        if same is not None:
            print(f"  same statistics as {same}")
            continue
        for line in render_text(stats[fmt]):
            print(line)
    if args.show:
        fv = view.view(first)
        print(f"first {args.show} record(s) of {first}:")
        for path, row, rec in sample_records(fv, args.show):
            members = rec.instances if isinstance(rec, Pack) else [rec]
            where = f"{path} row {row}"
            if isinstance(rec, Pack):
                print(f"- {where}: pack of {len(members)} ({rec.length} tokens)")
            for j, inst in enumerate(members):
                label = "random next" if inst.next_sentence_label else "actual next"
                head = f"  [{j + 1}]" if isinstance(rec, Pack) else f"- {where}:"
                print(
                    f"{head} {len(inst)} tokens, {len(inst.masked_lm_positions)} masked, "
                    f"NSP: {label}"
                )
                for name, text in zip("AB", decode_instance(inst, vocab), strict=False):
                    print(f"    {name}: {text}")
    if report_path is not None:
        print(f"report: {report_path}")
    return 0
