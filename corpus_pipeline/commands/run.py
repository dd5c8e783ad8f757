"""``corpus-pipeline run``: the whole pipeline in one Beam graph (``pipelines/pretraining.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from pipelines import pretraining

    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="dumps and books -> documents -> masked (and packed) shards, one Beam graph",
        description=pretraining.__doc__,
        epilog=pretraining.EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pretraining.add_flags(p)
    return p


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipelines import pretraining

    return pretraining.run(pretraining.config_from_args(args), args, args.workers, beam_args)
