"""PTransforms of ``mask``: documents -> WordPiece -> static masking -> shards.

Negatives come from a bucket of documents that spans every document file, so the statistics
(NSP random next ~50%) and the instances do not depend on how the documents are sharded
(``--doc-shards``), on the number of shards or on the workers. Three steps:

1. ``CountDocuments``: each file's documents and characters, summed into the corpus totals
   (``N`` documents, ``C`` characters), grouped on one key and handed to each file with its
   path (no side input). The number of buckets is
   ``B = max(1, ceil(N / bucket_size), ceil(C / bucket_chars))``.
2. ``EncodeAndBucket`` (one element per file): reads the file in chunks, encodes each chunk,
   and spills its documents grouped by bucket ``stable_hash("mask-bucket", key) % B``, where
   ``key`` is the document's id, or for Google's text format (ids are positions in a file) a
   digest of its sentences. Only ``(bucket, SpillRange)`` references cross the GroupByKey.
3. ``MaskBucket`` (one element per bucket): reads the bucket's documents, orders them
   canonically (by a hash of the key), cuts them into pieces of at most ``bucket_chars``
   characters (in tokens: ``bucket_chars / CHARS_PER_TOKEN``; a bucket of long documents is
   never masked at once), masks each piece (negatives from another document of the piece)
   and spills the instances, ``SPILL_CHUNK`` at a time and grouped by destination shard.
   One writer per shard reads its ranges back.

Steps 1 and 2 are in ``beam/mask_buckets.py``; how the DoFns get the vocabulary on a worker
is ``beam/vocab_spec.py``.

Validation split (``MaskConfig.validation_docs``): whole documents are held out, chosen by
``stable_hash("validation", seed, key)`` (:class:`ValidationSplit`): with a fraction ``f`` the
documents whose hash is below ``f * 2**63``; with a count ``N`` the ``N`` smallest distinct
hashes, found in step 1 (each file sends its ``N`` smallest, the group keeps the ``N``
smallest of those). Held-out documents get buckets and shards of their own, keyed from
:data:`VALIDATION_BASE` up, so no training instance draws a negative from them and their
instances land only in the validation dataset. Without a split the graph is the one above.

Memory is bounded by the chunk size (step 2), the bucket size (step 3: ``bucket_size``
documents and ``bucket_chars`` characters on average) and the shard size (writing), whatever
the corpus size.

Determinism: a bucket's contents depend only on the documents and the totals; an instance
chunk's key is (bucket, piece, chunk index); an instance goes to the shard its content hashes
to (``records.shard_of``); masking draws from generators seeded by (seed, document key,
duplicate); a shard's writer sorts and permutes its instances with a seeded generator. Nothing
depends on the document files, worker count, bundle boundaries or arrival order: ``run`` and
``extract`` + ``mask`` give the same instances.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio
from corpus_pipeline.beam.counters import BeamCounts
from corpus_pipeline.beam.mask_buckets import (
    DOCS_TAG,
    RANGES_TAG,
    VAL_DOCS_TAG,
    VALIDATION_BASE,
    CountDocumentFile,
    EncodeAndBucket,
    ValidationSplit,
    attach_totals,
    sum_totals,
)
from corpus_pipeline.beam.options import in_one_process, spread
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.beam.shards import ShardSpec, WriteShardFromSpills
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.formats.spill import SpillRange, iter_spills, write_spill
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import EncodedDocument, shard_of
from corpus_pipeline.stages.buckets import iter_buckets
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.masking import MaskVocab, content_digest, create_instances
from corpus_pipeline.stages.wordpiece import CHARS_PER_TOKEN
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked

# Tags of MaskBucket's outputs (those of EncodeAndBucket are in beam/mask_buckets.py).
STATS_TAG = "stats"
VAL_STATS_TAG = "valstats"
#: What the masking counters (``mask/*``) of the validation split are named instead.
VAL_COUNTERS = "mask-validation/"
# Instances per spill write: bounds what masking holds, whatever the documents' length.
SPILL_CHUNK = 32768


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def canonical_order(docs: list[EncodedDocument]) -> list[EncodedDocument]:
    """Documents ordered by a hash of their key (ties, equal keys, by content)."""
    docs = sorted(docs, key=lambda d: (stable_hash("mask-order", d.id), d.id))
    if len({d.id for d in docs}) != len(docs):
        docs.sort(key=lambda d: (stable_hash("mask-order", d.id), d.id, content_digest(d)))
    return docs


class MaskBucket(beam.DoFn):
    """``(bucket, [SpillRange])`` -> spilled, masked instances by shard (+ stats per piece)."""

    def __init__(
        self,
        vocab: VocabSpec,
        cfg: MaskConfig,
        num_shards: int,
        spill_dir: str,
        val_shards: int = 0,
    ) -> None:
        self.vocab = vocab
        self.cfg = cfg
        self.num_shards = num_shards
        self.val_shards = val_shards
        self.spill_dir = spill_dir
        self.count = BeamCounts()

    def setup(self) -> None:
        tokens = load_vocab_checked(self.vocab.local_path())
        self.mvocab = MaskVocab.from_tokens(tokens, source=self.vocab.name)

    def process(self, element: tuple[int, Iterable[SpillRange]]) -> Iterator[Any]:
        bucket, ranges = element
        cfg = self.cfg
        held = bucket >= VALIDATION_BASE
        num_shards, first_shard = (
            (self.val_shards, VALIDATION_BASE) if held else (self.num_shards, 0)
        )
        # The validation split's masking counters go apart, so that each split's statistics
        # (short targets, truncation) are its own.
        count = _Renamed(self.count, "mask/", VAL_COUNTERS) if held else self.count
        docs = canonical_order(list(iter_spills(sorted(ranges))))
        max_tokens = max(1, math.ceil(cfg.bucket_chars / CHARS_PER_TOKEN))
        for p, piece in enumerate(iter_buckets(docs, 1 << 62, max_tokens)):
            count("mask/buckets")
            stats = MaskStats.for_config(cfg, self.mvocab)
            instances = create_instances(piece, cfg, self.mvocab, count=count)
            # A piece's instances are spilled SPILL_CHUNK at a time, so a bucket of long
            # documents never holds all its instances. Each goes to the shard its content
            # hashes to (records.shard_of): independent of chunks, workers and order.
            for c, chunk in enumerate(iter_chunks(instances, SPILL_CHUNK)):
                key = (bucket, p, c)
                groups: dict[int, list[Any]] = {}
                for inst in chunk:
                    groups.setdefault(first_shard + shard_of(inst, num_shards), []).append(inst)
                stats.add_many(chunk)
                spill = os.path.join(self.spill_dir, f"bucket-{bucket:06d}-{p:04d}-{c:04d}.spill")
                for shard, r in write_spill(spill, key, groups).items():
                    yield RANGES_TAG, (shard, r)
                del chunk, groups
            yield VAL_STATS_TAG if held else STATS_TAG, stats


class _Renamed:
    """A ``count`` callback that counts names starting with ``old`` as ``new`` + the rest."""

    def __init__(self, count: Any, old: str, new: str) -> None:
        self.count, self.old, self.new = count, old, new

    def __call__(self, name: str, n: int = 1) -> None:
        if name.startswith(self.old):
            name = self.new + name[len(self.old) :]
        self.count(name, n)


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


def _select(element: tuple[str, Any], tag: str) -> Iterator[Any]:
    if element[0] == tag:
        yield element[1]


def select_tagged(pcoll: Any, label: str, tags: Iterable[str]) -> dict[str, Any]:
    """Split a PCollection of ``(tag, value)`` pairs into one PCollection per tag."""
    return {tag: pcoll | f"{label}{tag.title()}" >> beam.FlatMap(_select, tag) for tag in tags}


class MaskToShards(beam.PTransform):
    """``(file index, document file path)`` -> masked shards of one or more datasets.

    Outputs a dict of PCollections: ``shards`` (``(dataset folder, manifest entry)``),
    ``stats`` (one dict), ``docs`` (spill ranges of the encoded documents, when
    ``keep_documents``, for the Megatron sentence dataset) and ``totals`` (one
    ``(documents, characters)`` pair: the corpus read). With ``val_specs`` (a validation
    split, ``cfg.validation_docs``) also ``val_shards``, ``val_stats`` and ``val_docs``, the
    same for the held-out documents' datasets.
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
        val_specs: list[ShardSpec] | None = None,
        val_shards: int = 0,
        write_progress: Progress | None = None,
    ) -> None:
        super().__init__()
        # Files encoded tick `progress`, shards written `write_progress` (default the same).
        self.write_progress = write_progress if write_progress is not None else progress
        self.split = ValidationSplit.of(cfg)
        if (self.split is None) != (not val_specs):
            raise ValueError("val_specs must be given exactly when cfg.validation_docs is")
        self.val_specs = val_specs or []
        self.val_shards = val_shards
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
        spread_files = spread(files, "SpreadFiles")
        # Corpus totals by a plain GroupByKey on one key, handed to every file by the same
        # group: no CombineFn and no side input, so every runner agrees (the Dask runner
        # computes a side input apart, recomputing everything upstream of it).
        counted = (
            spread_files
            | "CountDocuments" >> beam.ParDo(CountDocumentFile(self.split))
            | "KeyTotals" >> beam.Map(lambda t: (None, t))
            | "GroupTotals" >> beam.GroupByKey()
        )
        totals = counted | "SumTotals" >> beam.Map(sum_totals, self.split)
        attached = counted | "AttachTotals" >> beam.FlatMap(attach_totals, self.split)
        encoded = select_tagged(
            spread(attached, "SpreadCounted")
            | "EncodeAndBucket"
            >> beam.ParDo(
                EncodeAndBucket(
                    self.vocab, self.cfg, self.spill_dir, self.progress, self.keep_documents
                )
            ),
            "Encoded",
            (RANGES_TAG, DOCS_TAG, VAL_DOCS_TAG),
        )
        masked = select_tagged(
            encoded[RANGES_TAG]
            | "GroupByBucket" >> beam.GroupByKey()
            | "MaskBuckets"
            >> beam.ParDo(
                MaskBucket(self.vocab, self.cfg, self.num_shards, self.spill_dir, self.val_shards)
            ),
            "Masked",
            (RANGES_TAG, STATS_TAG, VAL_STATS_TAG),
        )
        markers = files.pipeline | "ShardMarkers" >> beam.Create(
            [(s, None) for s in range(self.num_shards)]
            + [(VALIDATION_BASE + s, None) for s in range(self.val_shards if self.split else 0)],
            reshuffle=not in_one_process(files.pipeline),
        )
        grouped = (
            (masked[RANGES_TAG], markers)
            | "MergeRanges" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
        )
        out = {"docs": encoded[DOCS_TAG], "totals": totals}
        if self.split is not None:
            val = (
                grouped
                | "ValidationShards" >> beam.FlatMap(_shard_of_split, True)
                | "WriteValidationShards"
                >> beam.ParDo(WriteShardFromSpills(self.val_specs, self.write_progress))
            )
            grouped = grouped | "TrainingShards" >> beam.FlatMap(_shard_of_split, False)
            out["val_shards"] = val
            out["val_stats"] = masked[VAL_STATS_TAG] | "ValidationStats" >> beam.CombineGlobally(
                CombineMaskStats(self.cfg, self.mask_id)
            )
            out["val_docs"] = encoded[VAL_DOCS_TAG]
        out["shards"] = grouped | "WriteShards" >> beam.ParDo(
            WriteShardFromSpills(self.specs, self.write_progress)
        )
        out["stats"] = masked[STATS_TAG] | "Stats" >> beam.CombineGlobally(
            CombineMaskStats(self.cfg, self.mask_id)
        )
        return out


def _shard_of_split(element: tuple[int, Any], held: bool) -> Iterator[tuple[int, Any]]:
    """Keep the shards of one split, numbered from 0 within it."""
    key, items = element
    if (key >= VALIDATION_BASE) == held:
        yield (key - VALIDATION_BASE if held else key), items
