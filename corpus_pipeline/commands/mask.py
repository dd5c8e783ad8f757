"""``corpus-pipeline mask``: sentence-split documents -> statically masked BERT shards."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from corpus_pipeline import fsio, outdir, resources
from corpus_pipeline.beam.mask import VocabSpec
from corpus_pipeline.commands.common import add_beam_flags, add_overwrite_flag, positive
from corpus_pipeline.config import PRESETS, MaskConfig, PackConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.documents import list_document_paths
from corpus_pipeline.stages.masking import MaskVocab
from corpus_pipeline.stages.wordpiece import load_vocab_checked
from pipelines.mask import (
    SHARD_TARGET_INSTANCES,
    default_shards,
    input_text_bytes,
    mask_documents,
    mask_fingerprint,
    print_report,
    space_line,
)

EXAMPLES = """examples:
  corpus-pipeline mask --input out/docs --output out/wiki-128 --preset phase1 --dupe-factor 5
  corpus-pipeline mask --input out/docs --output out/wiki-512 --preset phase2 --format all
  corpus-pipeline mask --input out/docs --output out/packed --preset phase2 --pack --max-per-pack 3
"""


def add_mask_flags(p: argparse.ArgumentParser) -> None:
    """Masking, vocabulary, output and packing flags (shared with ``run``)."""
    d = MaskConfig()
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="phase1 (S=128, P=20), phase2 (S=512, P=80) or 384 (P=56)",
    )
    p.add_argument(
        "--max-seq-length", type=int, default=None, help=f"S (default {d.max_seq_length})"
    )
    p.add_argument(
        "--max-predictions",
        type=int,
        default=None,
        help=f"P, masked positions per instance (default {d.max_predictions})",
    )
    p.add_argument("--masked-lm-prob", type=float, default=d.masked_lm_prob)
    p.add_argument("--short-seq-prob", type=float, default=d.short_seq_prob)
    p.add_argument("--dupe-factor", type=int, default=d.dupe_factor)
    p.add_argument("--whole-word-mask", action="store_true")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--bucket-size",
        type=int,
        default=d.bucket_size,
        help="documents per negative-sampling bucket (memory bound)",
    )
    p.add_argument(
        "--bucket-chars",
        type=int,
        default=d.bucket_chars,
        help=f"characters per bucket at most, for long documents (default {d.bucket_chars:,})",
    )
    p.add_argument("--vocab", default=None, help="WordPiece vocab.txt (default: bundled BERT)")
    p.add_argument("--cased", action="store_true", help="cased vocabulary and no lower-casing")
    p.add_argument(
        "--strip-accents",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="strip accents before WordPiece (default: strip when uncased, keep when --cased, "
        "as BERT; --no-strip-accents keeps ά and ガ with an uncased vocabulary)",
    )
    p.add_argument(
        "--format",
        default="hdf5",
        help="comma-separated: hdf5, tfrecord, mmap, or all (default hdf5)",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=None,
        help="number of output shards (default: 4, more for large inputs, so that a shard "
        f"holds about {SHARD_TARGET_INSTANCES:,} instances at most: its writer holds it in "
        "memory)",
    )
    p.add_argument("--name", default="wiki", help="shard name prefix (default wiki)")
    p.add_argument(
        "--no-space-check",
        action="store_true",
        help="run even when the estimated output is larger than the free disk space",
    )
    p.add_argument("--pack", action="store_true", help="write packed shards instead of unpacked")
    p.add_argument("--max-per-pack", type=int, default=PackConfig.max_per_pack)
    p.add_argument(
        "--strategy",
        default=PackConfig.strategy,
        help="packing strategy: lp, nnlshp, spfhp, lpfhp (default lp)",
    )
    add_overwrite_flag(p)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "mask",
        help="documents -> WordPiece -> static masking (NSP + MLM) -> shards",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="DOCS",
        help="document files or folders (from `extract`); repeatable",
    )
    p.add_argument("--output", required=True, metavar="DIR")
    add_mask_flags(p)
    add_beam_flags(p)
    return p


def mask_config(args: argparse.Namespace) -> MaskConfig:
    """MaskConfig from flags: preset first, explicit flags override it."""
    base: dict[str, Any] = dict(PRESETS[args.preset]) if args.preset else {}
    if args.max_seq_length is not None:
        base["max_seq_length"] = args.max_seq_length
    if args.max_predictions is not None:
        base["max_predictions"] = args.max_predictions
    cfg = replace(
        MaskConfig(**base),
        masked_lm_prob=args.masked_lm_prob,
        short_seq_prob=args.short_seq_prob,
        dupe_factor=args.dupe_factor,
        whole_word_mask=args.whole_word_mask,
        seed=args.seed,
        bucket_size=positive("--bucket-size", args.bucket_size),
        bucket_chars=positive("--bucket-chars", args.bucket_chars),
    )
    cfg.validate()
    return cfg


def pack_config(args: argparse.Namespace) -> PackConfig | None:
    if not args.pack:
        return None
    from corpus_pipeline.stages.pack_strategies import STRATEGIES

    if args.strategy not in STRATEGIES:
        raise UserError(f"--strategy {args.strategy!r}: choose from {', '.join(STRATEGIES)}")
    return PackConfig(
        max_per_pack=positive("--max-per-pack", args.max_per_pack),
        strategy=args.strategy,
        seed=args.seed,
    )


def vocab_info(args: argparse.Namespace) -> tuple[VocabSpec, dict[str, Any], MaskVocab]:
    path = fsio.abspath(args.vocab) if args.vocab else str(resources.default_vocab(args.cased))
    local = fsio.local_copy(path)  # a remote vocabulary is read from a downloaded copy
    tokens = load_vocab_checked(local)
    mvocab = MaskVocab.from_tokens(tokens, source=path)
    # Workers get the bundled vocabulary from their own package, any other one by content.
    bundled = None if args.vocab else ("cased" if args.cased else "uncased")
    strip = getattr(args, "strip_accents", None)
    spec = VocabSpec.from_file(local, fsio.basename(path), bool(args.cased), bundled, strip)
    info = {
        "file": fsio.basename(path),
        "sha256": spec.sha256,
        "size": len(tokens),
        "cased": bool(args.cased),
        "strip_accents": (not args.cased) if strip is None else bool(strip),
    }
    return spec, info, mvocab


@outdir.releasing
def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    cfg = mask_config(args)
    pcfg = pack_config(args)
    formats = registry.parse_formats(args.format)
    positive("--workers", args.workers)
    files = list_document_paths(args.input)
    if args.shards is None:
        args.shards = default_shards(input_text_bytes(files), cfg)
    positive("--shards", args.shards)
    vspec, vinfo, mvocab = vocab_info(args)
    out = fsio.abspath(args.output)
    fsio.check_output_path(out, args.input)
    print(
        space_line(
            out,
            input_text_bytes(files),
            cfg,
            formats,
            packed=pcfg is not None,
            unpacked=pcfg is None,
            docs=False,
            skip=args.no_space_check,
        ),
        flush=True,
    )
    fp = mask_fingerprint("mask", cfg, pcfg, formats, args.shards, args.name, vinfo, files)
    outdir.claim(out, fp, overwrite=args.overwrite)
    manifest = mask_documents(
        files,
        out,
        cfg,
        pcfg,
        formats,
        args.shards,
        args.name,
        vspec,
        vinfo,
        mvocab,
        args.workers,
        beam_args,
        fp,
    )
    outdir.finish(out, outdir.manifest_files(manifest))
    print_report(manifest, out)
    return 0
