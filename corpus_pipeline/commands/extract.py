"""``corpus-pipeline extract``: Wikipedia dumps and books -> sentence-split document shards.

Flags -> :class:`ExtractConfig` and :class:`SentenceConfig` -> ``beam.extract``'s graph. The
Beam modules are imported when the verb runs, not for ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from corpus_pipeline import fsio, outdir
from corpus_pipeline.commands.common import (
    add_beam_flags,
    add_overwrite_flag,
    add_text_dir_flag,
    positive,
    runner_args,
)
from corpus_pipeline.commands.options import add_options, from_args
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.documents import DOC_FORMATS

DESCRIPTION = """\
Wikipedia dumps, JSON-lines, Parquet, .txt folders and books -> sentence-split documents,
sharded, with a manifest.json (what `vocab`, `mask` and `verify` read)."""

EXAMPLES = """examples:
  corpus-pipeline extract --input enwiki-latest-pages-articles.xml.bz2 --output out/docs
  corpus-pipeline extract --input enwiki-latest-pages-articles-multistream.xml.bz2 \\
      --index enwiki-latest-pages-articles-multistream-index.txt.bz2 --output out/docs --shards 64
  corpus-pipeline extract --books books/ --output out/books --format jsonl
  corpus-pipeline extract --input corpus.jsonl.zst --text-key content --output out/docs
  corpus-pipeline extract --text-dir my_texts/ --doc-per-file --output out/docs
  corpus-pipeline extract --input dump.xml.bz2 --max-docs 1000 --output out/try
