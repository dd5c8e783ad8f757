"""PTransforms of the text stages: extract articles, split sentences, write document shards.

Elements are coarse: a work unit (one bz2 stream of a multistream dump, one book file) or a
chunk of ~100-200 raw pages cut from a single-stream dump. Such a chunk is itself spilled to a
temp file by the reader, and only its small ``SpillRange`` crosses the reshuffle: FnApiRunner
keeps a bundle's outputs in memory, and the whole file is one bundle, so the launcher used to
hold the raw pages of the whole dump (1.5 GiB for 195 MB of XML). Cleaning and sentence
splitting are fused per chunk; the documents of a chunk are spilled to one temp file, grouped by shard
(``formats/spill.py``), so only small ``(shard, SpillRange)`` records cross the GroupByKey, and peak memory stays bounded by
chunk size, not corpus size, even on FnApiRunner (which keeps grouped data in memory).

Determinism: a chunk's key is its position in the input (source index, unit index, chunk
index); a document goes to shard ``stable_hash(document id) % N``; a shard concatenates its
ranges in chunk-key order. So the same input gives byte-identical shards with any number of workers or runner.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio
from corpus_pipeline.beam.runner import BeamCounts, Progress
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output, sha256_file
from corpus_pipeline.formats.documents import SUFFIX, write_document
from corpus_pipeline.formats.spill import SpillRange, iter_spills, read_spill, write_spill
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import Article, Document
from corpus_pipeline.sources import books, wikipedia
from corpus_pipeline.stages.sentences import split_sentences

ChunkKey = tuple[int, int, int]


@dataclass(frozen=True)
class ExtractTask:
    """One unit of input work planned on the launcher.

    Attributes:
        source_index: Position of the input (dump or books folder) on the command line.
        unit_index: Position of the unit inside that input.
        kind: ``wiki`` or ``book``.
        unit: A ``wikipedia.WorkUnit`` or a book path (str).
    """

    source_index: int
    unit_index: int
    kind: str
    unit: Any


class CountSkippedFile(beam.DoFn):
    """Count files of a books folder that are not read (not .txt): never a silent skip."""

    def __init__(self) -> None:
        self.count = BeamCounts()

    def process(self, path: str) -> Iterator[None]:
        self.count("books/skipped:not_txt")
        return iter(())


def skipped_book_files(book_dirs: Iterable[str]) -> list[str]:
    """Files in the books folders that are not books (not .txt)."""
    return [p for folder in book_dirs for p in scan_book_paths(folder)[1]]


def scan_book_paths(folder: str) -> tuple[list[str], list[str]]:
    """``books.scan_books`` for local and remote folders: (book paths, other files)."""
    if not fsio.is_remote(folder):
        listing = books.scan_books(folder)
        return [str(p) for p in listing.books], [str(p) for p in listing.skipped]
    found = [p for p, _ in fsio.list_files(folder)]
    if not found and fsio.isfile(folder):
        found = [folder]  # a single book file
    txt = [p for p in found if p.lower().endswith(books.BOOK_SUFFIX)]
    other = [p for p in found if not p.lower().endswith(books.BOOK_SUFFIX)]
    if not txt:
        what = f"only {len(other)} non-.txt file(s)" if other else "no files"
        raise UserError(f"{folder}: no .txt books in this folder ({what}); add UTF-8 .txt files")
    return txt, other


def dump_opener(path: str) -> Any:
    """How a dump is opened: the local default, or Beam's FileSystems (no decompression)."""
    return fsio.open_read if fsio.is_remote(path) else wikipedia.open_local


def find_dump_index(path: str) -> str | None:
    """``wikipedia.find_index`` for local and remote dumps."""
    if not fsio.is_remote(path):
        return wikipedia.find_index(path)
    name = fsio.basename(path)
    if "multistream" not in name:
        return None
    stem = re.sub(r"\.xml(\.bz2)?$", "", name)
    cand = fsio.join(path.rsplit("/", 1)[0], stem + "-index.txt.bz2")
    return cand if fsio.isfile(cand) else None


