"""Training a WordPiece vocabulary, reproducibly (used by ``corpus-pipeline vocab``).

Training runs in one process, not as a Beam pipeline: a WordPiece vocabulary is one global
decision (each merge depends on pair counts over the whole corpus), so there is nothing to
shard. HF ``tokenizers`` counts words with its own Rust threads, and the input is streamed
through an iterator of sentence batches, so memory grows with the number of distinct words,
not with the size of the text. Like every stage, this module does no file IO: the caller
hands it the sentences.

The special tokens come first, in the order of Google's ``bert-base-uncased`` vocabulary:
``[PAD]``, the optional ``[unused0]`` .. ``[unusedN-1]`` reserve, ``[UNK]``, ``[CLS]``,
``[SEP]``, ``[MASK]``; then the alphabet, its ``##`` continuation forms and the learned pieces
in merge order.

Reproducible: the same input gives the same tokens. Stock ``tokenizers`` training does not
(huggingface/tokenizers#1794, #2066): the ids of the ``##c`` tokens are assigned in hash-map
order and break ties between merges of equal count, and the alphabet limit drops characters of
equal count in arbitrary order. So a first, fast pass over the input (our exact BERT
pre-tokenizer, numpy character counts) fixes the alphabet -- ties broken by code point -- and
the ``##c`` tokens, which the trainer then receives as its initial alphabet and as
pre-assigned tokens; their ids, and with them every tie-break, no longer depend on chance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from corpus_pipeline.config import VocabConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.stages.basic_tokenizer import SENTENCE_END, BasicTokenizer

#: Sentences per batch handed to the trainer (fewer Python -> Rust crossings).
TRAIN_BATCH = 1000
#: Sentences per character-counting step of the first pass.
COUNT_BATCH = 20_000
_NUM_CODE_POINTS = 0x110000

#: Share of the input's character occurrences the alphabet always covers, whatever
#: ``--limit-alphabet``: Japanese or Chinese text uses thousands of distinct ideographs, each a
#: word of its own (so a missing one is an [UNK], not a ``##`` split), and a 1,000-character
#: alphabet can leave several percent of such text [UNK] (README, "A vocabulary for another
#: language"). English text reaches it with a few hundred characters: its alphabet stays the
#: ``--limit-alphabet`` most frequent.
CHARACTER_COVERAGE = 0.9999

#: ``batches(batch_size)``: a fresh pass over the input's sentences, in batches.
SentenceBatches = Callable[[int], Iterable[list[str]]]


def special_tokens(unused: int) -> list[str]:
    """BERT's special tokens in ``bert-base-uncased`` order, with ``unused`` reserved slots."""
    return ["[PAD]", *(f"[unused{i}]" for i in range(unused)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def count_characters(
    batches: Iterable[list[str]], cased: bool, strip_accents: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Character counts over the normalized words of the input, as the trainer sees them.

    Returns:
        (occurrences of each code point, occurrences not at the start of a word), int64
        arrays indexed by code point.
    """
    basic = BasicTokenizer(cased, strip_accents)
    total = np.zeros(_NUM_CODE_POINTS, dtype=np.int64)
    inner = np.zeros(_NUM_CODE_POINTS, dtype=np.int64)
    for batch in batches:
        # Words joined by NUL (sentence ends are NUL words already): a code point array in
        # which a word starts at index 0 or right after a NUL.
        text = SENTENCE_END.join(basic.split_grouped(batch)[0])  # order is irrelevant here
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if not cps.size:
            continue
        is_inner = np.zeros(cps.shape, dtype=bool)
        is_inner[1:] = cps[:-1] != 0
        for counts, sel in ((total, cps), (inner, cps[is_inner])):
            c = np.bincount(sel)
            counts[: c.size] += c
    total[0] = inner[0] = 0
    return total, inner


def choose_alphabet(
    total: np.ndarray, inner: np.ndarray, limit: int, coverage: float = CHARACTER_COVERAGE
) -> tuple[list[str], list[str]]:
    """The ``limit`` most frequent characters (ties: lower code point first) -- more when
    those cover less than ``coverage`` of the character occurrences: then the most frequent
    ones that do --, and the ``##c`` tokens of those that occur inside a word, both sorted by
    code point."""
    seen = np.flatnonzero(total)
    if seen.size > limit:
        order = np.lexsort((seen, -total[seen]))  # by count descending, then code point
        cum = np.cumsum(total[seen[order]])
        needed = int(np.searchsorted(cum, coverage * cum[-1])) + 1
        seen = np.sort(seen[order[: max(limit, needed)]])
    alphabet = [chr(c) for c in seen.tolist()]
    continuing = ["##" + chr(c) for c in seen.tolist() if inner[c]]
    return alphabet, continuing


def train_wordpiece(
    batches: SentenceBatches,
    cfg: VocabConfig,
    *,
    cased: bool = False,
    strip_accents: bool | None = None,
    source: str = "the input",
) -> list[str]:
    """Train a WordPiece vocabulary on two passes over the input's sentences.

    Args:
        batches: ``batches(n)`` returns a fresh pass over the sentences in batches of about
            ``n`` (called twice: character counts, then training).
        cfg: Size, ``[unused*]`` reserve, minimum pair count, alphabet limit.
        cased: Keep case (and accents, unless ``strip_accents``).
        strip_accents: Strip accents; None: BERT's rule (strip when uncased).
        source: The input's name, for the error of an input without text.

    Returns:
        The tokens by id (a small corpus may give fewer than ``cfg.size``).

    Raises:
        UserError: The input has no words, or the size cannot hold the special tokens and
            the alphabet.
    """
    from tokenizers import BertWordPieceTokenizer

    specials = special_tokens(cfg.unused)
    if cfg.size <= len(specials):
        raise UserError(
            f"--size {cfg.size} leaves no room for words after {len(specials)} special tokens"
        )
    strip = (not cased) if strip_accents is None else bool(strip_accents)
    total, inner = count_characters(batches(COUNT_BATCH), cased, strip)
    if not total.any():
        raise UserError(f"{source}: no text to train on (no sentences with words)")
    alphabet, continuing = choose_alphabet(total, inner, cfg.limit_alphabet)
    base = len(specials) + len(alphabet) + len(continuing)
    if cfg.size < base:
        raise UserError(
            f"--size {cfg.size} cannot hold the {len(specials)} special tokens and the "
            f"{len(alphabet)}-character alphabet ({base} tokens): raise --size or lower "
            "--limit-alphabet"
        )
    tok = BertWordPieceTokenizer(
        lowercase=not cased, strip_accents=strip, clean_text=True, handle_chinese_chars=True
    )
    stream = _Guarded(batches(TRAIN_BATCH))
    tok.train_from_iterator(
        iter(stream),
        vocab_size=cfg.size,
        min_frequency=cfg.min_frequency,
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        # Pre-assigned ##c ids make merge tie-breaks deterministic (see the module docstring).
        special_tokens=specials + continuing,
        show_progress=False,
    )
    if stream.error is not None:
        raise stream.error
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    # Ids must be 0..n-1 with our pre-assigned tokens first, or the file's line numbers lie.
    head = specials + continuing
    if sorted(vocab.values()) != list(range(len(by_id))) or by_id[: len(head)] != head:
        raise RuntimeError("tokenizers returned a vocabulary with unexpected ids")
    rest = by_id[len(head) :]
    # Order: specials, alphabet, ##alphabet, learned pieces (merge order); only the specials'
    # positions matter to encoding, this order is for people reading the file.
    single = set(alphabet)
    tokens = specials + [t for t in rest if t in single] + continuing
    tokens += [t for t in rest if t not in single]
    return tokens


class _Guarded:
    """Iterates ``batches``, keeping an exception instead of raising it.

    An exception raised inside the trainer's iterator would come back wrapped by the Rust
    side; kept here, it ends the stream and is raised as it is after training.
    """

    def __init__(self, batches: Iterable[list[str]]) -> None:
        self.batches = batches
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[list[str]]:
        try:
            yield from self.batches
        except Exception as e:
            self.error = e
