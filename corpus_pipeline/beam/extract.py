"""PTransforms of the text stages: extract articles, split sentences, write document shards.

Elements are coarse: a work unit (one bz2 stream of a multistream dump, one book file) or one
share of a single-stream dump (:class:`ReadShare`: a bz2 dump is split by blocks, each share
decompressing and cleaning only its own part; any other is decompressed by every share, each
cleaning only its own chunks of ~200 pages), so all workers work at once.
Cleaning and sentence splitting are fused per chunk; the documents of a chunk are spilled to
one temp file, grouped by shard (``formats/spill.py``), so only small ``(shard, SpillRange)``
records cross the GroupByKey, and peak memory stays bounded by chunk size, not corpus size,
even on FnApiRunner (which keeps a bundle's outputs and grouped data in memory).

Determinism: a chunk's key is its position in the input (source index, unit index, chunk
index); a document goes to shard ``stable_hash(document id) % N``; a shard concatenates its
ranges in chunk-key order. So the same input gives byte-identical shards with any number of
workers, shares or runner.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio
from corpus_pipeline.beam.counters import BeamCounts
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import InputFormatError, UserError
from corpus_pipeline.formats.common import atomic_output, sha256_file
from corpus_pipeline.formats.documents import SUFFIX, write_document
from corpus_pipeline.formats.manifest_model import Loss
from corpus_pipeline.formats.spill import SpillRange, iter_spills, write_spill
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import Article, Document
from corpus_pipeline.sources import (
    books,
    text,
    wikipedia_clean,
    wikipedia_pages,
    wikipedia_plan,
    wikipedia_records,
    wikipedia_shares,
)
from corpus_pipeline.stages.sentences import normalize_language, split_sentences

ChunkKey = tuple[int, int, int]


@dataclass(frozen=True)
class ExtractTask:
    """One unit of input work planned on the launcher.

    Attributes:
        source_index: Position of the input (dump, text file or folder, books folder).
        unit_index: Position of the unit inside that input.
        kind: ``wiki``, ``book``, ``text`` or ``skip`` (a file of a ``.txt`` folder that is
            not ``.txt``: only counted, ``extract/skipped:not_txt``).
        unit: A ``wikipedia_records.WorkUnit``, a book path (str) or a ``text.TextUnit``.
        limit: Read only the first ``limit`` raw items of the unit (pages, records, books):
            ``--max-docs`` cut (:func:`apply_max_docs`); None reads it all.
    """

    source_index: int
    unit_index: int
    kind: str
    unit: Any
    limit: int | None = None


#: Share of a single-stream dump's progress ticked while it is read (by compressed bytes);
#: the rest is ticked as its chunks are cleaned. On the bundled excerpt reading took 1.7 s
#: and cleaning 2.1 s plus sentence splitting, on one core.
READ_SHARE = 0.35


def task_bytes(task: ExtractTask) -> int:
    """The input bytes of a task, the unit of extraction progress (at least 1, so every task
    counts; a task of a skipped file 0)."""
    if task.kind == "skip":
        return 0
    unit = task.unit
    if isinstance(unit, wikipedia_records.WorkUnit):
        end = unit.end if unit.end is not None else _file_size(unit.path)
        return max(1, end - unit.start)
    return max(1, _file_size(unit if isinstance(unit, str) else unit.path))


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path) if not fsio.is_remote(path) else fsio.stat_files(path)[0][1]
    except (OSError, IndexError, UserError):
        return 0


def total_bytes(tasks: Sequence[ExtractTask]) -> int:
    """What the extraction progress of ``tasks`` adds up to (:func:`task_bytes`)."""
    return sum(task_bytes(t) for t in tasks)


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
    return fsio.open_read if fsio.is_remote(path) else wikipedia_records.open_local


def find_dump_index(path: str) -> str | None:
    """``wikipedia_plan.find_index`` for local and remote dumps."""
    if not fsio.is_remote(path):
        return wikipedia_plan.find_index(path)
    name = fsio.basename(path)
    if "multistream" not in name:
        return None
    stem = re.sub(r"\.xml(\.bz2)?$", "", name)
    cand = fsio.join(path.rsplit("/", 1)[0], stem + "-index.txt.bz2")
    return cand if fsio.isfile(cand) else None


def is_text_dir(path: str) -> bool:
    """An ``--input``-list entry that is a folder: a folder of ``.txt`` documents."""
    if fsio.is_remote(path):
        return text.input_kind(path) is None and not fsio.isfile(path)
    return os.path.isdir(path)


def scan_text_dir(folder: str) -> tuple[list[text.TextUnit], list[str]]:
    """The ``.txt`` files of a folder (recursive, sorted by path) as units, and the others.

    Raises:
        UserError: the folder holds no ``.txt`` file.
    """
    if fsio.is_remote(folder):
        found = [p for p, _ in fsio.list_files(folder)]
        prefix = folder.rstrip("/") + "/"
        rel = [p[len(prefix) :] if p.startswith(prefix) else fsio.basename(p) for p in found]
    else:
        root = os.path.abspath(folder)
        found = sorted(
            os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f != ".DS_Store"
        )
        rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in found]
    units = [
        text.TextUnit(p, "txt", r)
        for p, r in zip(found, rel, strict=True)
        if p.lower().endswith(text.TXT_SUFFIX)
    ]
    other = [p for p in found if not p.lower().endswith(text.TXT_SUFFIX)]
    if not units:
        what = f"only {len(other)} non-.txt file(s)" if other else "no files"
        raise UserError(f"--text-dir {folder}: no .txt files in this folder ({what})")
    return units, other


def _iter_tasks(
    inputs: Iterable[tuple[str, str | None]], book_dirs: Iterable[str], cfg: ExtractConfig
) -> Iterator[ExtractTask]:
    src = 0
    for path, index in inputs:
        kind = text.input_kind(path)
        if kind is not None:
            yield ExtractTask(src, 0, "text", text.TextUnit(path, kind, fsio.basename(path)))
        elif is_text_dir(path):
            units, other = scan_text_dir(path)
            for i, unit in enumerate(units):
                yield ExtractTask(src, i, "text", unit)
            for j, skipped in enumerate(other):
                yield ExtractTask(src, len(units) + j, "skip", skipped)
        else:
            units_ = wikipedia_plan.iter_units(
                path, cfg, index_path=index, opener=dump_opener(path)
            )
            for i, unit_ in enumerate(units_):
                yield ExtractTask(src, i, "wiki", unit_)
        src += 1
    for folder in book_dirs:
        for i, book in enumerate(scan_book_paths(folder)[0]):
            yield ExtractTask(src, i, "book", book)
        src += 1


def resolve_language(lang: str | None, dumps: Iterable[str]) -> str:
    """The language of a run's text, decided on the launcher (workers get it in their config).

    ``--lang`` when given; else the language the dumps' ``<siteinfo>`` names (``<dbname>``
    ``jawiki`` -> ``ja``; the root's ``xml:lang`` without one), which must be the same for
    every dump; else (books and other text, or dumps that name none) ``en``.

    Args:
        lang: The ``--lang`` flag, or None.
        dumps: The ``--input`` paths; those that are not MediaWiki dumps (other text, a
            folder) are passed over here, and planning reports them if they are broken.

    Raises:
        UserError: ``lang`` is not a language code, or the dumps are of different languages.
    """
    if lang:
        return normalize_language(lang)
    found: dict[str, list[str]] = {}
    for dump in dumps:
        try:
            code = wikipedia_plan.dump_language(dump, opener=dump_opener(dump))
        except InputFormatError:
            continue
        if code:
            found.setdefault(normalize_language(code), []).append(fsio.basename(dump))
    if len(found) > 1:
        which = "; ".join(f"{code}: {', '.join(names)}" for code, names in sorted(found.items()))
        raise UserError(
            f"the dumps are in different languages ({which}); extract each language on its "
            "own, or give --lang to split all text as one language"
        )
    return next(iter(found), "en")


def plan_tasks(
    dumps: Iterable[tuple[str, str | None]],
    book_dirs: Iterable[str],
    cfg: ExtractConfig,
    scfg: SentenceConfig | None = None,
) -> list[ExtractTask]:
    """Work units of every input, in a deterministic order.

    Args:
        dumps: ``(path, index)`` per input, in command-line order: a Wikipedia dump (with its
            multistream index or None), a JSON-lines or Parquet file (by extension, index
            None), or a folder of ``.txt`` documents (index None).
        book_dirs: Folders of books (one ``.txt`` file = one document).
        cfg: ``max_docs`` cuts the plan to the first N documents (:func:`apply_max_docs`).
        scfg: The sentence splitting that decides whether an article makes a document.
    """
    tasks = _iter_tasks(dumps, book_dirs, cfg)
    if cfg.max_docs is not None:
        return apply_max_docs(tasks, cfg, scfg or SentenceConfig())
    return list(tasks)


def check_text_dirs(dirs: Sequence[str]) -> None:
    """``--text-dir`` must be an existing folder."""
    for d in dirs:
        if fsio.is_remote(d):
            continue  # checked when listed (no .txt files: one line)
        if not os.path.isdir(d):
            what = "is a file, not a folder" if os.path.exists(d) else "no such folder"
            raise UserError(f"--text-dir {d}: {what}; give a folder of .txt files")


def default_name(inputs: Sequence[str], text_dirs: Sequence[str], book_dirs: Sequence[str]) -> str:
    """``wiki``, ``books``, ``text`` (JSON-lines, Parquet, .txt folders) or ``mixed``."""
    kinds = {"text" if text.input_kind(i) else "wiki" for i in inputs}
    kinds |= {"text"} if text_dirs else set()
    kinds |= {"books"} if book_dirs else set()
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _ignore(name: str, n: int = 1) -> None:
    del name, n


def _raw_items(task: ExtractTask, ecfg: ExtractConfig, count: Any, tally: Any) -> Iterator[Any]:
    """A unit's raw items in input order: pages (wiki), articles or None (books, text)."""
    if task.kind == "wiki":
        yield from wikipedia_pages.read_pages(
            task.unit, ecfg, count=count, opener=dump_opener(task.unit.path), tally=tally
        )
    elif task.kind == "book":
        remote = fsio.is_remote(task.unit)
        yield books.read_book(
            fsio.read_bytes(task.unit) if remote else Path(task.unit),
            fsio.basename(task.unit) if remote else Path(task.unit).name,
            ecfg,
            count=count,
        )
    elif task.kind == "text":
        remote = fsio.is_remote(task.unit.path)
        opener = fsio.open_read if remote else text.open_local
        yield from text.read_unit(task.unit, ecfg, count=count, opener=opener, tally=tally)


