"""Extraction DoFns, on the workers: read a task, clean, split sentences, spill by shard.

:class:`ExtractUnit` reads a self-contained unit (a bz2 stream of a multistream dump, a book,
a JSON-lines, Parquet or ``.txt`` file) in one go; :class:`ReadShare` reads one share of a
single-stream dump (``sources/wikipedia_shares.py``). The documents of each chunk are spilled
to one temp file grouped by shard (``formats/spill.py``), keyed by the chunk's position in the
input (source index, unit index, chunk index), for ``beam/extract.py`` to write in key order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from corpus_pipeline.beam.counters import BeamCounts
from corpus_pipeline.beam.extract_plan import (
    ExtractTask,
    _raw_items,
    _take,
    _to_article,
    dump_opener,
    task_bytes,
)
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.formats.spill import SpillRange, write_spill
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import Article, Document
from corpus_pipeline.sources import wikipedia_clean, wikipedia_shares
from corpus_pipeline.stages.sentences import split_sentences

ChunkKey = tuple[int, int, int]

#: Share of a single-stream dump's progress ticked while it is read (by compressed bytes);
#: the rest is ticked as its chunks are cleaned. On the bundled excerpt reading took 1.7 s
#: and cleaning 2.1 s plus sentence splitting, on one core.
READ_SHARE = 0.35


class CountSkippedFile(beam.DoFn):
    """Count files of a books folder that are not read (not .txt): never a silent skip."""

    def __init__(self) -> None:
        self.count = BeamCounts()

    def process(self, path: str) -> Iterator[None]:
        self.count("books/skipped:not_txt")
        return iter(())


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
