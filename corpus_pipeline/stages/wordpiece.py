"""WordPiece encoding: sentences to int32 id arrays, exactly as BERT's tokenizer, but fast.

The reference is HF ``tokenizers.BertWordPieceTokenizer(vocab, lowercase=..., strip_accents=...,
clean_text=True, handle_chinese_chars=True)`` with ``encode(s, add_special_tokens=False).ids``:
the BERT basic tokenizer (remove control characters, whitespace to space, spaces around CJK
ideographs, uncased: NFD + drop non-spacing marks + lower-case; split on whitespace, isolate
punctuation), then greedy longest-match-first WordPiece per word (Schuster & Nakajima 2012;
Devlin et al. 2019), a word of more than 100 characters being ``[UNK]``.

Why it is fast: most words repeat. We pre-tokenize a whole chunk of sentences with one regex
(``findall`` over the sentences joined by a NUL marker) and map each word to its ids through a
word -> ids cache whose values are int32 bytes, so a chunk's ids are one ``b"".join`` and one
``np.frombuffer``. Only the cache misses of a chunk cross into Rust, in one ``encode`` call of
pre-tokenized words on a model-only tokenizer (no normalizer, no pre-tokenizer).

Why it is exact: the words come from ``stages/basic_tokenizer.py`` (BERT's normalizer and
pre-tokenizer, reproduced per character and checked against the real ones; its docstring says
how, and how CJK, case and accents are handled), and each word's ids from the real WordPiece
model.

Two documented differences from ``BertWordPieceTokenizer``'s defaults:

- The literal strings ``[CLS]``, ``[SEP]``, ``[MASK]``, ``[PAD]``, ``[UNK]`` in text are plain
  text (``[``, ``mask``, ``]``), as in google-research/bert's ``tokenization.py``: by default
  HF turns them into the special ids, which would let a corpus inject separators and masks into
  pretraining instances. The reference with ``encode_special_tokens = True`` is identical.
- Lone surrogates (only possible in Python strings decoded with ``surrogateescape``) are
  removed (``stages/basic_tokenizer.py``), as ``clean_text`` removes every other
  ``Cs``/``Cc``/``Cf`` character; the reference raises on them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import WordPiece

from corpus_pipeline.errors import UserError
from corpus_pipeline.records import Document, EncodedDocument
from corpus_pipeline.stages.basic_tokenizer import SENTENCE_END, BasicTokenizer
from corpus_pipeline.stages.wordpiece_vocab import SPECIAL_TOKENS, load_vocab_with_sha256

MAX_INPUT_CHARS_PER_WORD = 100
"""Words longer than this (after normalization) encode to ``[UNK]`` (BERT and HF default)."""

DEFAULT_CACHE_SIZE = 500_000
"""Distinct words kept in the word -> ids cache (~130 bytes each, so ~65 MB at most)."""

_UNUSED_RE = re.compile(r"\[unused\d+\]")
_MARK = SENTENCE_END
_MARK_ID = -1
_ID_STRUCT = struct.Struct("=i")  # native int32, as np.frombuffer(..., np.int32) reads it
_MARK_BYTES = _ID_STRUCT.pack(_MARK_ID)


class WordPieceEncoder:
    """BERT WordPiece encoding of sentences to int32 id arrays, with a bounded word cache.

    Ids are identical to ``BertWordPieceTokenizer(vocab, lowercase=not cased,
    strip_accents=strip_accents, clean_text=True, handle_chinese_chars=True)``'s
    ``encode(s, add_special_tokens=False).ids`` with ``encode_special_tokens = True`` (see the
    module docstring for why literal ``[MASK]`` is text).

    Pickling keeps only ``(vocab_path, cased, cache_size)`` and the vocabulary's sha256; the
    unpickled encoder rebuilds itself from the file (a Beam worker needs the same file at the
    same path, e.g. the bundled vocabularies) and refuses a file whose content changed.

    Args:
        vocab_path: WordPiece vocabulary, one token per line.
        cased: Keep case (for cased vocabularies); else lower-case.
        strip_accents: Remove accents (NFD, drop non-spacing marks); None: strip when uncased
            (BERT's rule). A cased multilingual vocabulary wants ``cased=True`` and no strip
            (it keeps ``ガ`` and ``ά``).
        cache_size: Distinct words cached; the cache is emptied (keeping the current chunk's
            words) when a chunk would exceed it.

    Raises:
        UserError: The vocabulary is missing or invalid (see ``load_vocab_with_sha256``).
    """

    def __init__(
        self,
        vocab_path: str | Path,
        cased: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
        *,
        strip_accents: bool | None = None,
    ) -> None:
        strip = (not cased) if strip_accents is None else bool(strip_accents)
        self._setup(Path(vocab_path), bool(cased), int(cache_size), strip)

    def _setup(self, vocab_path: Path, cased: bool, cache_size: int, strip: bool) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1 (got {cache_size})")
        tokens, self._sha256 = load_vocab_with_sha256(vocab_path)
        self._vocab_path = vocab_path
        self._cased = cased
        self._cache_size = cache_size
        self._tokens = tokens
        self._token_to_id = {t: i for i, t in enumerate(tokens)}
        special = set(SPECIAL_TOKENS)
        self._ordinary_ids = np.array(
            [i for i, t in enumerate(tokens) if t not in special and not _UNUSED_RE.fullmatch(t)],
            dtype=np.int32,
        )
        self._is_subword = np.array([t.startswith("##") for t in tokens], dtype=bool)
        # Shared arrays: callers must not write into them.
        self._ordinary_ids.flags.writeable = False
        self._is_subword.flags.writeable = False
        self._basic = BasicTokenizer(cased, strip)
        # The WordPiece model alone: our words are already normalized and split, and
        # normalizing twice is not always idempotent (lower-casing can emit marks).
        model = WordPiece(
            self._token_to_id,
            unk_token="[UNK]",
            continuing_subword_prefix="##",
            max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD,
        )
        self._model = Tokenizer(model)
        self._cache: dict[str, bytes] = {}
        self._reset_cache()

    # -- pickling: rebuild from the file on the worker ---------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {
            "vocab_path": str(self._vocab_path),
            "cased": self._cased,
            "strip_accents": self._basic.strip_accents,
            "cache_size": self._cache_size,
            "vocab_sha256": self._sha256,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        strip = state.get("strip_accents", not state["cased"])
        self._setup(Path(state["vocab_path"]), state["cased"], state["cache_size"], strip)
        if self._sha256 != state["vocab_sha256"]:
            raise UserError(
                f"{self._vocab_path}: vocabulary changed since the pipeline started "
                f"(sha256 {self._sha256[:12]}, expected {state['vocab_sha256'][:12]})"
            )

    # -- vocabulary facts ---------------------------------------------------------------------

    @property
    def vocab_path(self) -> Path:
        """The vocabulary file."""
        return self._vocab_path

    @property
    def cased(self) -> bool:
        """True when case and accents are kept."""
        return self._cased

    @property
    def strip_accents(self) -> bool:
        """True when accents are removed (see ``BasicTokenizer``)."""
        return self._basic.strip_accents

    @property
    def basic_tokenizer(self) -> BasicTokenizer:
        """The normalization and word splitting in front of the WordPiece model."""
        return self._basic

    @property
    def vocab_size(self) -> int:
        """Number of tokens (ids are ``0..vocab_size-1``)."""
        return len(self._tokens)

    @property
    def vocab_sha256(self) -> str:
        """Hex sha256 of the vocabulary file's bytes (recorded in manifests)."""
        return self._sha256

    @property
    def pad_id(self) -> int:
        """Id of ``[PAD]``."""
        return self._token_to_id["[PAD]"]

    @property
    def unk_id(self) -> int:
        """Id of ``[UNK]``."""
        return self._token_to_id["[UNK]"]

    @property
    def cls_id(self) -> int:
        """Id of ``[CLS]``."""
        return self._token_to_id["[CLS]"]

    @property
    def sep_id(self) -> int:
        """Id of ``[SEP]``."""
        return self._token_to_id["[SEP]"]

    @property
    def mask_id(self) -> int:
        """Id of ``[MASK]``."""
        return self._token_to_id["[MASK]"]

    @property
    def ordinary_ids(self) -> np.ndarray:
        """Sorted int32 ids of ordinary tokens: all but the special and ``[unused*]`` tokens.

        Masking draws its random replacements from these (``stages/masking.py``, difference 3).
        """
        return self._ordinary_ids

    @property
    def is_subword(self) -> np.ndarray:
        """Bool array over ids: the token continues a word (starts with ``##``)."""
        return self._is_subword

    @property
    def tokens(self) -> list[str]:
        """The vocabulary, indexed by id (a copy)."""
        return list(self._tokens)

    def id_to_token(self, token_id: int) -> str:
        """The token string of ``token_id``."""
        return self._tokens[token_id]

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or None if it is not in the vocabulary."""
        return self._token_to_id.get(token)

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, sentence: str) -> np.ndarray:
        """Encode one sentence (no special tokens added) to an int32 array."""
        return self.encode_batch([sentence])[0]

    def encode_batch(self, sentences: Sequence[str]) -> list[np.ndarray]:
        """Encode sentences (no special tokens added), one int32 array each, in order.

        A chunk of a few hundred to a few thousand sentences amortizes the per-call work.
        The arrays are writable views into one buffer per call.
        """
        if not sentences:
            return []
        words, order = self._basic.split_grouped(sentences)
        # itemgetter looks all words up in one C call (a fifth faster than map); with one
        # argument it returns the value itself, not a tuple.
        lookup = itemgetter(*words) if len(words) > 1 else lambda d: (d[words[0]],)
        try:
            buf = b"".join(lookup(self._cache))
        except KeyError:
            self._add_missing(words)
            buf = b"".join(lookup(self._cache))
        ids = np.frombuffer(buf, dtype=np.int32).copy()
        ends = np.flatnonzero(ids == _MARK_ID).tolist()
        starts = [0, *(e + 1 for e in ends[:-1])]
        arrays = [ids[a:b] for a, b in zip(starts, ends, strict=True)]
        if order is None:
            return arrays
        out: list[np.ndarray] = arrays[:]
        for k, i in enumerate(order):
            out[i] = arrays[k]
        return out

    def _add_missing(self, words: list[str]) -> None:
        """Cache the ids of a chunk's new words; keep the cache bounded.

        (Caching whole whitespace-separated pieces such as ``"end."`` instead of words was
        measured: it wins only when the very same text is replayed, and loses on unseen text.)
        """
        cache = self._cache
        missing = set(words).difference(cache)  # a C loop; the strings' hashes are cached
        if len(cache) + len(missing) > self._cache_size:
            kept = {w: cache[w] for w in set(words) if w in cache}
            self._reset_cache()
            self._cache.update(kept)
        self._encode_words(list(missing))

    def _encode_words(self, missing: list[str]) -> None:
        """Put the ids of words into the cache."""
        cache = self._cache
        # A word that is itself a vocabulary token is that one token (WordPiece tries the
        # whole word first); the others go to the Rust model in one call.
        vocab = self._token_to_id
        pack = _ID_STRUCT.pack
        rest = []
        for w in missing:
            i = vocab.get(w)
            if i is not None and len(w) <= MAX_INPUT_CHARS_PER_WORD:
                cache[w] = pack(i)
            else:
                rest.append(w)
        if not rest:
            return
        enc = self._model.encode(rest, is_pretokenized=True, add_special_tokens=False)
        raw = np.array(enc.ids, dtype=np.int32).tobytes()
        # Every word yields at least one id ([UNK] at worst), so word i's ids are the run
        # from the first position whose word id is i to the first whose word id is i + 1.
        word_ids = np.array(enc.word_ids, dtype=np.int64)
        bounds = (np.searchsorted(word_ids, np.arange(len(rest) + 1)) * 4).tolist()
        for i, w in enumerate(rest):
            cache[w] = raw[bounds[i] : bounds[i + 1]]

    def _reset_cache(self) -> None:
        self._cache = {_MARK: _MARK_BYTES}


def encode_document(
    doc: Document, encoder: WordPieceEncoder, *, count: Callable[..., None]
) -> EncodedDocument | None:
    """Encode a document's sentences; sentences with no tokens are dropped.

    Counters: ``encode/sentences`` and ``encode/tokens`` (kept), ``encode/unk`` (``[UNK]``
    ids), ``encode/dropped:empty`` (sentences with no tokens), ``encode/passed`` and
    ``encode/dropped:empty_document`` (documents).

    Returns:
        The encoded document, or None when no sentence has a token.
    """
    return _wrap(doc, encoder.encode_batch(doc.sentences), encoder.unk_id, count)


#: Characters of English text per WordPiece token with the BERT vocabularies (bundled enwiki
#: excerpt: 2.58M characters, 539k tokens): for sizing from text before it is encoded.
CHARS_PER_TOKEN = 4.8

# Sentences per encoder call in encode_documents (~1 MB of text).
ENCODE_BATCH = 8192


def encode_documents(
    docs: Sequence[Document], encoder: WordPieceEncoder, *, count: Callable[..., None]
) -> list[EncodedDocument]:
    """Batch version of ``encode_document`` over a chunk (one encoder call per
    :data:`ENCODE_BATCH` sentences: a whole bucket at once holds every word of it as a string,
    several times the text's size).

    Returns:
        The non-empty encoded documents, in input order.
    """
    flat = [s for d in docs for s in d.sentences]
    arrays: list[np.ndarray] = []
    for start in range(0, len(flat), ENCODE_BATCH):
        arrays += encoder.encode_batch(flat[start : start + ENCODE_BATCH])
    out: list[EncodedDocument] = []
    pos = 0
    for d in docs:
        n = len(d.sentences)
        enc = _wrap(d, arrays[pos : pos + n], encoder.unk_id, count)
        pos += n
        if enc is not None:
            out.append(enc)
    return out


def _wrap(
    doc: Document, arrays: list[np.ndarray], unk_id: int, count: Callable[..., None]
) -> EncodedDocument | None:
    kept = [a for a in arrays if a.size]
    if len(kept) != len(arrays):
        count("encode/dropped:empty", len(arrays) - len(kept))
    if not kept:
        count("encode/dropped:empty_document")
        return None
    count("encode/passed")
    count("encode/sentences", len(kept))
    count("encode/tokens", sum(a.size for a in kept))
    unk = sum(int(np.count_nonzero(a == unk_id)) for a in kept)
    if unk:
        count("encode/unk", unk)
    return EncodedDocument(id=doc.id, sentences=kept)


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_CACHE_SIZE",
    "MAX_INPUT_CHARS_PER_WORD",
    "WordPieceEncoder",
    "encode_document",
    "encode_documents",
]