def _to_article(task: ExtractTask, item: Any, ecfg: ExtractConfig, count: Any) -> Article | None:
    if task.kind == "wiki":
        return wikipedia_clean.clean_page(item, ecfg, count=count)
    article: Article | None = item
    return article


def _take(items: Iterator[Any], limit: int | None) -> Iterator[Any]:
    """The first ``limit`` items, closing the source (stops its reading) when done."""
    try:
        for n, item in enumerate(items, 1):
            yield item
            if limit is not None and n >= limit:
                return
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def apply_max_docs(
    tasks: Iterable[ExtractTask], ecfg: ExtractConfig, scfg: SentenceConfig
) -> list[ExtractTask]:
    """Cut a plan to the first ``ecfg.max_docs`` documents, in input order.

    The launcher reads the units in order through the very functions the workers use
    (read, clean, sentence-split, counting nothing) until N items have made documents, and
    plans only those units, the last one with a ``limit`` on the raw items (pages, records)
    to read. Tasks are consumed lazily, so later inputs are not even planned, and reading
    stops after the last needed item (a single-stream dump is not read to its end).
    Workers then read exactly these prefixes: the same N documents for any number of
    workers or runner. The cost is reading the sample twice (meant for small N).
    """
    assert ecfg.max_docs is not None
    need = ecfg.max_docs
    kept: list[ExtractTask] = []
    for task in tasks:
        if task.kind == "skip":
            kept.append(task)
            continue
        read = 0
        for item in _take(_raw_items(task, ecfg, _ignore, _ignore), None):
            read += 1
            article = _to_article(task, item, ecfg, _ignore)
            if article is not None and split_sentences(article, scfg, count=_ignore):
                need -= 1
                if need == 0:
                    break
        if need == 0:
            kept.append(replace(task, limit=read))
            break
        kept.append(task)
    return kept


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


