"""``corpus-pipeline verify OUT``: check every shard of a dataset folder against its manifest.

Runs in-process, not as a Beam pipeline: verification is I/O-bound and per file, and its result
is read on the launcher. Shards are verified in parallel by ``--workers`` processes with a
deterministic output order. See :mod:`corpus_pipeline.verify` for every check.
"""

from __future__ import annotations

import argparse
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
    report = run_verification(args.out, formats, quick=args.quick, workers=workers)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in report.problems:
        print(line)
    if report.ok:
        print(report.summary())
        return 0
    print(report.summary(), file=sys.stderr)
    return 1
