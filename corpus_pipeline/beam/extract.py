"""PTransforms of the text stages: extract articles, split sentences, write document shards.

Elements are coarse: a work unit (one bz2 stream of a multistream dump, one book file) or one
share of a single-stream dump (``extract_read.ReadShare``: a bz2 dump is split by blocks, each
share decompressing and cleaning only its own part; any other is decompressed by every share,
each cleaning only its own chunks of ~200 pages), so all workers work at once. Planning is in
``extract_plan.py``, the reading DoFns in ``extract_read.py``, loss reporting in
``extract_loss.py``.
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
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio
from corpus_pipeline.beam.extract_plan import ExtractTask
from corpus_pipeline.beam.extract_read import CountSkippedFile, ExtractUnit, ReadShare, read_shares
from corpus_pipeline.beam.options import in_one_process, spread
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.formats.common import atomic_output, sha256_file
from corpus_pipeline.formats.documents import SUFFIX, write_document
from corpus_pipeline.formats.spill import iter_spills
from corpus_pipeline.sources import wikipedia_plan


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
            units = pbegin | "Units" >> beam.Create(whole, reshuffle=False)
            parts.append(
                spread(units, "SpreadUnits") | "ExtractUnits" >> beam.ParDo(ExtractUnit(*args))
            )
        if sequential:
            n = read_shares(pbegin.pipeline.options)
            # --max-docs counts pages in file order across chunks: one share reads it all.
            shares = [
                (t, i, k) for t in sequential for k in [1 if t.limit else n] for i in range(k)
            ]
            share_pc = pbegin | "Shares" >> beam.Create(shares, reshuffle=False)
            parts.append(
                spread(share_pc, "SpreadShares") | "ReadShares" >> beam.ParDo(ReadShare(*args))
            )
        if self.skipped:
            _ = (
                pbegin
                | "SkippedFiles" >> beam.Create(self.skipped, reshuffle=False)
                | "CountSkipped" >> beam.ParDo(CountSkippedFile())
            )
        # Every shard gets a marker so empty shards are still written (never a missing file).
        parts.append(
            pbegin
            | "ShardMarkers"
            >> beam.Create(
                [(s, None) for s in range(self.num_shards)],
                reshuffle=not in_one_process(pbegin.pipeline),
            )
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