class ReadShare(_ChunkDoFn):
    """One share of a single-stream dump (``wikipedia_shares.iter_share_chunks``): a bz2 dump
    is split by blocks, and this share decompresses only the blocks in its part of the file;
    any other is decompressed whole here. The share's chunks of pages are cleaned,
    sentence-split and spilled as they are read, so all workers work at once (the element is
    ``(task, share, shares)``; the shares of a dump run on different workers).

    Progress: the share's part of the dump's :func:`task_bytes` (its byte range for a bz2
    dump, ``1 / shares`` of the file otherwise), by the compressed bytes read so far as each
    chunk is done; what is left at the end (the read-ahead, a ``--max-docs`` stop) is ticked
    last, so the dump ticks exactly its size.
    """

    def process(self, element: tuple[ExtractTask, int, int]) -> Iterator[tuple[int, Any]]:
        task, share, shares = element
        left = task.limit  # --max-docs: planned with a single share, pages in file order
        files: list[Any] = []
        base = dump_opener(task.unit.path)

        def opener(path: str) -> Any:
            files.append(base(path))
            return files[-1]

        chunks = wikipedia_shares.iter_share_chunks(
            task.unit,
            self.ecfg,
            share=share,
            shares=shares,
            count=self.count,
            opener=opener,
            tally=self.count,
        )
        weight, scale, start = task_bytes(task), 1 / shares, task.unit.start
        if wikipedia_shares.splits_blocks(task.unit):
            start, end = wikipedia_shares.share_range(weight, share, shares)
            weight, scale = end - start, 1.0
        done = 0
        for c, pages in _take(chunks, None):
            if left is not None:
                pages = pages[:left]
                left -= len(pages)
            key = (task.source_index, task.unit_index, c)
            articles = (wikipedia_clean.clean_page(p, self.ecfg, count=self.count) for p in pages)
            yield from self.spill(key, _documents(articles, self.scfg, self.count))
            step = max(0, min(weight, _position(files[:1]) - start) - done)
            done += step
            self.progress.tick(step * scale)
            if left == 0:
                break  # --max-docs: the rest of the dump is not read
        self.progress.tick((weight - done) * scale)


