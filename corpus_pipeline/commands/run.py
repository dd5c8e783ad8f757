"""``corpus-pipeline run``: dumps, text and books -> documents -> masked (and packed) shards.

Flags -> :class:`pipelines.pretraining.PipelineConfig` -> ``pipelines.pretraining.run``, the
whole pipeline in one Beam graph. Every option of ``extract`` and ``mask`` is a ``run`` option
too (the same config fields). The Beam modules are imported when the verb runs, not for
``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.commands import extract as extract_cmd
from corpus_pipeline.commands import mask as mask_cmd
from corpus_pipeline.commands.common import add_beam_flags, positive, runner_args
from corpus_pipeline.commands.options import add_options
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError

DESCRIPTION = """\
The whole pipeline in one go: Wikipedia dumps, JSON-lines, Parquet, .txt folders and books ->
sentence-split documents -> WordPiece -> static masking -> (packing) -> shards. It writes:

    OUT/docs/        the sentence-split documents (Google's text format) + manifest.json
    OUT/unpacked/    hdf5/ tfrecord/ mmap/ (+ the Megatron sentence dataset) + manifest.json
    OUT/packed/      the same instances packed (with --pack) + manifest.json
    OUT/run.json     what was run, and where each dataset is

A killed run resumes when the same command is run again (finished shards are kept)."""

EXAMPLES = """examples:
  corpus-pipeline run --input enwiki-latest-pages-articles-multistream.xml.bz2 --output out/wiki-128 \\
      --preset phase1 --format all --pack
  corpus-pipeline run --input dump.xml.bz2 --books books/ --output out/mixed --preset phase2
  corpus-pipeline run ... --runner DataflowRunner --project P --region R --temp_location gs://b/tmp
"""


def add_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of ``run``: extract's inputs and options, mask's, ``--doc-shards``."""
    extract_cmd.add_input_flags(p)
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--doc-shards",
        type=int,
        default=8,
        help="document shards in OUT/docs (also the unit of masking work; default 8)",
    )
    add_options(p.add_argument_group("extraction"), ExtractConfig)
    add_options(p.add_argument_group("sentence splitting"), SentenceConfig)
    mask_cmd.add_mask_flags(p, run=True)
    add_beam_flags(p)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`pipelines.pretraining.PipelineConfig` of the flags.

    Raises:
        UserError: No input, a missing or wrong input, or a bad option value.
    """
    from corpus_pipeline.beam.extract_plan import check_text_dirs, find_dump_index
    from corpus_pipeline.formats import registry
    from pipelines import mask_plan
    from pipelines.pretraining import PipelineConfig

    dumps = list(args.input)
    indexes = list(args.index)
    book_dirs = list(args.books)
    text_dirs = list(args.text_dir)
    if not dumps and not book_dirs and not text_dirs:
        raise UserError("nothing to process: give --input FILE, --text-dir DIR or --books DIR")
    if indexes and len(indexes) != len(dumps):
        raise UserError("give one --index per --input (or none)")
    for path in dumps:
        fsio.check_input_file(path, "--input", ": give the dump file (e.g. *.xml.bz2)")
    for path in indexes:
        fsio.check_input_file(path, "--index")
    check_text_dirs(text_dirs)
    fsio.check_output_path(fsio.abspath(args.output), [*dumps, *text_dirs, *book_dirs])
    pairs = tuple(zip(dumps, indexes or [find_dump_index(d) for d in dumps], strict=True))
    # .txt folders ride with the dumps as (folder, None): plan_tasks tells them apart.
    pairs += tuple((d, None) for d in text_dirs)
    ecfg, scfg = extract_cmd.configs_from_args(args, dumps)
    mcfg = mask_cmd.mask_config(args)
    return PipelineConfig(
        output=fsio.abspath(args.output),
        dumps=pairs,
        books=tuple(book_dirs),
        extract=ecfg,
        sentences=scfg,
        mask=mcfg,
        pack=mask_cmd.pack_config(args),
        formats=registry.parse_formats(args.format),
        doc_shards=positive("--doc-shards", args.doc_shards),
        shards=positive(
            "--shards",
            args.shards
            if args.shards is not None
            else mask_plan.default_shards(
                mask_plan.input_text_bytes([*dumps, *book_dirs], ecfg.max_docs), mcfg
            ),
        ),
        name=args.name,
    )


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``run`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="dumps, text and books -> documents -> masked (and packed) shards, one Beam graph",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(p)
    return p


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Run the whole pipeline into ``--output``; print the report."""
    from pipelines import pretraining

    cfg = config_from_args(args)
    workers, beam_args = runner_args(
        args.workers,
        beam_args,
        [*args.input, *args.text_dir, *args.books],
        extract_cmd.flagged_paths(args),
    )
    return pretraining.run(  # type: ignore[no-any-return]
        cfg,
        mask_cmd.vocab_info(args),
        workers,
        beam_args,
        space_check=not args.no_space_check,
        overwrite=bool(args.overwrite),
    )
