"""``corpus-pipeline vocab``: train a WordPiece vocabulary from sentence-split documents.

Training runs in-process, not as a Beam pipeline: a WordPiece vocabulary is one global
decision (each merge depends on pair counts over the whole corpus), so there is nothing to
shard. HF ``tokenizers`` counts words with its own Rust threads, and the input is streamed
from disk through an iterator, so memory grows with the number of distinct words, not with
the size of the text.

The special tokens come first, in the order of Google's ``bert-base-uncased`` vocabulary:
``[PAD]``, the optional ``[unused0]`` .. ``[unusedN-1]`` reserve, ``[UNK]``, ``[CLS]``,
``[SEP]``, ``[MASK]``; then the alphabet, its ``##`` continuation forms and the learned pieces
in merge order. The file (one token per line) is what every other verb takes as ``--vocab``.

Reproducible: the same input gives the same file, byte for byte. Stock ``tokenizers`` training
does not (huggingface/tokenizers#1794, #2066): the ids of the ``##c`` tokens are assigned in
hash-map order and break ties between merges of equal count, and the alphabet limit drops
characters of equal count in arbitrary order. So a first, fast pass over the input (our exact
BERT pre-tokenizer, numpy character counts) fixes the alphabet -- ties broken by code point --
and the ``##c`` tokens, which the trainer then receives as its initial alphabet and as
pre-assigned tokens; their ids, and with them every tie-break, no longer depend on chance.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output
from corpus_pipeline.formats.documents import list_document_files, read_documents
from corpus_pipeline.stages.wordpiece import SENTENCE_END, BasicTokenizer, WordPieceEncoder

EXAMPLES = """examples:
  corpus-pipeline vocab --input out/docs --size 30522 --output out/vocab.txt
  corpus-pipeline vocab --input a.txt --input b.jsonl --size 28996 --cased --unused 99 \\
      --output cased-vocab.txt
