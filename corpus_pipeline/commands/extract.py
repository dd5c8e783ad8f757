"""``corpus-pipeline extract``: Wikipedia dumps and books -> sentence-split document shards."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio, outdir
from corpus_pipeline.beam.extract import (
    ExtractDocuments,
    add_text_flags,
    check_text_dirs,
    cleanup_chunks,
    default_name,
    find_dump_index,
    loss_report,
    plan_tasks,
    report_loss,
    resolve_language,
    skipped_book_files,
)
from corpus_pipeline.beam.runner import Timer, format_summary, progress_bar, run_pipeline
from corpus_pipeline.commands.common import (
    add_beam_flags,
    add_lang_flag,
    add_overwrite_flag,
    positive,
)
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.formats.documents import DOC_FORMATS

EXAMPLES = """examples:
  corpus-pipeline extract --input enwiki-latest-pages-articles.xml.bz2 --output out/docs
  corpus-pipeline extract --input enwiki-latest-pages-articles-multistream.xml.bz2 \\
      --index enwiki-latest-pages-articles-multistream-index.txt.bz2 --output out/docs --shards 64
  corpus-pipeline extract --books books/ --output out/books --format jsonl
  corpus-pipeline extract --input corpus.jsonl.zst --text-key content --output out/docs
  corpus-pipeline extract --text-dir my_texts/ --doc-per-file --output out/docs
  corpus-pipeline extract --input dump.xml.bz2 --max-docs 1000 --output out/try
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "extract",
        help="Wikipedia dump and/or books -> sentence-split documents",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="FILE",
        help="Wikipedia dump (.xml, .xml.bz2, .gz, .xz; multistream too), or JSON-lines "
        "(.jsonl, .jsonl.gz, .jsonl.zst) or Parquet (.parquet) with a text field; repeatable",
    )
    p.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="INDEX",
        help="multistream index (...-multistream-index.txt.bz2), one per --input, "
        "in order; found automatically when it lies beside the dump",
    )
    p.add_argument(
        "--books",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of .txt books, one book = one document; repeatable",
    )
    add_text_flags(p)
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
    add_lang_flag(p)
    p.add_argument(
        "--max-sentence-chars",
        type=int,
        default=SentenceConfig.max_sentence_chars,
        help="cut longer runaway sentences (lists, tables) at whitespace",
    )
    p.add_argument(
        "--pages-per-chunk",
        type=int,
        default=ExtractConfig.pages_per_chunk,
        help="pages per parallel work item for single-stream dumps",
    )
    p.add_argument(
        "--no-templates", action="store_true", help="do not expand templates defined in the dump"
    )
    p.add_argument(
        "--max-loss",
        type=float,
        default=ExtractConfig.max_loss,
        metavar="FRACTION",
        help="exit 1 when damage (malformed pages, truncated or corrupt streams) costs more "
        f"than this share of the input (default {ExtractConfig.max_loss})",
    )
    add_overwrite_flag(p)
    add_beam_flags(p)
    return p


@outdir.releasing
def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    if not args.input and not args.books and not args.text_dir:
        raise UserError("nothing to extract: give --input FILE, --text-dir DIR or --books DIR")
    positive("--shards", args.shards)
    positive("--workers", args.workers)
    if args.index and len(args.index) != len(args.input):
        raise UserError("give one --index per --input (or none: indexes beside dumps are found)")
    for path in args.input:
        fsio.check_input_file(path, "--input", ": give the dump file (e.g. *.xml.bz2)")
    for path in args.index:
        fsio.check_input_file(path, "--index")
    check_text_dirs(args.text_dir)
    ecfg = ExtractConfig(
        pages_per_chunk=positive("--pages-per-chunk", args.pages_per_chunk),
        expand_templates=not args.no_templates,
        max_loss=args.max_loss,
        text_key=args.text_key,
        id_key=args.id_key,
        doc_per_file=args.doc_per_file,
        max_docs=args.max_docs,
    )
    scfg = SentenceConfig(
        language=resolve_language(args.lang, args.input),
        max_sentence_chars=positive("--max-sentence-chars", args.max_sentence_chars),
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
    with progress_bar(len(tasks), "extract", unit="chunk") as progress:

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

        counts = run_pipeline(build, args.workers, beam_args)
    with fsio.open_text(shard_list) as f:
        shards = sorted(json.load(f), key=lambda s: s["shard"])
    cleanup_chunks(out)
    loss = loss_report(counts, ecfg.max_loss)
    manifest = mf.DocumentsManifest(
        format=args.format,
        lang=scfg.language,
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
    if fsio.is_remote(path):
        fsio.write_text(path, json.dumps(obj))
        return
    Path(path).write_text(json.dumps(obj), encoding="utf-8")