def plan_tasks(
    dumps: Iterable[tuple[str, str | None]], book_dirs: Iterable[str], cfg: ExtractConfig
) -> list[ExtractTask]:
    """Work units of every input, in a deterministic order."""
    tasks: list[ExtractTask] = []
    src = 0
    for dump, index in dumps:
        units = wikipedia.plan_units(dump, cfg, index_path=index, opener=dump_opener(dump))
        for i, unit in enumerate(units):
            tasks.append(ExtractTask(src, i, "wiki", unit))
        src += 1
    for folder in book_dirs:
        for i, path in enumerate(scan_book_paths(folder)[0]):
            tasks.append(ExtractTask(src, i, "book", path))
        src += 1
    return tasks


def _documents(
    articles: Iterable[Article | None], scfg: SentenceConfig, count: BeamCounts
) -> Iterator[Document]:
    for article in articles:
        if article is None:
            continue
        doc = split_sentences(article, scfg, count=count)
        if doc is not None:
            count("extract/documents")
            yield doc


class _ChunkDoFn(beam.DoFn):
    """Shared spill logic: documents of one chunk -> temp file -> (shard, (key, path))."""

    def __init__(
        self,
        ecfg: ExtractConfig,
        scfg: SentenceConfig,
        tmp_dir: str,
        num_shards: int,
        progress: Progress,
    ) -> None:
        self.ecfg = ecfg
        self.scfg = scfg
        self.tmp_dir = tmp_dir
        self.num_shards = num_shards
        self.progress = progress
        self.count = BeamCounts()

    def spill(self, key: ChunkKey, docs: Iterable[Document]) -> Iterator[tuple[int, SpillRange]]:
        """Spill a chunk's documents, grouped by shard (content hash of the document id)."""
        groups: dict[int, list[Document]] = {}
        for doc in docs:
            groups.setdefault(stable_hash("extract-shard", doc.id) % self.num_shards, []).append(
                doc
            )
        if not groups:
            return
        path = os.path.join(self.tmp_dir, "chunk-{:05d}-{:07d}-{:05d}.spill".format(*key))
        yield from write_spill(path, key, groups).items()


class SplitIntoChunks(_ChunkDoFn):
    """A single-stream dump: read it sequentially, spill each chunk of raw pages to a temp
    file and emit only its reference (to reshuffle), so memory does not grow with the dump."""

    def process(self, task: ExtractTask) -> Iterator[tuple[ChunkKey, SpillRange]]:
        for c, pages in enumerate(
            wikipedia.iter_page_chunks(
                task.unit,
                self.ecfg,
                count=self.count,
                opener=dump_opener(task.unit.path),
                tally=self.count,
            )
        ):
            key = (task.source_index, task.unit_index, c)
            path = fsio.join(self.tmp_dir, "pages-{:05d}-{:07d}-{:05d}.spill".format(*key))
            (ref,) = write_spill(path, key, {0: pages}).values()
            yield key, ref


class CleanChunk(_ChunkDoFn):
    """Raw pages of a chunk (read back from its spill file, then deleted) -> clean articles
    -> sentence-split documents -> temp file."""

    def process(self, element: tuple[ChunkKey, SpillRange]) -> Iterator[tuple[int, Any]]:
        key, ref = element
        pages = read_spill(ref)
        articles = (wikipedia.clean_page(p, self.ecfg, count=self.count) for p in pages)
        yield from self.spill(key, _documents(articles, self.scfg, self.count))
        fsio.delete([ref.path])
        self.progress.tick()


class ExtractUnit(_ChunkDoFn):
    """A self-contained unit (a bz2 stream by offset, a book file), read and cleaned in one go."""

    def process(self, task: ExtractTask) -> Iterator[tuple[int, Any]]:
        key = (task.source_index, task.unit_index, 0)
        if task.kind == "book" and fsio.is_remote(task.unit):
            articles: Iterable[Article | None] = [
                books.read_book(
                    fsio.read_bytes(task.unit),
                    fsio.basename(task.unit),
                    self.ecfg,
                    count=self.count,
                )
            ]
        elif task.kind == "book":
            article = books.read_book(
                Path(task.unit), Path(task.unit).name, self.ecfg, count=self.count
            )
            articles = [article]
        else:
            articles = (
                wikipedia.clean_page(p, self.ecfg, count=self.count)
                for chunk in wikipedia.iter_page_chunks(
                    task.unit,
                    self.ecfg,
                    count=self.count,
                    opener=dump_opener(task.unit.path),
                    tally=self.count,
                )
                for p in chunk
            )
        yield from self.spill(key, _documents(articles, self.scfg, self.count))
        self.progress.tick()


