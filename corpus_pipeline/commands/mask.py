"""``corpus-pipeline mask``: sentence-split documents -> statically masked BERT shards.

Flags -> :class:`MaskConfig`, :class:`PackConfig`, :class:`WordPieceConfig` ->
``pipelines.mask``. The Beam modules are imported when the verb runs, not for ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from corpus_pipeline import fsio, outdir, resources
from corpus_pipeline.commands.common import (
    add_beam_flags,
    add_overwrite_flag,
    add_space_check_flag,
    positive,
    runner_args,
)
from corpus_pipeline.commands.options import add_options, from_args
from corpus_pipeline.config import (
    PRESETS,
    SHARD_TARGET_INSTANCES,
    MaskConfig,
    PackConfig,
    WordPieceConfig,
)
from corpus_pipeline.errors import UserError

DESCRIPTION = """\
Sentence-split documents (from `extract`) -> WordPiece -> static masking (MLM + NSP, the
semantics of Google's create_pretraining_data.py) -> shards in HDF5, TFRecord and/or Megatron
mmap, with a manifest.json; --pack writes packed shards instead."""

EXAMPLES = """examples:
  corpus-pipeline mask --input out/docs --output out/wiki-128 --preset phase1 --dupe-factor 5
  corpus-pipeline mask --input out/docs --output out/wiki-512 --preset phase2 --format all
  corpus-pipeline mask --input out/docs --output out/packed --preset phase2 --pack --max-per-pack 3
"""


def add_mask_flags(p: argparse.ArgumentParser, *, run: bool = False) -> None:
    """Masking, vocabulary, output and packing flags (shared with ``run``).

    Args:
        p: The verb's parser.
        run: For ``run``, which writes every format by default and the packed dataset
            beside the unpacked one.
    """
    out = p.add_argument_group("output")
    default_format = "all" if run else "hdf5"
    out.add_argument(
        "--format",
        default=default_format,
        help=f"comma-separated: hdf5, tfrecord, mmap, or all (default {default_format})",
    )
    out.add_argument(
        "--shards",
        type=int,
        default=None,
        help="number of output shards (default: 4, more for large inputs, so that a shard "
        f"holds about {SHARD_TARGET_INSTANCES:,} instances at most)",
    )
    out.add_argument("--name", default="wiki", help="shard name prefix (default wiki)")
    add_space_check_flag(out)
    add_overwrite_flag(out)
    masking = p.add_argument_group("masking")
    masking.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="phase1 (S=128, P=20), phase2 (S=512, P=80) or 384 (P=56); --max-seq-length "
        "and --max-predictions override it",
    )
    add_options(masking, MaskConfig)
    add_options(p.add_argument_group("vocabulary"), WordPieceConfig)
    packing = p.add_argument_group("packing")
    packing.add_argument(
        "--pack",
        action="store_true",
        help="also write packed shards, in OUT/packed/ beside OUT/unpacked/"
        if run
        else "write packed shards instead of unpacked",
    )
    add_options(packing, PackConfig)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``mask`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "mask",
        help="documents -> WordPiece -> static masking (NSP + MLM) -> shards",
        description=DESCRIPTION,
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
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    add_mask_flags(p)
    add_beam_flags(p)
    return p


def mask_config(args: argparse.Namespace) -> MaskConfig:
    """MaskConfig from flags: preset first, explicit flags override it."""
    cfg = from_args(args, MaskConfig, PRESETS[args.preset] if args.preset else None)
    cfg.validate()
    return cfg


def pack_config(args: argparse.Namespace) -> PackConfig | None:
    """PackConfig from flags (its seed is masking's), or None without ``--pack``."""
    if not args.pack:
        return None
    from corpus_pipeline.stages.pack_strategies import STRATEGIES

    cfg = from_args(args, PackConfig, {"seed": mask_config(args).seed})
    if cfg.strategy not in STRATEGIES:
        raise UserError(f"--strategy {cfg.strategy!r}: choose from {', '.join(STRATEGIES)}")
    return cfg


def vocab_info(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """The vocabulary of a run: (VocabSpec for the workers, manifest info, MaskVocab)."""
    from corpus_pipeline.beam.vocab_spec import VocabSpec
    from corpus_pipeline.stages.masking import MaskVocab
    from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked

    wcfg = from_args(args, WordPieceConfig)
    path = fsio.abspath(wcfg.vocab) if wcfg.vocab else str(resources.default_vocab(wcfg.cased))
    local = fsio.local_copy(path)  # a remote vocabulary is read from a downloaded copy
    tokens = load_vocab_checked(local)
    mvocab = MaskVocab.from_tokens(tokens, source=path)
    # Workers get the bundled vocabulary from their own package, any other one by content.
    bundled = None if wcfg.vocab else ("cased" if wcfg.cased else "uncased")
    strip = wcfg.strip_accents
    spec = VocabSpec.from_file(local, fsio.basename(path), wcfg.cased, bundled, strip)
    info = {
        "file": fsio.basename(path),
        "sha256": spec.sha256,
        "size": len(tokens),
        "cased": wcfg.cased,
        "strip_accents": (not wcfg.cased) if strip is None else bool(strip),
    }
    return spec, info, mvocab


@outdir.releasing
def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Mask the documents into ``--output``; print the report."""
    from corpus_pipeline.formats import registry
    from corpus_pipeline.formats.documents import list_document_paths
    from pipelines.mask import mask_documents
    from pipelines.mask_plan import default_shards, input_text_bytes, mask_fingerprint, space_line
    from pipelines.mask_report import mask_output_files, print_mask_reports

    cfg = mask_config(args)
    pcfg = pack_config(args)
    formats = registry.parse_formats(args.format)
    files = list_document_paths(args.input)
    workers, beam_args = runner_args(
        args.workers,
        beam_args,
        [str(f) for f in files],
        [("--output", args.output), *(("--input", i) for i in args.input)],
    )
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
    manifests = mask_documents(
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
        workers,
        beam_args,
        fp,
    )
    outdir.finish(out, mask_output_files(manifests))
    print_mask_reports(manifests, out)
    return 0
