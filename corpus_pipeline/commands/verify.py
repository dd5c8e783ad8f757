"""``corpus-pipeline verify OUT``: check every shard of a dataset folder against its manifest.

Runs in-process, not as a Beam pipeline: verification is I/O-bound and per file, and its result
is read on the launcher. Shards are verified in parallel by ``--workers`` processes with a
deterministic output order. See :mod:`corpus_pipeline.verify` for every check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from corpus_pipeline.commands.common import positive
from corpus_pipeline.errors import UserError

EXAMPLES = """examples:
  corpus-pipeline verify out/wiki
  corpus-pipeline verify out/wiki --format hdf5 --quick
  corpus-pipeline verify out/wiki --workers 8

Works on dataset folders (mask, pack, run) and on documents folders (extract, run's docs/):
for those, each shard's sha256 and document count, and missing or unlisted shard files.
A `run` folder (run.json, no manifest.json) is verified dataset by dataset (docs, unpacked,
packed, validation/unpacked, validation/packed), one OK line each.
A manifest edited after it was written (its signature no longer matches) is a problem; an
unsigned manifest (written by a version before signatures) only gets a warning.

exit status: 0 when every check holds (one OK line), 1 when a problem was found (one line per
problem, each naming the file), 2 for a usage error (no manifest, unknown format).
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``verify`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="check every shard of a dataset folder against its manifest",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="dataset folder (with manifest.json)")
    p.add_argument(
        "--format",
        default=None,
        metavar="F",
        help="formats to check: hdf5, tfrecord, mmap, comma-separated (default: all the "
        "dataset has)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="skip the sha256 of every file (truncation, structure and values are still checked)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes verifying shards in parallel (default: cores for datasets over 64 MiB, "
        "else 1)",
    )
    return p


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Verify; print one line per problem (exit 1) or one OK line (exit 0)."""
    from corpus_pipeline.formats.registry import parse_formats
    from corpus_pipeline.verify import run_verification

    if beam_args:
        raise UserError(
            f"verify does not run a Beam pipeline; unknown option {beam_args[0]!r} "
            "(see corpus-pipeline verify --help)"
        )
    formats = parse_formats(args.format) if args.format else None
    workers = positive("--workers", args.workers) if args.workers is not None else None
    datasets = run_datasets(args.out)
    rc = 0
    for name, folder in datasets.items() if datasets else [("", args.out)]:
        documents = name == "docs"  # a documents folder has no shard formats
        report = run_verification(
            folder, None if documents else formats, quick=args.quick, workers=workers
        )
        for line in report.warnings:
            print(f"warning: {line}", file=sys.stderr)
        for line in report.problems:
            print(line)
        summary = f"{name}: {report.summary()}" if name else report.summary()
        if report.ok:
            print(summary)
        else:
            print(summary, file=sys.stderr)
            rc = 1
    return rc


def run_datasets(out: str) -> dict[str, str] | None:
    """The datasets of a ``run`` folder (its ``run.json``), by name; None for any other folder."""
    path = os.path.join(out, "run.json")
    if os.path.isfile(os.path.join(out, "manifest.json")) or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            datasets = json.load(f)["datasets"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: unreadable run.json: re-run the command that wrote it") from None
    return {str(k): os.path.join(out, str(v)) for k, v in datasets.items()}
