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
duplicate); a shard's writer sorts and permutes its instances with a seeded generator. Nothing depends on the document files, worker count, bundle boundaries or
arrival order: ``run`` and ``extract`` + ``mask`` give the same instances.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np

from corpus_pipeline import fsio, resources
from corpus_pipeline.beam.runner import BeamCounts, Progress
from corpus_pipeline.beam.shards import ShardSpec, WriteShardFromSpills
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.formats.spill import SpillRange, iter_spills, write_spill
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import Document, EncodedDocument, shard_of
from corpus_pipeline.stages.buckets import iter_buckets
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.masking import MaskVocab, content_digest, create_instances
from corpus_pipeline.stages.wordpiece import CHARS_PER_TOKEN, WordPieceEncoder, encode_documents
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked

# A DoFn with several outputs emits (tag, value) pairs on its one output, split by
# `select_tagged` (the Dask runner sends every output of a `with_outputs` ParDo, main and
# tagged alike, to each consumer).
RANGES_TAG = "ranges"
STATS_TAG = "stats"
DOCS_TAG = "docs"
VAL_STATS_TAG = "valstats"
VAL_DOCS_TAG = "valdocs"
#: Bucket and shard keys at or above this belong to the validation split (training keys are
#: the plain bucket and shard numbers, as without a split).
VALIDATION_BASE = 1 << 40
#: What the masking counters (``mask/*``) of the validation split are named instead.
VAL_COUNTERS = "mask-validation/"
# Spill group keys of the encoded documents in file order (the Megatron sentence datasets).
_TRAIN_DOCS_GROUP = -1
_VAL_DOCS_GROUP = -2
# Instances per spill write: bounds what masking holds, whatever the documents' length.
SPILL_CHUNK = 32768


@dataclass(frozen=True)
class VocabSpec:
    """How workers rebuild the encoder, with nothing from the launcher's disk.

    A bundled vocabulary (``bundled`` = ``"uncased"`` or ``"cased"``) is read from the
    worker's own installed package; any other vocabulary travels as its bytes (~230 kB for
    BERT's) inside the DoFns. Either way the worker checks the sha256 of what it loaded, so a
    worker with another corpus-pipeline version fails in one line instead of encoding with
    other ids. No path of the launcher ever reaches a worker (a Dataflow container has none
    of them).
    """

    name: str  # the file's name, for messages and the manifest
    cased: bool
    sha256: str
    bundled: str | None = None
    content: bytes | None = field(default=None, repr=False)
    strip_accents: bool | None = None  # None: BERT's rule (strip when uncased)

    @classmethod
    def from_file(
        cls,
        local: str | os.PathLike[str],
        name: str,
        cased: bool,
        bundled: str | None = None,
        strip_accents: bool | None = None,
    ) -> VocabSpec:
        """The spec of a vocabulary read on the launcher from ``local`` (a local copy)."""
        data = Path(local).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if bundled is not None:
            return cls(name, cased, digest, bundled=bundled, strip_accents=strip_accents)
        return cls(name, cased, digest, content=data, strip_accents=strip_accents)

    def local_path(self) -> str:
        """A file with this vocabulary on this machine (a worker's), its sha256 checked."""
        cached = _VOCAB_FILES.get(self.sha256)
        if cached is not None and os.path.isfile(cached):
            return cached
        if self.bundled is not None:
            path = str(resources.default_vocab(self.bundled == "cased"))
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise UserError(
                    f"{path}: bundled vocabulary unreadable on this worker ({e.strerror}): "
                    "reinstall corpus-pipeline on the workers"
                ) from None
        else:
            assert self.content is not None
            data = self.content
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise UserError(
                f"vocabulary {self.name}: sha256 {digest[:12]} on this worker, "
                f"{self.sha256[:12]} on the launcher: install the same corpus-pipeline "
                "version on the workers as on the launcher"
            )
        if self.bundled is None:
            # The encoder reads a file: one private copy per worker process and vocabulary.
            fd, path = tempfile.mkstemp(prefix="corpus-pipeline-vocab-", suffix=".txt")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        _VOCAB_FILES[self.sha256] = path
        return path


#: Vocabulary files this process has checked, by sha256 (see ``VocabSpec.local_path``).
_VOCAB_FILES: dict[str, str] = {}


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def document_key(doc: Document) -> str:
    """The identity of a document for bucketing and random streams, independent of sharding.

    Google's text format has no ids (the reader names documents ``<file>:<index>``, which
    changes with ``--doc-shards``), so a text document is named by a digest of its sentences;
    other documents keep their id.
    """
    if doc.source != "text":
        return doc.id
    return f"text:{stable_hash('document', *doc.sentences):016x}"