class WriteDocumentShard(beam.DoFn):
    """Concatenate a shard's chunks in key order into the final file (temp name + rename)."""

    def __init__(self, out_dir: str, name: str, fmt: str, num_shards: int) -> None:
        self.out_dir = out_dir
        self.name = name
        self.fmt = fmt
        self.width = max(5, len(str(num_shards - 1)))

    def process(self, element: tuple[int, Iterable[Any]]) -> Iterator[dict[str, Any]]:
        shard, items = element
        ranges = sorted(r for r in items if r is not None)
        final = os.path.join(self.out_dir, f"{self.name}_{shard:0{self.width}d}{SUFFIX[self.fmt]}")
        n = 0
        with fsio.local_dir_for(self.out_dir) as d:
            # A remote output: built in a local temp folder, then published under its name.
            local = os.path.join(d, os.path.basename(final))
            with atomic_output(local) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
                for doc in iter_spills(ranges):
                    write_document(f, doc, self.fmt)
                    n += 1
            digest = sha256_file(local)
            if d != self.out_dir:
                fsio.publish(d, [os.path.basename(final)], self.out_dir)
        yield {
            "shard": shard,
            "path": os.path.basename(final),
            "documents": n,
            "sha256": digest,
        }


class ExtractDocuments(beam.PTransform):
    """Tasks -> document shards in ``out_dir``; outputs one summary dict per shard."""

    def __init__(
        self,
        tasks: list[ExtractTask],
        out_dir: str,
        ecfg: ExtractConfig,
        scfg: SentenceConfig,
        num_shards: int,
        name: str,
        fmt: str,
        progress: Progress,
        skipped: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.skipped = skipped or []
        self.tasks = tasks
        self.out_dir = out_dir
        self.tmp_dir = os.path.join(out_dir, ".chunks")
        self.ecfg = ecfg
        self.scfg = scfg
        self.num_shards = num_shards
        self.name = name
        self.fmt = fmt
        self.progress = progress

    def expand(self, pbegin: Any) -> Any:
        if not fsio.is_remote(self.tmp_dir):
            os.makedirs(self.tmp_dir, exist_ok=True)
        args = (self.ecfg, self.scfg, self.tmp_dir, self.num_shards, self.progress)
        whole = [
            t for t in self.tasks if not (t.kind == "wiki" and wikipedia.needs_chunking(t.unit))
        ]
        sequential = [
            t for t in self.tasks if t.kind == "wiki" and wikipedia.needs_chunking(t.unit)
        ]
        parts = []
        if whole:
            parts.append(
                pbegin
                | "Units" >> beam.Create(whole, reshuffle=False)
                | "SpreadUnits" >> beam.Reshuffle()
                | "ExtractUnits" >> beam.ParDo(ExtractUnit(*args))
            )
        if sequential:
            parts.append(
                pbegin
                | "Files" >> beam.Create(sequential, reshuffle=False)
                | "ReadChunks" >> beam.ParDo(SplitIntoChunks(*args))
                | "SpreadChunks" >> beam.Reshuffle()
                | "CleanChunks" >> beam.ParDo(CleanChunk(*args))
            )
        if self.skipped:
            _ = (
                pbegin
                | "SkippedFiles" >> beam.Create(self.skipped, reshuffle=False)
                | "CountSkipped" >> beam.ParDo(CountSkippedFile())
            )
        # Every shard gets a marker so empty shards are still written (never a missing file).
        parts.append(
            pbegin | "ShardMarkers" >> beam.Create([(s, None) for s in range(self.num_shards)])
        )
        return (
            parts
            | "Merge" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards"
            >> beam.ParDo(WriteDocumentShard(self.out_dir, self.name, self.fmt, self.num_shards))
        )


def cleanup_chunks(out_dir: str) -> None:
    """Remove the chunk spill folder after a run."""
    fsio.rmtree(os.path.join(out_dir, ".chunks"))


def write_summary(path: str, summary: dict[str, Any]) -> None:
    """Write the documents manifest atomically."""
    if fsio.is_remote(path):
        fsio.write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Loss: the share of the input that damage cost (not the pages dropped on purpose)


def loss_report(counts: dict[str, int], max_loss: float) -> dict[str, Any]:
    """The ``loss`` section of the documents manifest, from the reader's counters.

    Only damage counts: pages dropped as malformed (by reason), pages lost with a truncated
    or corrupt stream, and damaged streams (units). Redirects, other namespaces, empty,
    short and oversized pages are choices, not loss. ``share`` is the largest of the page,
    byte and stream shares (``share_of`` says which): a stream cut off or corrupt loses
    pages nobody can count, so a truncated single-stream dump is 1 of 1 streams lost.
    """
    dropped: dict[str, int] = {}
    for k, v in counts.items():
        for prefix in ("extract/malformed_page:", "extract/lost_pages:"):
            if k.startswith(prefix) and v:
                reason = k[len(prefix) :]
                dropped[reason] = dropped.get(reason, 0) + v
    streams = {
        p: counts[f"extract/dropped:{p}"]
        for p in wikipedia.STREAM_PROBLEMS
        if counts.get(f"extract/dropped:{p}")
    }
    pages_read = counts.get("extract/read:pages", 0)
    bytes_read = counts.get("extract/read:bytes", 0)
    streams_read = counts.get("extract/read:units", 0)
    pages_dropped = sum(dropped.values())
    bytes_dropped = counts.get("extract/lost:bytes", 0)
    shares = (
        pages_dropped / max(1, pages_read),
        bytes_dropped / max(1, bytes_read),
        sum(streams.values()) / max(1, streams_read),
    )
    return {
        "pages_read": pages_read,
        "pages_dropped": pages_dropped,
        "pages_dropped_by_reason": dict(sorted(dropped.items())),
        "bytes_read": bytes_read,
        "bytes_dropped": bytes_dropped,
        "streams_read": streams_read,
        "streams_damaged": sum(streams.values()),
        "streams_damaged_by_problem": dict(sorted(streams.items())),
        "share": max(shares),
        "share_of": ("pages", "bytes", "streams")[shares.index(max(shares))],
        "max_loss": max_loss,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2g}%" if x < 0.01 else f"{100 * x:.1f}%"


def describe_loss(loss: dict[str, Any]) -> str:
    """What was lost, in a few words (empty when nothing was)."""
    parts = []
    if loss["pages_dropped"]:
        reasons = ", ".join(f"{r} {n:,}" for r, n in loss["pages_dropped_by_reason"].items())
        parts.append(
            f"{loss['pages_dropped']:,} of {loss['pages_read']:,} pages "
            f"({_pct(loss['pages_dropped'] / max(1, loss['pages_read']))}) dropped as damaged "
            f"({reasons}), {loss['bytes_dropped']:,} of {loss['bytes_read']:,} bytes"
        )
    if loss["streams_damaged"]:
        problems = ", ".join(f"{p} {n:,}" for p, n in loss["streams_damaged_by_problem"].items())
        parts.append(
            f"{loss['streams_damaged']:,} of {loss['streams_read']:,} streams damaged ({problems})"
        )
    return "; ".join(parts)


def report_loss(loss: dict[str, Any], inputs: Iterable[str], out: str) -> None:
    """End of a run: print what damage cost (if anything), and fail (exit 1, one line on
    stderr) when it is more than ``max_loss`` of the input.

    Raises:
        UserError: the share lost is over the threshold; the shards are written all the same.
    """
    what = describe_loss(loss)
    worst = f"{_pct(loss['share'])} of the {loss['share_of']} lost"
    if what:
        print(f"loss: {what}; {worst} (max {_pct(loss['max_loss'])}, --max-loss)")
    if loss["share"] <= loss["max_loss"]:
        return
    names = ", ".join(fsio.basename(p) for p in inputs) or "input"
    raise UserError(
        f"{names}: {what}; {worst} (max {_pct(loss['max_loss'])}, --max-loss to change); "
        f"shards written to {out}",
        exit_code=1,
    )
