"""Frozen dataclasses, one per stage. Every default lives here, once.

Each option is a field declared with :func:`option`: its name, type, default and the help
text of its CLI flag. The verbs generate their flags from these fields
(``corpus_pipeline/commands/options.py``), so a flag's name mirrors its field
(``--max-per-pack`` <-> ``PackConfig.max_per_pack``) and its help shows the real default.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, replace
from typing import Any

from corpus_pipeline.errors import UserError


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    minimum: float | None = None,
    default_help: str | None = None,
    flag: str | None = None,
) -> Any:
    """A config field that is also a CLI flag.

    Args:
        default: The default value (one source for the dataclass and the flag's help).
        help: What the option does, for ``--help`` (the default is appended).
        aliases: Other accepted spellings of the flag (kept for compatibility).
        metavar: Placeholder shown in ``--help``.
        minimum: Smallest accepted value; a smaller one is refused in one line.
        default_help: How to describe the default when its value alone would mislead
            (e.g. "128, or the --preset's").
        flag: The flag's name when it is not ``--`` + the field name with dashes.
    """
    meta = {
        "help": help,
        "aliases": aliases,
        "metavar": metavar,
        "minimum": minimum,
        "default_help": default_help,
        "flag": flag,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ExtractConfig:
    """Wikipedia and book extraction (see each field's help)."""

    namespaces: tuple[int, ...] = option(
        (0,), "MediaWiki namespaces kept, comma-separated (0 = articles)", metavar="N[,N]"
    )
    min_article_chars: int = option(
        1,
        "articles with less clean text are dropped (counted as extract/dropped:short)",
        minimum=0,
    )
    pages_per_chunk: int = option(
        200, "pages per parallel work item for single-stream dumps", minimum=1
    )
    max_page_bytes: int = option(
        8 * 1024 * 1024,
        "pages with more wikitext are dropped (counted as extract/dropped:too_large)",
        minimum=1,
    )
    expand_templates: bool = option(
        True,
        "expand the templates defined in the dump, as wikiextractor does (--no-templates: "
        "keep their text out)",
        aliases=("--templates",),
    )
    max_loss: float = option(
        0.001,
        "exit 1 when damage (malformed pages, truncated or corrupt streams) costs more than "
        "this share of the input (pages, bytes or streams)",
        metavar="FRACTION",
    )
    text_key: str = option(
        "text", "JSON-lines/Parquet field holding a document's text", metavar="KEY"
    )
    id_key: str | None = option(
        None,
        "JSON-lines/Parquet field holding a document's id",
        metavar="KEY",
        default_help="file name + line",
    )
    doc_per_file: bool = option(
        False, "--text-dir: one .txt file is one document (else blank lines separate them)"
    )
    max_docs: int | None = option(
        None,
        "a quick try: only the first N documents of the input, in input order",
        metavar="N",
        minimum=1,
        default_help="all",
    )

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

    ``language``: English uses Punkt with the bundled parameters, Chinese and Japanese split
    at ``。！？``, the others use sentencex. ``language`` is that of the dumps and other text,
    ``books_language`` that of the books (:meth:`for_source`), so the books of a mixed run
    keep English when the dump is Japanese.
    """

    language: str = option(
        "en",
        "Wikipedia language code of the dumps and other text (en, ja, el, zh-yue), for "
        "sentence splitting (books: --books-language)",
        aliases=("--lang",),
        metavar="CODE",
        default_help="read from the dump's <siteinfo> <dbname> (jawiki -> ja); en for other text",
    )
    books_language: str = option(
        "en",
        "language code of the --books text, for sentence splitting: books keep their own "
        "language beside a dump of another (a jawiki dump with English books)",
        aliases=("--books-lang",),
        metavar="CODE",
        default_help="en; --lang when books are the only input",
    )
    max_sentence_chars: int = option(
        1000, "cut longer runaway sentences (lists, tables) at whitespace", minimum=1
    )
    min_sentence_chars: int = option(
        1,
        "drop shorter sentences (counted as split/dropped:short_sentence)",
        minimum=1,
    )

    def for_source(self, source: str) -> SentenceConfig:
        """The splitting of an article from ``source`` (``Article.source``): books are split
        in :attr:`books_language`, everything else in :attr:`language`."""
        if source == "books" and self.books_language != self.language:
            return replace(self, language=self.books_language)
        return self


def default_workers() -> int:
    """Local worker processes: one per core."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class MaskConfig:
    """Static masking and NSP (Google's create_pretraining_data.py semantics, defects fixed)."""

    max_seq_length: int = option(
        128,
        "S, tokens per instance including [CLS] and two [SEP]",
        default_help="128, or the --preset's",
    )
    max_predictions: int = option(
        20, "P, masked positions per instance at most", default_help="20, or the --preset's"
    )
    masked_lm_prob: float = option(0.15, "fraction of tokens to mask")
    short_seq_prob: float = option(0.1, "probability of a shorter random target length")
    dupe_factor: int = option(5, "times each document is used, with different masks")
    whole_word_mask: bool = option(False, "mask whole words (80/10/10 decided once per word)")
    seed: int = option(12345, "base seed of every random draw")
    bucket_size: int = option(
        4096, "documents per negative-sampling bucket (bounds memory)", minimum=1
    )
    bucket_chars: int = option(
        32_000_000,
        "characters per bucket at most, for long documents (bounds memory)",
        minimum=1,
    )
    validation_docs: float | None = option(
        None,
        "hold whole documents out into a validation/ dataset beside the training one: a count "
        "(100) or a fraction (0.01), chosen by a hash of each document and --seed",
        metavar="N|FRACTION",
        default_help="none",
    )

    def validate(self) -> None:
        """Raise UserError for parameter combinations that cannot produce valid instances."""
        v = self.validation_docs
        if v is not None and not (0.0 < v < 1.0 or (v >= 1 and float(v).is_integer())):
            raise UserError(
                f"--validation-docs {v}: give a count of documents (a whole number >= 1) or "
                "a fraction between 0 and 1"
            )
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

#: Instances per shard that the default shard count aims at. A shard's writer holds the whole
#: shard (to shuffle it) at ~1.2 KB per phase1 instance (286k instances measured at +330 MB),
#: so ~250k keeps a writer near 350 MB. Bytes per instance scale with S and instances per
#: token with 1/S, so the target holds for every preset.
SHARD_TARGET_INSTANCES = 250_000


@dataclass(frozen=True)
class PackConfig:
    """Sequence packing (``stages/packing.py``)."""

    max_per_pack: int = option(3, "K, at most this many instances per pack", minimum=1)
    strategy: str = option("lp", "packing strategy: lp, nnlshp, spfhp or lpfhp", metavar="NAME")
    seed: int = option(12345, "seed of the deterministic shuffle within length buckets")


@dataclass(frozen=True)
class WordPieceConfig:
    """How text becomes WordPiece ids (``stages/wordpiece.py``), for ``vocab``, ``mask``
    and ``run``."""

    vocab: str | None = option(
        None, "WordPiece vocab.txt", metavar="FILE", default_help="the bundled BERT vocabulary"
    )
    cased: bool = option(
        False, "keep upper case (a cased vocabulary; with no --vocab, the bundled cased one)"
    )
    strip_accents: bool | None = option(
        None,
        "strip accents before WordPiece (--no-strip-accents keeps ά and ガ with an uncased "
        "vocabulary); give vocab, mask and run the same choice",
        default_help="strip when uncased, keep when --cased, as BERT",
    )


@dataclass(frozen=True)
class VocabConfig:
    """Training a WordPiece vocabulary (``stages/wordpiece_training.py``)."""

    size: int = option(30522, "vocabulary size, special tokens included", minimum=1)
    unused: int = option(
        0,
        "reserve [unused0]..[unusedN-1] after [PAD] for later additions",
        metavar="N",
        minimum=0,
    )
    min_frequency: int = option(2, "a pair must occur this often to be merged", minimum=1)
    limit_alphabet: int = option(
        1000,
        "keep at most this many distinct characters, more while they cover under 99.99%% of "
        "the text (Japanese, Chinese)",
        minimum=1,
    )