#: Most shares a single-stream dump is read in.
MAX_SHARES = 8


def read_shares(options: Any) -> int:
    """How many shares a single-stream dump is read in: one per local worker process (1 when
    the local workers are threads of one process), else the runner's ``--num_workers``."""
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        StandardOptions,
        WorkerOptions,
    )

    if options is None:
        return 1
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner").rsplit(".", 1)[-1]
    if runner in ("DirectRunner", "FnApiRunner", "SwitchingDirectRunner"):
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode != "multi_processing":
            return 1
        n = direct.direct_num_workers or os.cpu_count() or 1
    else:
        n = options.view_as(WorkerOptions).num_workers or 1
    return max(1, min(MAX_SHARES, n))


def _position(files: list[Any]) -> int:
    """How far the dump's reader got in the (compressed) file; 0 when it cannot tell."""
    try:
        return int(files[-1].tell()) if files and not files[-1].closed else 0
    except (OSError, ValueError, AttributeError):
        return 0


class ExtractUnit(_ChunkDoFn):
    """A self-contained unit (a bz2 stream by offset, a book file, a JSON-lines, Parquet or
    ``.txt`` file), read and cleaned in one go; only its first ``task.limit`` raw items
    under ``--max-docs``."""

    def process(self, task: ExtractTask) -> Iterator[tuple[int, Any]]:
        key = (task.source_index, task.unit_index, 0)
        if task.kind == "skip":
            self.count("extract/skipped:not_txt")
            return
        items = _take(_raw_items(task, self.ecfg, self.count, self.count), task.limit)
        articles = (_to_article(task, item, self.ecfg, self.count) for item in items)
        yield from self.spill(key, _documents(articles, self.scfg, self.count))
        self.progress.tick(task_bytes(task))


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
            t
            for t in self.tasks
            if not (t.kind == "wiki" and wikipedia_plan.needs_chunking(t.unit))
        ]
        sequential = [
            t for t in self.tasks if t.kind == "wiki" and wikipedia_plan.needs_chunking(t.unit)
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
            n = read_shares(pbegin.pipeline.options)
            # --max-docs counts pages in file order across chunks: one share reads it all.
            shares = [
                (t, i, k) for t in sequential for k in [1 if t.limit else n] for i in range(k)
            ]
            parts.append(
                pbegin
                | "Shares" >> beam.Create(shares, reshuffle=False)
                | "SpreadShares" >> beam.Reshuffle()
                | "ReadShares" >> beam.ParDo(ReadShare(*args))
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


# ----------------------------------------------------------------------------------------------
# Loss: the share of the input that damage cost (not the pages dropped on purpose)


def loss_report(counts: dict[str, int], max_loss: float) -> Loss:
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
        for p in wikipedia_pages.STREAM_PROBLEMS
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
    return Loss(
        pages_read=pages_read,
        pages_dropped=pages_dropped,
        pages_dropped_by_reason=dict(sorted(dropped.items())),
        bytes_read=bytes_read,
        bytes_dropped=bytes_dropped,
        streams_read=streams_read,
        streams_damaged=sum(streams.values()),
        streams_damaged_by_problem=dict(sorted(streams.items())),
        share=max(shares),
        share_of=("pages", "bytes", "streams")[shares.index(max(shares))],
        max_loss=max_loss,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.2g}%" if x < 0.01 else f"{100 * x:.1f}%"


def describe_loss(loss: Loss) -> str:
    """What was lost, in a few words (empty when nothing was)."""
    parts = []
    if loss.pages_dropped:
        reasons = ", ".join(f"{r} {n:,}" for r, n in loss.pages_dropped_by_reason.items())
        parts.append(
            f"{loss.pages_dropped:,} of {loss.pages_read:,} pages "
            f"({_pct(loss.pages_dropped / max(1, loss.pages_read))}) dropped as damaged "
            f"({reasons}), {loss.bytes_dropped:,} of {loss.bytes_read:,} bytes"
        )
    if loss.streams_damaged:
        problems = ", ".join(f"{p} {n:,}" for p, n in loss.streams_damaged_by_problem.items())
        parts.append(
            f"{loss.streams_damaged:,} of {loss.streams_read:,} streams damaged ({problems})"
        )
    return "; ".join(parts)


def report_loss(loss: Loss, inputs: Iterable[str], out: str) -> None:
    """End of a run: print what damage cost (if anything), and fail (exit 1, one line on
    stderr) when it is more than ``max_loss`` of the input.

    Raises:
        UserError: the share lost is over the threshold; the shards are written all the same.
    """
    what = describe_loss(loss)
    worst = f"{_pct(loss.share)} of the {loss.share_of} lost"
    if what:
        print(f"loss: {what}; {worst} (max {_pct(loss.max_loss)}, --max-loss)")
    if loss.share <= loss.max_loss:
        return
    names = ", ".join(fsio.basename(p) for p in inputs) or "input"
    raise UserError(
        f"{names}: {what}; {worst} (max {_pct(loss.max_loss)}, --max-loss to change); "
        f"shards written to {out}",
        exit_code=1,
    )