"""

# Sentences handed to the trainer per iterator item (fewer Python -> Rust crossings).
_BATCH = 1000
# Sentences per character-counting step of the first pass.
_COUNT_BATCH = 20_000
_NUM_CODE_POINTS = 0x110000


def special_tokens(unused: int) -> list[str]:
    """BERT's special tokens in ``bert-base-uncased`` order, with ``unused`` reserved slots."""
    return ["[PAD]", *(f"[unused{i}]" for i in range(unused)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``vocab`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "vocab",
        help="train a WordPiece vocabulary from documents",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="DOCS",
        help="documents: a folder or a file, text (one sentence per line, blank line between "
        "documents) or .jsonl with a 'sentences' list; repeatable",
    )
    p.add_argument("--output", required=True, metavar="FILE", help="vocabulary file to write")
    p.add_argument(
        "--size", type=int, default=30522, help="vocabulary size incl. special tokens (30522)"
    )
    p.add_argument(
        "--cased", action="store_true", help="keep case and accents (default: lower-case, strip)"
    )
    p.add_argument(
        "--strip-accents",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="strip accents (default: strip when uncased, keep when --cased); give the same "
        "choice to mask/run",
    )
    p.add_argument(
        "--unused",
        type=int,
        default=0,
        metavar="N",
        help="reserve [unused0]..[unusedN-1] after [PAD] for later additions (default 0)",
    )
    p.add_argument(
        "--min-frequency",
        type=int,
        default=2,
        help="a pair must occur this often to be merged (default 2)",
    )
    p.add_argument(
        "--limit-alphabet",
        type=int,
        default=1000,
        help="keep at most this many distinct characters (default 1000)",
    )
    return p


@dataclass
class _Stats:
    """What one pass over the input saw."""

    documents: int = 0
    sentences: int = 0
    error: Exception | None = None


def _sentence_batches(
    files: Sequence[Path], stats: _Stats, batch_size: int = _BATCH
) -> Iterator[list[str]]:
    """Stream sentences in batches, counting documents and sentences.

    An error while reading (a malformed JSON line) is kept in ``stats.error`` and ends the
    stream: an exception raised inside the trainer's iterator would come back wrapped.
    """
    batch: list[str] = []
    try:
        for path in files:
            for doc in read_documents(path):
                stats.documents += 1
                stats.sentences += len(doc.sentences)
                batch.extend(doc.sentences)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
    except Exception as e:
        stats.error = e
        return
    if batch:
        yield batch


def count_characters(
    files: Sequence[Path], cased: bool, stats: _Stats, strip_accents: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Character counts over the normalized words of the input, as the trainer sees them.

    Returns:
        (occurrences of each code point, occurrences not at the start of a word), int64
        arrays indexed by code point.
    """
    basic = BasicTokenizer(cased, strip_accents)
    total = np.zeros(_NUM_CODE_POINTS, dtype=np.int64)
    inner = np.zeros(_NUM_CODE_POINTS, dtype=np.int64)
    for batch in _sentence_batches(files, stats, _COUNT_BATCH):
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
    total: np.ndarray, inner: np.ndarray, limit: int
) -> tuple[list[str], list[str]]:
    """The ``limit`` most frequent characters (ties: lower code point first), and the ``##c``
    tokens of those that occur inside a word, both sorted by code point."""
    seen = np.flatnonzero(total)
    if seen.size > limit:
        order = np.lexsort((seen, -total[seen]))  # by count descending, then code point
        seen = np.sort(seen[order[:limit]])
    alphabet = [chr(c) for c in seen.tolist()]
    continuing = ["##" + chr(c) for c in seen.tolist() if inner[c]]
    return alphabet, continuing


def train_vocab(
    files: Sequence[Path],
    size: int,
    *,
    cased: bool = False,
    strip_accents: bool | None = None,
    unused: int = 0,
    min_frequency: int = 2,
    limit_alphabet: int = 1000,
) -> tuple[list[str], int, int]:
    """Train a WordPiece vocabulary on document files.

    Args:
        files: Text or JSON-lines document files, streamed in order.
        size: Target vocabulary size, special tokens included (a small corpus may give fewer).
        cased: Keep case (and accents, unless ``strip_accents``).
        strip_accents: Strip accents; None: BERT's rule (strip when uncased).
        unused: Number of ``[unused*]`` slots reserved after ``[PAD]``.
        min_frequency: Minimum pair count for a merge.
        limit_alphabet: Maximum number of distinct characters.

    Returns:
        (tokens by id, documents read, sentences read).

    Raises:
        UserError: The input has no sentence or is malformed, or the size cannot hold the
            special tokens.
    """
    from tokenizers import BertWordPieceTokenizer

    specials = special_tokens(unused)
    if size <= len(specials):
        raise UserError(
            f"--size {size} leaves no room for words after {len(specials)} special tokens"
        )
    stats = _Stats()
    strip = (not cased) if strip_accents is None else bool(strip_accents)
    total, inner = count_characters(files, cased, stats, strip)
    if stats.error is not None:
        raise stats.error
    if stats.sentences == 0 or not total.any():
        names = ", ".join(str(f) for f in files[:3])
        raise UserError(f"{names}: no text to train on (no sentences with words)")
    alphabet, continuing = choose_alphabet(total, inner, limit_alphabet)
    base = len(specials) + len(alphabet) + len(continuing)
    if size < base:
        raise UserError(
            f"--size {size} cannot hold the {len(specials)} special tokens and the "
            f"{len(alphabet)}-character alphabet ({base} tokens): raise --size or lower "
            "--limit-alphabet"
        )
    tok = BertWordPieceTokenizer(
        lowercase=not cased, strip_accents=strip, clean_text=True, handle_chinese_chars=True
    )
    documents, sentences = stats.documents, stats.sentences
    stats = _Stats()
    tok.train_from_iterator(
        _sentence_batches(files, stats),
        vocab_size=size,
        min_frequency=min_frequency,
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        # Pre-assigned ##c ids make merge tie-breaks deterministic (see the module docstring).
        special_tokens=specials + continuing,
        show_progress=False,
    )
    if stats.error is not None:
        raise stats.error
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    # Ids must be 0..n-1 with our pre-assigned tokens first, or the file's line numbers lie.
    head = specials + continuing
    if sorted(vocab.values()) != list(range(len(by_id))) or by_id[: len(head)] != head:
        raise RuntimeError("tokenizers returned a vocabulary with unexpected ids")
    rest = by_id[len(head) :]
    # File order: specials, alphabet, ##alphabet, learned pieces (merge order); only the
    # specials' positions matter to encoding, this order is for people reading the file.
    single = set(alphabet)
    tokens = specials + [t for t in rest if t in single] + continuing
    tokens += [t for t in rest if t not in single]
    return tokens, documents, sentences


def write_vocab(path: Path, tokens: Sequence[str]) -> None:
    """Write one token per line, atomically (temp file beside it, fsync, rename)."""
    for t in tokens:
        if not t or t != t.strip() or "\n" in t:
            raise UserError(f"trained token {t!r} cannot be stored one per line")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(tokens))
        f.write("\n")


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Train, write and check the vocabulary; print a one-line summary."""
    if beam_args:
        raise UserError(
            f"vocab runs in-process and takes no Beam flags: unknown {' '.join(beam_args)}"
        )
    if args.unused < 0:
        raise UserError(f"--unused must be >= 0 (got {args.unused})")
    if args.min_frequency < 1:
        raise UserError(f"--min-frequency must be >= 1 (got {args.min_frequency})")
    if args.limit_alphabet < 1:
        raise UserError(f"--limit-alphabet must be >= 1 (got {args.limit_alphabet})")
    out = Path(args.output)
    if out.is_dir():
        raise UserError(f"--output {out} is a folder: give the vocabulary file name")
    start = time.perf_counter()
    files = list_document_files(args.input)
    tokens, documents, sentences = train_vocab(
        files,
        args.size,
        cased=args.cased,
        strip_accents=args.strip_accents,
        unused=args.unused,
        min_frequency=args.min_frequency,
        limit_alphabet=args.limit_alphabet,
    )
    write_vocab(out, tokens)
    # The file must be usable by every other verb: load it the way they do.
    enc = WordPieceEncoder(out, cased=args.cased, strip_accents=args.strip_accents)
    note = "" if enc.vocab_size == args.size else f" (asked {args.size:,}: corpus too small)"
    print(
        f"vocab: {documents:,} documents, {sentences:,} sentences -> {enc.vocab_size:,} tokens"
        f"{note} -> {out} in {time.perf_counter() - start:.1f}s (sha256 {enc.vocab_sha256[:12]})"
    )
    return 0
