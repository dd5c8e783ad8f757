"""Wikipedia + books -> documents -> WordPiece -> masking -> (packing) -> shards, one Beam graph.

``build(p, cfg)`` composes the PTransforms of every stage; ``main(argv)`` parses flags
(the same as ``corpus-pipeline run``) and runs it. Output layout::

    OUT/docs/        sentence-split documents (Google text format) + manifest.json
    OUT/unpacked/    hdf5/ tfrecord/ mmap/ (+ the Megatron sentence dataset) + manifest.json
    OUT/packed/      the same instances packed (--pack) + manifest.json
    OUT/run.json     what was run, and where each dataset is

Only chunks and spill references cross fusion breaks; every shard is written by one DoFn to
temp names, then renamed; a rerun after a kill skips shards whose completion marker exists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio, outdir
from corpus_pipeline.beam.extract import (
    ExtractDocuments,
    add_text_flags,
    check_text_dirs,
    cleanup_chunks,
    find_dump_index,
    loss_report,
    plan_tasks,
    report_loss,
    resolve_language,
    skipped_book_files,
)
from corpus_pipeline.beam.runner import Progress, Timer, format_summary, progress_bar, run_pipeline
from corpus_pipeline.commands import mask as mask_cmd  # flags; moving to commands/run.py
from corpus_pipeline.commands.common import add_beam_flags, add_lang_flag, positive
from corpus_pipeline.config import ExtractConfig, MaskConfig, PackConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.common import atomic_output, remove_stale_temps
from pipelines import mask as mask_graph

EXAMPLES = """examples:
  corpus-pipeline run --input enwiki-latest-pages-articles-multistream.xml.bz2 --output out/wiki-128 \\
      --preset phase1 --format all --pack
  corpus-pipeline run --input dump.xml.bz2 --books books/ --output out/mixed --preset phase2
  corpus-pipeline run ... --runner DataflowRunner --project P --region R --temp_location gs://b/tmp
"""


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run of the whole pipeline needs."""

    output: str
    dumps: tuple[tuple[str, str | None], ...] = ()
    books: tuple[str, ...] = ()
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    sentences: SentenceConfig = field(default_factory=SentenceConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    pack: PackConfig | None = None
    formats: tuple[str, ...] = registry.FORMATS
    doc_shards: int = 8
    shards: int = 4
    name: str = "wiki"


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
                mask_graph.input_text_bytes([*dumps, *book_dirs]), mask_cmd.mask_config(args)
            ),
        ),
        name=args.name,
    )


@dataclass
class _Built:
    plan: mask_graph.MaskPlan
    docs_dir: str
    docs_json: str
    tasks: int
    fingerprint: dict[str, Any]


def prepare(cfg: PipelineConfig, args: argparse.Namespace) -> _Built:
    """Claim OUT (one lock for docs/, unpacked/ and packed/; see ``outdir.py``), prepare it."""
    vspec, vinfo, mvocab = mask_cmd.vocab_info(args)
    print(
        mask_graph.space_line(
            cfg.output,
            mask_graph.input_text_bytes([d for d, _ in cfg.dumps] + list(cfg.books)),
            cfg.mask,
            cfg.formats,
            packed=cfg.pack is not None,
            unpacked=True,
            docs=True,
            skip=args.no_space_check,
        ),
        flush=True,
    )
    fp = mask_graph.mask_fingerprint(
        "run",
        cfg.mask,
        cfg.pack,
        cfg.formats,
        cfg.shards,
        cfg.name,
        vinfo,
        [*(x for pair in cfg.dumps for x in pair if x), *cfg.books],
        extract=asdict(cfg.extract),
        sentences=asdict(cfg.sentences),
        doc_shards=cfg.doc_shards,
    )
    outdir.claim(cfg.output, fp, overwrite=bool(getattr(args, "overwrite", False)))
    docs_dir = os.path.join(cfg.output, "docs")
    if fsio.is_remote(docs_dir):
        fsio.check_writable(cfg.output)
        fsio.remove_stale_temps(docs_dir)
    else:
        os.makedirs(docs_dir, exist_ok=True)
        remove_stale_temps(docs_dir)
    outs: list[tuple[str, PackConfig | None]] = [(os.path.join(cfg.output, "unpacked"), None)]
    if cfg.pack is not None:
        outs.append((os.path.join(cfg.output, "packed"), cfg.pack))
    work = os.path.join(cfg.output, ".work")
    plan = mask_graph.make_plan(
        outs, cfg.mask, cfg.formats, cfg.shards, cfg.name, vspec, vinfo, mvocab, work, fp
    )
    return _Built(plan, docs_dir, os.path.join(work, "docs.json"), 0, fp)


