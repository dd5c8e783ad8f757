"""The few record types that flow between stages.

Records are plain dataclasses so they pickle cheaply across Beam fusion breaks. Beam elements
are *chunks* (lists) of these, never single sentences.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from corpus_pipeline.hashing import stable_hash

# Byte lengths of an instance's four arrays, at the start of its key.
_LENGTHS = struct.Struct("<4I")


@dataclass
class Article:
    """A raw page or book before sentence splitting.

    Attributes:
        id: Stable identifier, unique within the corpus (``wiki:<page id>``, ``book:<file>``).
        title: Page title or book file name.
        source: ``wikipedia`` or ``books``.
        text: Clean text, paragraphs separated by newlines.
    """

    id: str
    title: str
    source: str
    text: str


@dataclass
class Document:
    """A sentence-split document: the unit of NSP pairing and of the text output format."""

    id: str
    title: str
    source: str
    sentences: list[str] = field(default_factory=list)


@dataclass
class EncodedDocument:
    """A document whose sentences are WordPiece ids (one int32 array per sentence)."""

    id: str
    sentences: list[np.ndarray] = field(default_factory=list)


@dataclass
class Instance:
    """One BERT pretraining instance, unpadded.

    Attributes:
        input_ids: int32[L], ``[CLS] A [SEP] B [SEP]`` with masked tokens replaced.
        segment_ids: int8[L], 0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``.
        masked_lm_positions: int32[M], sorted positions of the predicted tokens.
        masked_lm_ids: int32[M], the original ids at those positions.
        next_sentence_label: 1 if B is a random next sentence, else 0.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    next_sentence_label: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instance):
            return NotImplemented
        return (
            self.next_sentence_label == other.next_sentence_label
            and np.array_equal(self.input_ids, other.input_ids)
            and np.array_equal(self.segment_ids, other.segment_ids)
            and np.array_equal(self.masked_lm_positions, other.masked_lm_positions)
            and np.array_equal(self.masked_lm_ids, other.masked_lm_ids)
        )

    def key(self) -> bytes:
        """The content as bytes: equal keys exactly when the instances are equal.

        The four arrays' byte lengths come first, then the arrays (int32, int8, int32, int32,
        whatever dtype they were read back as) and the label, so no two instances share a key
        (a separator byte could also occur inside the arrays). Used for multiset comparisons,
        canonical orders and :func:`shard_of`.
        """
        parts = (
            np.asarray(self.input_ids, np.int32).tobytes(),
            np.asarray(self.segment_ids, np.int8).tobytes(),
            np.asarray(self.masked_lm_positions, np.int32).tobytes(),
            np.asarray(self.masked_lm_ids, np.int32).tobytes(),
        )
        return b"".join(
            (_LENGTHS.pack(*map(len, parts)), *parts, bytes((self.next_sentence_label,)))
        )


def shard_of(instance: Instance, num_shards: int) -> int:
    """The shard an instance is written to: a stable hash of its content, modulo N.

    The one rule for every dataset (``mask``, ``run``, the test datasets of
    ``corpus_pipeline.testing``); ``pack`` keeps source shard i as packed shard i. It depends
    on the instance alone, not on bucket, chunk, worker or arrival order, and equal instances
    (a duplicate drawn twice) share a shard.
    """
    return stable_hash("shard", instance.key()) % num_shards


@dataclass
class Pack:
    """Up to K instances that share one row of S tokens (block-diagonal attention)."""

    instances: list[Instance] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(len(i) for i in self.instances)