def num_buckets(documents: int, chars: int, cfg: MaskConfig) -> int:
    """``max(1, ceil(N / bucket_size), ceil(C / bucket_chars))``: the same for the same corpus."""
    return max(1, math.ceil(documents / cfg.bucket_size), math.ceil(chars / cfg.bucket_chars))


def bucket_of(key: str, buckets: int) -> int:
    """The negative-sampling bucket of a document key (seed-independent)."""
    return stable_hash("mask-bucket", key) % buckets


def canonical_order(docs: list[EncodedDocument]) -> list[EncodedDocument]:
    """Documents ordered by a hash of their key (ties, equal keys, by content)."""
    docs = sorted(docs, key=lambda d: (stable_hash("mask-order", d.id), d.id))
    if len({d.id for d in docs}) != len(docs):
        docs.sort(key=lambda d: (stable_hash("mask-order", d.id), d.id, content_digest(d)))
    return docs


#: A document that may be held out: (validation hash, documents with it, their characters).
Candidate = tuple[int, int, int]


@dataclass(frozen=True)
class ValidationSplit:
    """Which documents ``MaskConfig.validation_docs`` holds out, decided on the document key.

    ``fraction``: every document whose hash is below ``fraction * 2**63`` (decided alone).
    ``count``: the ``count`` smallest distinct hashes of the corpus (copies of a document have
    one key and go together), so the choice needs every file: see :class:`Candidates`.
    """

    seed: int
    fraction: float | None = None
    count: int | None = None

    @classmethod
    def of(cls, cfg: MaskConfig) -> ValidationSplit | None:
        """The split of a config, or None when nothing is held out."""
        v = cfg.validation_docs
        if v is None:
            return None
        if v < 1:
            return cls(cfg.seed, fraction=float(v))
        return cls(cfg.seed, count=int(v))

    def hash(self, key: str) -> int:
        """The document's place in the draw: a stable hash of (seed, key), 63 bits (Beam's
        integer coder holds signed 64-bit values)."""
        return stable_hash("validation", self.seed, key) >> 1

    def fraction_limit(self) -> int | None:
        return None if self.fraction is None else int(self.fraction * 2**63)


class Candidates:
    """The documents that may still be held out, merged by hash; memory ~ the count.

    With a fraction, every document below its limit; with a count, the ``count`` smallest
    hashes seen so far (what a file sends on, and what the corpus keeps of all files).
    """

    def __init__(self, split: ValidationSplit) -> None:
        self.split = split
        self.limit = split.fraction_limit()
        self.by_hash: dict[int, list[int]] = {}

    def add(self, h: int, documents: int, chars: int) -> None:
        if self.limit is not None and h >= self.limit:
            return
        entry = self.by_hash.setdefault(h, [0, 0])
        entry[0] += documents
        entry[1] += chars
        count = self.split.count
        if count is not None and len(self.by_hash) > 2 * count:
            self.by_hash = dict(sorted(self.by_hash.items())[:count])

    def rows(self) -> list[Candidate]:
        rows = sorted((h, n, c) for h, (n, c) in self.by_hash.items())
        return rows if self.split.count is None else rows[: self.split.count]

    def totals(self, documents: int, chars: int) -> CorpusTotals:
        """The corpus totals once every file's candidates were added."""
        rows = self.rows()
        # A count: one past the count-th smallest hash (no candidate: nothing is held out).
        limit = self.limit if self.limit is not None else (rows[-1][0] + 1 if rows else 0)
        vdocs = sum(n for _, n, _ in rows)
        vchars = sum(c for _, _, c in rows)
        return CorpusTotals(documents - vdocs, chars - vchars, vdocs, vchars, limit)


@dataclass(frozen=True)
class CorpusTotals:
    """What every file needs to know of the corpus: the size of each split, the split limit."""

    documents: int  # training documents
    chars: int
    val_documents: int = 0
    val_chars: int = 0
    limit: int = 0  # documents whose validation hash is below it are held out


class CountDocumentFile(beam.DoFn):
    """A document file -> (the file, documents, characters, held-out candidates)."""

    def __init__(self, split: ValidationSplit | None = None) -> None:
        self.split = split

    def process(
        self, element: tuple[int, str]
    ) -> Iterator[tuple[tuple[int, str], int, int, list[Candidate]]]:
        docs = chars = 0
        cands = Candidates(self.split) if self.split is not None else None
        for d in read_documents(element[1]):
            n = sum(len(s) for s in d.sentences)
            docs += 1
            chars += n
            if cands is not None:
                cands.add(cands.split.hash(document_key(d)), 1, n)
        yield element, docs, chars, cands.rows() if cands is not None else []


