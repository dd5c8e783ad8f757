"""PTransforms of ``mask``: documents -> WordPiece -> static masking -> shards.

One element per document file. A DoFn reads the file's documents in buckets of at most
``bucket_size`` documents and ``bucket_chars`` characters (the tail bucket is merged into the
previous one when it is smaller than half a bucket, so no bucket is tiny), encodes them with
the word-cached WordPiece encoder, masks them (negatives from another document of the same
bucket) and spills the instances, ``SPILL_CHUNK`` at a time and grouped by destination shard,
to spill files. Only ``(shard, SpillRange)`` references cross the GroupByKey; one writer per
shard reads its ranges back. Memory is bounded by bucket size (the encoded documents), chunk
size (the instances) and shard size (writing), whatever the corpus size.

Determinism: a chunk's key is (file index, bucket index, chunk index); instance ``j`` of a
chunk goes to the ``j``-th shard drawn from ``rng_for(seed, "shard", key)``; masking draws from generators seeded by (seed,
document id, duplicate); a shard's writer sorts and permutes its instances with a seeded
generator. Nothing depends on worker count, bundle boundaries or arrival order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from corpus_pipeline import fsio
from corpus_pipeline.beam.runner import BeamCounts, Progress
from corpus_pipeline.beam.shards import ShardSpec, WriteShardFromSpills
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.formats.spill import write_spill
from corpus_pipeline.hashing import rng_for
from corpus_pipeline.records import EncodedDocument
from corpus_pipeline.stages.masking import MaskStats, MaskVocab, create_instances, iter_buckets
from corpus_pipeline.stages.wordpiece import WordPieceEncoder, encode_documents

STATS_TAG = "stats"
DOCS_TAG = "docs"
# Instances per spill write: bounds what masking holds, whatever the documents' length.
SPILL_CHUNK = 32768


@dataclass(frozen=True)
class VocabSpec:
    """How workers rebuild the encoder."""

    path: str
    cased: bool


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class MaskDocumentFile(beam.DoFn):
    """A document file -> spilled, masked instances per bucket (+ stats, + encoded docs)."""

    def __init__(
        self,
        vocab: VocabSpec,
        cfg: MaskConfig,
        num_shards: int,
        spill_dir: str,
        progress: Progress,
        keep_documents: bool,
    ) -> None:
        self.vocab = vocab
        self.cfg = cfg
        self.num_shards = num_shards
        self.spill_dir = spill_dir
        self.progress = progress
        self.keep_documents = keep_documents
        self.count = BeamCounts()

    def setup(self) -> None:
        # A remote vocabulary is downloaded once per worker process.
        self.encoder = WordPieceEncoder(fsio.local_copy(self.vocab.path), cased=self.vocab.cased)
        self.mvocab = MaskVocab.from_tokens(self.encoder.tokens, source=self.vocab.path)

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        file_index, path = element
        cfg = self.cfg
        for b, docs in enumerate(
            iter_buckets(read_documents(path), cfg.bucket_size, cfg.bucket_chars)
        ):
            self.count("mask/buckets")
            encoded = encode_documents(docs, self.encoder, count=self.count)
            del docs
            stats = MaskStats.for_config(cfg, self.mvocab)
            instances = create_instances(encoded, cfg, self.mvocab, count=self.count)
            # A bucket's instances are spilled SPILL_CHUNK at a time, so a bucket of long
            # documents never holds all its instances. Instance j of chunk `key` goes to a shard
            # drawn from the chunk's own generator: independent of workers and order.
            for c, chunk in enumerate(iter_chunks(instances, SPILL_CHUNK)):
                key = (file_index, b, c)
                targets = rng_for(cfg.seed, "shard", *key).integers(
                    self.num_shards, size=len(chunk)
                )
                groups: dict[int, list[Any]] = {}
                for inst, shard in zip(chunk, targets.tolist(), strict=True):
                    groups.setdefault(shard, []).append(inst)
                stats.add_many(chunk)
                spill = os.path.join(
                    self.spill_dir, f"bucket-{file_index:05d}-{b:05d}-{c:04d}.spill"
                )
                for shard, r in write_spill(spill, key, groups).items():
                    yield shard, r
                del chunk, groups
            yield beam.pvalue.TaggedOutput(STATS_TAG, stats)
            if self.keep_documents and encoded:
                doc_spill = os.path.join(self.spill_dir, f"docs-{file_index:05d}-{b:05d}.spill")
                for _, r in write_spill(doc_spill, (file_index, b), {0: _strip(encoded)}).items():
                    yield beam.pvalue.TaggedOutput(DOCS_TAG, r)
        self.progress.tick()


def _strip(docs: list[EncodedDocument]) -> list[EncodedDocument]:
    return [EncodedDocument(d.id, [np.asarray(s, np.int32) for s in d.sentences]) for d in docs]


class CombineMaskStats(beam.CombineFn):
    """Merge per-bucket MaskStats into one."""

    def __init__(self, cfg: MaskConfig, mask_id: int) -> None:
        self.cfg = cfg
        self.mask_id = mask_id

    def create_accumulator(self) -> MaskStats | None:
        return None

    def add_input(self, acc: MaskStats | None, s: MaskStats) -> MaskStats:
        return s if acc is None else acc.merge(s)

    def merge_accumulators(self, accs: Any) -> MaskStats | None:
        out: MaskStats | None = None
        for a in accs:
            if a is not None:
                out = a if out is None else out.merge(a)
        return out

    def extract_output(self, acc: MaskStats | None) -> dict[str, Any]:
        if acc is None:
            return MaskStats(self.cfg.max_seq_length, self.mask_id).to_dict()
        return acc.to_dict()


class MaskToShards(beam.PTransform):
    """``(file index, document file path)`` -> masked shards of one or more datasets.

    Outputs a dict of PCollections: ``shards`` (``(dataset folder, manifest entry)``),
    ``stats`` (one dict) and ``docs`` (spill ranges of the encoded documents, when
    ``keep_documents``, for the Megatron sentence dataset).
    """

    def __init__(
        self,
        vocab: VocabSpec,
        cfg: MaskConfig,
        specs: list[ShardSpec],
        num_shards: int,
        spill_dir: str,
        progress: Progress,
        mask_id: int,
        keep_documents: bool = False,
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.cfg = cfg
        self.specs = specs
        self.num_shards = num_shards
        self.spill_dir = spill_dir
        self.progress = progress
        self.mask_id = mask_id
        self.keep_documents = keep_documents

    # Annotated Any: Beam (2.78+) warns on stderr about any output hint that is not a PCollection.
    def expand(self, files: Any) -> Any:
        if not fsio.is_remote(self.spill_dir):
            os.makedirs(self.spill_dir, exist_ok=True)
        masked = (
            files
            | "SpreadFiles" >> beam.Reshuffle()
            | "EncodeAndMask"
            >> beam.ParDo(
                MaskDocumentFile(
                    self.vocab,
                    self.cfg,
                    self.num_shards,
                    self.spill_dir,
                    self.progress,
                    self.keep_documents,
                )
            ).with_outputs(STATS_TAG, DOCS_TAG, main="ranges")
        )
        markers = files.pipeline | "ShardMarkers" >> beam.Create(
            [(s, None) for s in range(self.num_shards)]
        )
        shards = (
            (masked.ranges, markers)
            | "MergeRanges" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShardFromSpills(self.specs, self.progress))
        )
        stats = masked[STATS_TAG] | "Stats" >> beam.CombineGlobally(
            CombineMaskStats(self.cfg, self.mask_id)
        )
        return {"shards": shards, "stats": stats, "docs": masked[DOCS_TAG]}
