"""Steps 1 and 2 of ``mask`` (``beam/mask.py``): count the corpus, encode and bucket.

Step 1 (``CountDocumentFile``, ``corpus_totals``) counts each document file's documents and
characters, and with a validation split (``ValidationSplit``, ``Candidates``) the documents
that may be held out; the totals fix the number of buckets (``num_buckets``). Step 2
(``EncodeAndBucket``) encodes each file in chunks and spills its documents grouped by bucket
(``bucket_of`` of ``document_key``), the held-out documents in buckets from
``VALIDATION_BASE`` up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam
import numpy as np

from corpus_pipeline.beam.counters import BeamCounts
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.formats.documents import read_documents
from corpus_pipeline.formats.spill import write_spill
from corpus_pipeline.hashing import stable_hash
from corpus_pipeline.records import Document, EncodedDocument
from corpus_pipeline.stages.buckets import iter_buckets
from corpus_pipeline.stages.wordpiece import WordPieceEncoder, encode_documents

# A DoFn with several outputs emits (tag, value) pairs on its one output, split by
# `select_tagged` of beam/mask.py (the Dask runner sends every output of a `with_outputs`
# ParDo, main and tagged alike, to each consumer).
RANGES_TAG = "ranges"
DOCS_TAG = "docs"
VAL_DOCS_TAG = "valdocs"
#: Bucket and shard keys at or above this belong to the validation split (training keys are
#: the plain bucket and shard numbers, as without a split).
VALIDATION_BASE = 1 << 40
# Spill group keys of the encoded documents in file order (the Megatron sentence datasets).
_TRAIN_DOCS_GROUP = -1
_VAL_DOCS_GROUP = -2


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


def sum_totals(
    element: tuple[None, Iterable[Counted]], split: ValidationSplit | None
) -> tuple[int, int]:
    t = corpus_totals(element[1], split)
    return t.documents + t.val_documents, t.chars + t.val_chars


def attach_totals(
    element: tuple[None, Iterable[Counted]], split: ValidationSplit | None
) -> Iterator[tuple[tuple[int, str], CorpusTotals]]:
    counted = sorted(element[1])
    totals = corpus_totals(counted, split)
    for file, _, _, _ in counted:
        yield file, totals


__all__ = [
    "DOCS_TAG",
    "RANGES_TAG",
    "VALIDATION_BASE",
    "VAL_DOCS_TAG",
    "Candidate",
    "Candidates",
    "CorpusTotals",
    "CountDocumentFile",
    "Counted",
    "EncodeAndBucket",
    "ValidationSplit",
    "attach_totals",
    "bucket_of",
    "corpus_totals",
    "document_key",
    "num_buckets",
    "sum_totals",
]