def build(p: beam.Pipeline, cfg: PipelineConfig, built: _Built, progress: Progress) -> None:
    """The whole graph: extract -> split -> encode -> mask -> (pack) -> write every format."""
    tasks = plan_tasks(cfg.dumps, cfg.books, cfg.extract, cfg.sentences)
    built.tasks = len(tasks)
    docs = p | "Extract" >> ExtractDocuments(
        tasks,
        built.docs_dir,
        cfg.extract,
        cfg.sentences,
        cfg.doc_shards,
        cfg.name,
        "text",
        progress,
        skipped_book_files(cfg.books),
    )
    _ = (
        docs
        | "CollectDocShards" >> beam.combiners.ToList()
        | "SaveDocShards" >> beam.Map(mask_graph.save_json, built.docs_json)
    )
    files = (
        docs
        | "NonEmpty" >> beam.Filter(lambda s: s["documents"] > 0)
        | "DocFiles"
        >> beam.Map(lambda s, d: (s["shard"], os.path.join(d, s["path"])), built.docs_dir)
    )
    mask_graph.add_mask_branch(files, built.plan, progress)


@outdir.releasing
def run(
    cfg: PipelineConfig, args: argparse.Namespace, workers: int, beam_args: Sequence[str]
) -> int:
    timer = Timer()
    built = prepare(cfg, args)
    with progress_bar(None, "run", unit="task") as progress:
        counts = run_pipeline(lambda p: build(p, cfg, built, progress), workers, beam_args)
    with fsio.open_text(built.docs_json) as f:
        doc_shards = sorted(json.load(f), key=lambda s: s["shard"])
    cleanup_chunks(built.docs_dir)
    docs_manifest = {
        "kind": "documents",
        "format": "text",
        "lang": cfg.sentences.language,
        "inputs": [fsio.abspath(d) for d, _ in cfg.dumps] + [fsio.abspath(b) for b in cfg.books],
        "shards": doc_shards,
        "documents": sum(s["documents"] for s in doc_shards),
        "loss": loss_report(counts, cfg.extract.max_loss),
        "config": {"extract": asdict(cfg.extract), "sentences": asdict(cfg.sentences)},
        "fingerprint": built.fingerprint,
    }
    from corpus_pipeline.formats import manifest as mf

    mf.write_manifest(built.docs_dir, docs_manifest)
    inputs = [os.path.join(built.docs_dir, s["path"]) for s in doc_shards]
    manifests = mask_graph.finish_datasets(built.plan, counts, inputs, timer.elapsed)
    fsio.rmtree(built.plan.work)
    datasets = {"docs": "docs", "unpacked": "unpacked"}
    if cfg.pack is not None:
        datasets["packed"] = "packed"
    run_info = {"datasets": datasets, "argv": sys.argv[1:], "fingerprint": built.fingerprint}
    if fsio.is_remote(cfg.output):
        fsio.write_text(
            fsio.join(cfg.output, "run.json"), json.dumps(run_info, indent=2, sort_keys=True)
        )
    else:
        with (
            atomic_output(os.path.join(cfg.output, "run.json")) as tmp,
            open(tmp, "w", encoding="utf-8") as f,
        ):
            json.dump(run_info, f, indent=2, sort_keys=True)
    mask_graph.check_not_empty(manifests[0], inputs)
    keep = ["run.json", *(f"docs/{f}" for f in outdir.manifest_files(docs_manifest))]
    for name, m in zip(("unpacked", "packed"), manifests, strict=False):
        keep.extend(f"{name}/{f}" for f in outdir.manifest_files(m))
    outdir.finish(cfg.output, keep)
    print(
        format_summary(
            f"run: {docs_manifest['documents']:,} documents -> "
            f"{manifests[0]['totals']['instances']:,} instances",
            counts,
            timer.elapsed,
        )
    )
    for name, m in zip(("unpacked", "packed"), manifests, strict=False):
        print(f"\n{name}: {os.path.join(cfg.output, name)}")
        mask_graph.print_report(m, os.path.join(cfg.output, name), counters=False, warnings=False)
    mask_graph.print_warnings(manifests[0])  # the same for both datasets: once
    report_loss(docs_manifest["loss"], [d for d, _ in cfg.dumps], built.docs_dir)
    return 0


def make_parser(
    prog: str = "pretraining", *, wiki: bool = True, books: bool = True
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(p, wiki=wiki, books=books)
    return p


def main(argv: Sequence[str] | None = None, *, wiki: bool = True, books: bool = True) -> int:
    """Parse flags (unknown ones go to Beam) and run; returns the exit code."""
    from corpus_pipeline.cli import run_guarded

    parser = make_parser(wiki=wiki, books=books)
    args, beam_args = parser.parse_known_args(argv)

    def go() -> int:
        from corpus_pipeline.beam.flags import check_beam_args

        ours = [s for a in parser._actions for s in a.option_strings]
        check_beam_args(beam_args, ours, parser.prog)
        fsio.configure(beam_args)
        return run(config_from_args(args), args, args.workers, beam_args)

    return run_guarded(go)


if __name__ == "__main__":
    raise SystemExit(main())