"""

INPUT_HELP = (
    "Wikipedia dump (.xml, .xml.bz2, .gz, .xz; multistream too), or JSON-lines (.jsonl, "
    ".jsonl.gz, .jsonl.zst, .jsonl.bz2, .jsonl.xz) or Parquet (.parquet) with a text field; "
    "repeatable"
)
INDEX_HELP = (
    "multistream index (...-multistream-index.txt.bz2), one per --input, in order; found "
    "automatically when it lies beside the dump"
)
BOOKS_HELP = "folder of .txt books, one book = one document; repeatable"


def add_input_flags(p: argparse.ArgumentParser) -> None:
    """``--input``, ``--index``, ``--books``, ``--text-dir`` (shared with ``run``)."""
    p.add_argument("--input", action="append", default=[], metavar="FILE", help=INPUT_HELP)
    p.add_argument("--index", action="append", default=[], metavar="INDEX", help=INDEX_HELP)
    p.add_argument("--books", action="append", default=[], metavar="DIR", help=BOOKS_HELP)
    add_text_dir_flag(p)


def flagged_paths(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(flag, path)`` of ``--output`` and every input (for ``runner_args``)."""
    flags = ("input", "index", "books", "text_dir")
    paths = [("--" + f.replace("_", "-"), p) for f in flags for p in getattr(args, f)]
    return [("--output", args.output), *paths]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``extract`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "extract",
        help="Wikipedia dump and/or books -> sentence-split documents",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_flags(p)
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--shards", type=int, default=4, help="number of output shards (default 4)")
    p.add_argument("--name", default=None, help="shard name prefix (default: wiki, books or mixed)")
    p.add_argument(
        "--format",
        choices=DOC_FORMATS,
        default="text",
        help="text: one sentence per line, blank line between documents (Google's "
        "format); jsonl: id, title, source, sentences (default text)",
    )
    add_options(p.add_argument_group("extraction"), ExtractConfig)
    add_options(p.add_argument_group("sentence splitting"), SentenceConfig)
    add_overwrite_flag(p)
    add_beam_flags(p)
    return p


def configs_from_args(
    args: argparse.Namespace, dumps: Sequence[str]
) -> tuple[ExtractConfig, SentenceConfig]:
    """ExtractConfig and SentenceConfig from the flags.

    The language of the dumps and other text is ``--lang``, else read from the dumps; that of
    the books is ``--books-language``, else ``--lang`` when books are the only input (the
    flag can mean nothing else there), else ``en``: a Japanese dump does not make English
    books Japanese.
    """
    from corpus_pipeline.beam.extract_plan import resolve_language
    from corpus_pipeline.stages.sentences import normalize_language

    ecfg = from_args(args, ExtractConfig)
    scfg = from_args(args, SentenceConfig)
    books_lang = scfg.books_language
    if args.books_language is not None:
        try:
            books_lang = normalize_language(args.books_language)
        except UserError as e:
            raise UserError(str(e).replace("--lang", "--books-language", 1)) from None
    elif args.language and not dumps and not args.text_dir:
        books_lang = normalize_language(args.language)
    return ecfg, replace(
        scfg, language=resolve_language(args.language, dumps), books_language=books_lang
    )


@outdir.releasing
def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Extract; print the counter summary; exit 1 when damage exceeds --max-loss."""
    import apache_beam as beam

    from corpus_pipeline.beam.counters import Timer, format_summary
    from corpus_pipeline.beam.extract import ExtractDocuments, cleanup_chunks
    from corpus_pipeline.beam.extract_loss import loss_report, report_loss
    from corpus_pipeline.beam.extract_plan import (
        check_text_dirs,
        default_name,
        find_dump_index,
        plan_tasks,
        skipped_book_files,
        total_bytes,
    )
    from corpus_pipeline.beam.progress import progress_bar
    from corpus_pipeline.beam.runner import run_pipeline
    from corpus_pipeline.formats import manifest as mf

    if not args.input and not args.books and not args.text_dir:
        raise UserError("nothing to extract: give --input FILE, --text-dir DIR or --books DIR")
    positive("--shards", args.shards)
    if args.index and len(args.index) != len(args.input):
        raise UserError("give one --index per --input (or none: indexes beside dumps are found)")
    for path in args.input:
        fsio.check_input_file(path, "--input", ": give the dump file (e.g. *.xml.bz2)")
    for path in args.index:
        fsio.check_input_file(path, "--index")
    check_text_dirs(args.text_dir)
    ecfg, scfg = configs_from_args(args, args.input)
    workers, beam_args = runner_args(
        args.workers, beam_args, [*args.input, *args.text_dir, *args.books], flagged_paths(args)
    )
    indexes = args.index or [find_dump_index(d) for d in args.input]
    name = args.name or default_name(args.input, args.text_dir, args.books)
    out = fsio.abspath(args.output)
    fsio.check_output_path(out, [*args.input, *args.text_dir, *args.books])
    fp = outdir.fingerprint(
        "extract",
        config={"extract": asdict(ecfg), "sentences": asdict(scfg)},
        inputs=outdir.input_files(
            [*args.input, *[i for i in indexes if i], *args.text_dir, *args.books]
        ),
        formats=[args.format],
        shards=args.shards,
        name=name,
    )
    outdir.claim(out, fp, overwrite=args.overwrite)

    timer = Timer()
    inputs = [*zip(args.input, indexes, strict=True), *((d, None) for d in args.text_dir)]
    tasks = plan_tasks(inputs, args.books, ecfg, scfg)
    shard_list = os.path.join(out, ".chunks", "shards.json")
    with progress_bar(total_bytes(tasks), "extract", unit="B") as progress:

        def build(p: beam.Pipeline) -> None:
            (
                p
                | "Extract"
                >> ExtractDocuments(
                    tasks,
                    out,
                    ecfg,
                    scfg,
                    args.shards,
                    name,
                    args.format,
                    progress,
                    skipped_book_files(args.books),
                )
                | "Collect" >> beam.combiners.ToList()
                | "Record" >> beam.Map(_write_json, shard_list)
            )

        counts = run_pipeline(build, workers, beam_args)
    with fsio.open_text(shard_list) as f:
        shards = sorted(json.load(f), key=lambda s: s["shard"])
    cleanup_chunks(out)
    loss = loss_report(counts, ecfg.max_loss)
    manifest = mf.DocumentsManifest(
        format=args.format,
        lang=scfg.language,
        books_lang=scfg.books_language if args.books else None,
        inputs=[fsio.abspath(x) for x in [*args.input, *args.text_dir, *args.books]],
        shards=[mf.DocumentShard.from_json(s) for s in shards],
        documents=sum(s["documents"] for s in shards),
        counters=counts,
        loss=loss,
        config={"extract": asdict(ecfg), "sentences": asdict(scfg)},
        fingerprint=mf.Fingerprint.from_json(fp),
    )
    mf.write_manifest(out, manifest)  # signed, like every manifest
    outdir.finish(out, outdir.manifest_files(manifest.to_json()))
    print(
        format_summary(
            f"extract: {manifest.documents:,} documents in {len(shards)} shards -> {out}",
            counts,
            timer.elapsed,
        )
    )
    report_loss(loss, [*args.input, *args.text_dir], out)
    return 0


def _write_json(obj: Any, path: str) -> None:
    fsio.write_text(path, json.dumps(obj))
