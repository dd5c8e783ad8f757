"""``corpus-pipeline run``: dumps, text and books -> documents -> masked (and packed) shards.

Flags -> :class:`pipelines.pretraining.PipelineConfig` -> ``pipelines.pretraining.run``, the
whole pipeline in one Beam graph. Output layout::

    OUT/docs/        sentence-split documents (Google text format) + manifest.json
    OUT/unpacked/    hdf5/ tfrecord/ mmap/ (+ the Megatron sentence dataset) + manifest.json
    OUT/packed/      the same instances packed (--pack) + manifest.json
    OUT/run.json     what was run, and where each dataset is
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.beam.extract import (
    add_text_flags,
    check_text_dirs,
    find_dump_index,
    resolve_language,
)
from corpus_pipeline.commands import mask as mask_cmd
from corpus_pipeline.commands.common import add_beam_flags, add_lang_flag, positive
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from pipelines import mask as mask_graph
from pipelines.pretraining import PipelineConfig

EXAMPLES = """examples:
  corpus-pipeline run --input enwiki-latest-pages-articles-multistream.xml.bz2 --output out/wiki-128 \\
      --preset phase1 --format all --pack
  corpus-pipeline run --input dump.xml.bz2 --books books/ --output out/mixed --preset phase2
  corpus-pipeline run ... --runner DataflowRunner --project P --region R --temp_location gs://b/tmp
"""


def add_flags(p: argparse.ArgumentParser, *, wiki: bool = True, books: bool = True) -> None:
    if wiki:
        p.add_argument(
            "--input",
            action="append",
            default=[],
            metavar="FILE",
            help="Wikipedia dump (multistream index found beside it), or JSON-lines (.jsonl, "
            ".jsonl.gz, .jsonl.zst) or Parquet (.parquet) with a text field; repeatable",
        )
        p.add_argument("--index", action="append", default=[], metavar="INDEX")
        p.add_argument(
            "--max-loss",
            type=float,
            default=ExtractConfig.max_loss,
            metavar="FRACTION",
            help="exit 1 when damage (malformed pages, truncated or corrupt streams) costs "
            f"more than this share of the input (default {ExtractConfig.max_loss})",
        )
    if books:
        p.add_argument(
            "--books",
            action="append",
            default=[],
            metavar="DIR",
            help="folder of .txt books; repeatable",
        )
    add_text_flags(p)  # --text-dir, --text-key, --id-key, --doc-per-file, --max-docs
    add_lang_flag(p)
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument(
        "--doc-shards",
        type=int,
        default=8,
        help="document shards (also the unit of masking work; default 8)",
    )
    mask_cmd.add_mask_flags(p)
    p.set_defaults(format="all")
    add_beam_flags(p)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    dumps = list(getattr(args, "input", []) or [])
    indexes = list(getattr(args, "index", []) or [])
    book_dirs = list(getattr(args, "books", []) or [])
    text_dirs = list(getattr(args, "text_dir", []) or [])
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
    return PipelineConfig(
        output=fsio.abspath(args.output),
        dumps=pairs,
        books=tuple(book_dirs),
        extract=ExtractConfig(
            max_loss=getattr(args, "max_loss", ExtractConfig.max_loss),
            text_key=args.text_key,
            id_key=args.id_key,
            doc_per_file=args.doc_per_file,
            max_docs=args.max_docs,
        ),
        sentences=SentenceConfig(language=resolve_language(getattr(args, "lang", None), dumps)),
        mask=mask_cmd.mask_config(args),
        pack=mask_cmd.pack_config(args),
        formats=registry.parse_formats(args.format),
        doc_shards=positive("--doc-shards", args.doc_shards),
        shards=positive(
            "--shards",
            args.shards
            if args.shards is not None
            else mask_graph.default_shards(
                mask_graph.input_text_bytes([*dumps, *book_dirs], args.max_docs),
                mask_cmd.mask_config(args),
            ),
        ),
        name=args.name,
    )


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="dumps, text and books -> documents -> masked (and packed) shards, one Beam graph",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(p)
    return p


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipelines import pretraining

    cfg = config_from_args(args)
    return pretraining.run(
        cfg,
        mask_cmd.vocab_info(args),
        args.workers,
        beam_args,
        space_check=not args.no_space_check,
        overwrite=bool(args.overwrite),
    )
