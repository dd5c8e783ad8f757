"""Flags shared by the Beam verbs."""

from __future__ import annotations

import argparse

from corpus_pipeline.config import default_workers
from corpus_pipeline.errors import UserError


def add_beam_flags(p: argparse.ArgumentParser) -> None:
    """``--workers`` (local runner) and a note that other flags go to Beam."""
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="local worker processes (FnApiRunner multi_processing); default: cores",
    )


def add_lang_flag(p: argparse.ArgumentParser) -> None:
    """``--lang``: the language of the text, for sentence splitting."""
    p.add_argument(
        "--lang",
        default=None,
        metavar="CODE",
        help="Wikipedia language code of the text (en, ja, el, zh-yue), for sentence "
        "splitting; default: read from the dump's <siteinfo> <dbname> (jawiki -> ja), "
        "en for books",
    )


def add_overwrite_flag(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: empty an output folder that holds another dataset (see ``outdir.py``)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what --output holds (a dataset of another configuration, an unfinished "
        "run); refused for folders corpus-pipeline did not write",
    )


def positive(name: str, value: int) -> int:
    """Check a flag is >= 1."""
    if value < 1:
        raise UserError(f"{name} must be >= 1 (got {value})")
    return value
