"""Frozen dataclasses, one per stage. Every default lives here.

CLI flags mirror the field names (``--max-per-pack`` <-> ``PackConfig.max_per_pack``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from corpus_pipeline.errors import UserError


@dataclass(frozen=True)
class ExtractConfig:
    """Wikipedia and book extraction.

    Attributes:
        namespaces: MediaWiki namespaces kept (0 = articles).
        min_article_chars: Articles with less clean text than this are dropped (``dropped:short``).
        pages_per_chunk: Pages per work unit when a dump is not multistream.
        max_page_bytes: Pages whose wikitext is larger are dropped (``dropped:too_large``).
        expand_templates: Expand templates defined in the dump (wikiextractor's default).
        max_loss: Largest share of the input (pages, bytes or streams) that damage may cost
            (malformed pages, truncated or corrupt streams) before the verb exits 1.
        text_key: JSON-lines / Parquet inputs: the key (column) holding a document's text.
        id_key: JSON-lines / Parquet inputs: the key holding its id; None: ``<file>:<line>``.
        doc_per_file: ``.txt`` folders: one file is one document (else blank lines separate
            documents).
        max_docs: Keep only the first N documents of the input, in input order (a quick
            try); None keeps all.
    """

    namespaces: tuple[int, ...] = (0,)
    min_article_chars: int = 1
    pages_per_chunk: int = 200
    max_page_bytes: int = 8 * 1024 * 1024
    expand_templates: bool = True
    max_loss: float = 0.001
    text_key: str = "text"
    id_key: str | None = None
    doc_per_file: bool = False
    max_docs: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_loss <= 1.0:
            raise UserError(f"--max-loss must be a fraction in [0, 1] (got {self.max_loss})")
        if self.max_docs is not None and self.max_docs < 1:
            raise UserError(f"--max-docs must be at least 1 (got {self.max_docs})")
        if not self.text_key:
            raise UserError("--text-key must not be empty")


@dataclass(frozen=True)
class SentenceConfig:
    """Sentence splitting (``stages/sentences.py``).

    Attributes:
        language: Wikipedia language code of the text (``en``, ``ja``, ``el``): English uses
            Punkt with the bundled parameters, Chinese and Japanese split at ``。！？``, the
            others use sentencex. ``extract`` and ``run`` read it from the dump's
            ``<dbname>`` unless ``--lang`` is given (books and other text: ``en``).
        max_sentence_chars: Runaway "sentences" (lists, tables) are cut at whitespace below this.
        min_sentence_chars: Shorter pieces are dropped (``split/dropped:short_sentence``).
    """

    language: str = "en"
    max_sentence_chars: int = 1000
    min_sentence_chars: int = 1


def default_workers() -> int:
    """Local worker processes: one per core."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class MaskConfig:
    """Static masking and NSP (Google's create_pretraining_data.py semantics, defects fixed).

    Attributes:
        max_seq_length: S, tokens per instance including [CLS] and two [SEP].
        max_predictions: P, cap on masked positions per instance.
        masked_lm_prob: Fraction of tokens to mask.
        short_seq_prob: Probability of a shorter random target length.
        dupe_factor: Number of times each document is used with different masks.
        whole_word_mask: Mask whole words (80/10/10 decided once per word).
        seed: Base seed for every random draw.
        bucket_size: Documents per negative-sampling bucket.
        bucket_chars: Characters per bucket at most (long documents, books): bounds the
            memory of masking one bucket.
    """

    max_seq_length: int = 128
    max_predictions: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 5
    whole_word_mask: bool = False
    seed: int = 12345
    bucket_size: int = 4096
    bucket_chars: int = 32_000_000

    def validate(self) -> None:
        """Raise UserError for parameter combinations that cannot produce valid instances."""
        if not 8 <= self.max_seq_length <= 4096:
            raise UserError(f"--max-seq-length {self.max_seq_length} is out of range: use 8..4096")
        if self.max_predictions < 1 or self.max_predictions > self.max_seq_length - 3:
            raise UserError(
                f"--max-predictions {self.max_predictions} must be in 1..{self.max_seq_length - 3} "
                f"for --max-seq-length {self.max_seq_length}"
            )
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise UserError("--masked-lm-prob must be in (0, 1)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise UserError("--short-seq-prob must be in [0, 1]")
        if self.dupe_factor < 1:
            raise UserError("--dupe-factor must be >= 1")


# BERT phases: S=128/P=20 (phase 1), S=512/P=80 (phase 2), S=384/P=56.
PRESETS: dict[str, dict[str, int]] = {
    "phase1": {"max_seq_length": 128, "max_predictions": 20},
    "phase2": {"max_seq_length": 512, "max_predictions": 80},
    "384": {"max_seq_length": 384, "max_predictions": 56},
}


@dataclass(frozen=True)
class PackConfig:
    """Sequence packing.

    Attributes:
        max_per_pack: K, at most this many instances per pack.
        strategy: lp (default), nnlshp, spfhp or lpfhp.
        seed: Seed for the deterministic shuffle within length buckets.
    """

    max_per_pack: int = 3
    strategy: str = "lp"
    seed: int = 12345