class EncodeAndBucket(beam.DoFn):
    """A document file -> its encoded documents spilled by bucket (+ encoded docs in order)."""

    def __init__(
        self,
        vocab: VocabSpec,
        cfg: MaskConfig,
        spill_dir: str,
        progress: Progress,
        keep_documents: bool,
    ) -> None:
        self.vocab = vocab
        self.cfg = cfg
        self.split = ValidationSplit.of(cfg)
        self.spill_dir = spill_dir
        self.progress = progress
        self.keep_documents = keep_documents
        self.count = BeamCounts()

    def setup(self) -> None:
        self.encoder = WordPieceEncoder(
            self.vocab.local_path(), cased=self.vocab.cased, strip_accents=self.vocab.strip_accents
        )

    def process(self, element: tuple[tuple[int, str], CorpusTotals]) -> Iterator[Any]:
        (file_index, path), totals = element
        cfg = self.cfg
        buckets = num_buckets(totals.documents, totals.chars, cfg)
        val_buckets = num_buckets(totals.val_documents, totals.val_chars, cfg)
        for c, docs in enumerate(
            iter_buckets(read_documents(path), cfg.bucket_size, cfg.bucket_chars)
        ):
            self.count("encode/chars", sum(len(s) for d in docs for s in d.sentences))
            keyed = [replace(d, id=document_key(d)) for d in docs]
            del docs
            encoded = encode_documents(keyed, self.encoder, count=self.count)
            del keyed
            stripped = _strip(encoded)
            del encoded
            groups: dict[int, list[EncodedDocument]] = {}
            train: list[EncodedDocument] = []
            held: list[EncodedDocument] = []
            for d in stripped:
                if self.split is not None and self.split.hash(d.id) < totals.limit:
                    held.append(d)
                    b = VALIDATION_BASE + bucket_of(d.id, val_buckets)
                else:
                    train.append(d)
                    b = bucket_of(d.id, buckets)
                groups.setdefault(b, []).append(d)
            if held:
                self.count("mask/validation_documents", len(held))
            # For the Megatron datasets, also the documents in file order (negative groups).
            if self.keep_documents and train:
                groups[_TRAIN_DOCS_GROUP] = train
            if self.keep_documents and held:
                groups[_VAL_DOCS_GROUP] = held
            spill = os.path.join(self.spill_dir, f"docs-{file_index:05d}-{c:05d}.spill")
            for b, r in write_spill(spill, (file_index, c), groups).items():
                if b == _TRAIN_DOCS_GROUP:
                    yield DOCS_TAG, r
                elif b == _VAL_DOCS_GROUP:
                    yield VAL_DOCS_TAG, r
                else:
                    yield RANGES_TAG, (b, r)
        self.progress.tick()


def _strip(docs: list[EncodedDocument]) -> list[EncodedDocument]:
    return [EncodedDocument(d.id, [np.asarray(s, np.int32) for s in d.sentences]) for d in docs]


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


Counted = tuple[tuple[int, str], int, int, list[Candidate]]


def corpus_totals(counted: Iterable[Counted], split: ValidationSplit | None) -> CorpusTotals:
    """Every file's count -> the totals of each split and the held-out limit."""
    docs = chars = 0
    cands = Candidates(split) if split is not None else None
    for _, d, c, rows in counted:
        docs += d
        chars += c
        if cands is not None:
            for row in rows:
                cands.add(*row)
    return cands.totals(docs, chars) if cands is not None else CorpusTotals(docs, chars)


def _sum_totals(
    element: tuple[None, Iterable[Counted]], split: ValidationSplit | None
) -> tuple[int, int]:
    t = corpus_totals(element[1], split)
    return t.documents + t.val_documents, t.chars + t.val_chars


def _attach_totals(
    element: tuple[None, Iterable[Counted]], split: ValidationSplit | None
) -> Iterator[tuple[tuple[int, str], CorpusTotals]]:
    counted = sorted(element[1])
    totals = corpus_totals(counted, split)
    for file, _, _, _ in counted:
        yield file, totals


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
        spread = files | "SpreadFiles" >> beam.Reshuffle()
        # Corpus totals by a plain GroupByKey on one key, handed to every file by the same
        # group: no CombineFn and no side input, so every runner agrees (the Dask runner
        # computes a side input apart, recomputing everything upstream of it).
        counted = (
            spread
            | "CountDocuments" >> beam.ParDo(CountDocumentFile(self.split))
            | "KeyTotals" >> beam.Map(lambda t: (None, t))
            | "GroupTotals" >> beam.GroupByKey()
        )
        totals = counted | "SumTotals" >> beam.Map(_sum_totals, self.split)
        encoded = select_tagged(
            counted
            | "AttachTotals" >> beam.FlatMap(_attach_totals, self.split)
            | "SpreadCounted" >> beam.Reshuffle()
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
            + [(VALIDATION_BASE + s, None) for s in range(self.val_shards if self.split else 0)]
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
