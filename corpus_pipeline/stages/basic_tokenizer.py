"""BERT's normalization and word splitting, exact and fast: the front of WordPiece encoding.

Equivalent to HF ``tokenizers``' ``BertNormalizer(clean_text=True, handle_chinese_chars=True,
strip_accents=..., lowercase=...)`` followed by ``BertPreTokenizer``: the BERT basic tokenizer
(remove control characters, whitespace to space, spaces around CJK ideographs, uncased: NFD +
drop non-spacing marks + lower-case; split on whitespace, isolate punctuation). A whole chunk of
sentences is split with one regex over the sentences joined by ``SENTENCE_END``; the encoder
(``stages/wordpiece.py``) maps the resulting words to ids.

Why it is exact: every rule is taken from the real normalizer and pre-tokenizer, never from
Python's own Unicode tables. All BERT normalization and splitting steps act on one character
at a time, except the canonical reordering of NFD (uncased only). So:

- ASCII text follows rules that are short and checked exhaustively by the tests: C0 controls
  and DEL removed, ``\\t \\n \\r`` and space are whitespace, the 32 ASCII punctuation
  characters are isolated, letters and digits form words, ``A-Z`` lower-cased when uncased.
- Each non-ASCII character, on first sight, is normalized by the real ``BertNormalizer`` and
  classified by the real ``BertPreTokenizer`` in context; the result is stored as a
  replacement string (``"é" -> "e"``, ``"–" -> " – "``, ``"中" -> " 中 "``, a removed control
  -> ``""``), checked to split the same way under our regex, and substituted before the regex.
- A character whose result could depend on its neighbours (a spacing mark with a non-zero
  combining class, which NFD may reorder; a character Python's ``unicodedata`` does not know)
  or whose replacement our regex would split differently marks its sentence "unsafe": such a
  sentence goes through the real normalizer and pre-tokenizer (exact, slower, rare).

Case and accents are separate choices (``cased``, ``strip_accents``; BERT's rule, the default,
strips exactly when uncased), so a cased multilingual vocabulary keeps ``ガ`` and ``ά``.

CJK: like BERT (``handle_chinese_chars``), every CJK ideograph (the CJK Unified Ideographs
blocks and their extensions, compatibility ideographs) is a word of its own; kana and Hangul
are not split. Decision measured on real text (``tests/unit/test_languages.py``): with the
bundled vocabularies, putting each kana/Hangul syllable on its own never lowers the
``[UNK]`` count (uncased: 7 of 62 tokens either way for a Japanese sentence, since
stripping accents decomposes ガ -> カ and Hangul syllables into jamo that the vocabulary
has; cased: 16 of 38 -> 19 of 62 for Japanese, 7 of 8 -> 20 of 25 for Korean) and only
adds tokens, and a vocabulary trained on the language (``corpus-pipeline vocab``) learns
multi-character kana and Hangul pieces, which splitting would forbid. It also keeps the ids
identical to HF's ``BertWordPieceTokenizer``, which downstream models expect.

Lone surrogates (only possible in Python strings decoded with ``surrogateescape``) are removed,
as ``clean_text`` removes every other ``Cs``/``Cc``/``Cf`` character; the real normalizer raises
on them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

_ASCII_PUNCT = r"!-/:-@\[-`{-~"
# A word is a run of characters that are not whitespace, ASCII punctuation or the sentence
# marker; ASCII punctuation and the marker are tokens of their own. Non-ASCII punctuation
# never needs a rule: its replacement string puts spaces around it.
_WORD_RE = re.compile(rf"[^\s{_ASCII_PUNCT}\x00]+|[{_ASCII_PUNCT}\x00]")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")
# ASCII control characters (Cc) that clean_text removes; \t \n \r are whitespace instead.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_NO_NUL_RE = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Separates sentences inside a chunk; clean_text removes NUL, so no word can contain it.
SENTENCE_END = "\x00"
_MARK = SENTENCE_END
# Replacement of a non-ASCII character that cannot be handled per character: the whole
# sentence takes the exact slow path. \x01 is a control character, so no replacement or
# normalized text contains it; a raw \x01 in the input merely takes the slow path too.
_UNSAFE = "\x01"


class _CharTable(dict):  # type: ignore[type-arg]
    """``ord(c) -> replacement`` for non-ASCII characters, filled on first sight.

    A ``str.translate`` table: the first lookup of a character calls ``compute``. It holds at
    most one entry per code point seen, a few thousand in practice.
    """

    def __init__(self, compute: Callable[[str], str]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: int) -> str:
        value = self._compute(chr(key))
        self[key] = value
        return value


class BasicTokenizer:
    """BERT's normalization and word splitting, exact and fast (see the module docstring).

    Equivalent to ``BertNormalizer(clean_text=True, handle_chinese_chars=True,
    strip_accents=strip_accents, lowercase=not cased)`` followed by ``BertPreTokenizer``.

    Args:
        cased: Keep case; else lower-case.
        strip_accents: NFD and drop non-spacing marks (``ά`` -> ``α``, ``ガ`` -> ``カ``);
            None (default): strip when uncased, as BERT.
    """

    def __init__(self, cased: bool = False, strip_accents: bool | None = None) -> None:
        self._setup(bool(cased), (not cased) if strip_accents is None else bool(strip_accents))

    def _setup(self, cased: bool, strip_accents: bool) -> None:
        self._cased = cased
        self._strip = strip_accents
        self._normalizer = BertNormalizer(
            clean_text=True,
            handle_chinese_chars=True,
            strip_accents=strip_accents,
            lowercase=not cased,
        )
        self._pre_tokenizer = BertPreTokenizer()
        self._chars = _CharTable(self._char_replacement)

    def __getstate__(self) -> dict[str, Any]:
        return {"cased": self._cased, "strip_accents": self._strip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["cased"], state.get("strip_accents", not state["cased"]))

    @property
    def cased(self) -> bool:
        """True when case is kept."""
        return self._cased

    @property
    def strip_accents(self) -> bool:
        """True when accents (non-spacing marks after NFD) are removed."""
        return self._strip

    def split(self, sentence: str) -> list[str]:
        """The normalized words of one sentence."""
        return self.split_flat([sentence])[:-1]

    def split_flat(self, sentences: Sequence[str]) -> list[str]:
        """Words of all sentences, each sentence followed by ``SENTENCE_END``, in order."""
        words, order = self.split_grouped(sentences)
        if order is None:
            return words
        per_sentence: list[list[str]] = [[] for _ in order]
        k = 0
        for w in words:
            per_sentence[order[k]].append(w)
            if w == _MARK:
                k += 1
        return [w for ws in per_sentence for w in ws]

    def split_grouped(self, sentences: Sequence[str]) -> tuple[list[str], list[int] | None]:
        """Words of all sentences, each sentence followed by ``SENTENCE_END``, grouped.

        One flat list is what a chunk encoder wants: one lookup pass over it, and the markers
        give the sentence boundaries back. Sentences that are ASCII after replacement come
        first: joined, they form a 1-byte-per-character string, on which the regex and
        ``lower`` run about a quarter faster than on the 2- or 4-byte string a single other
        character would turn the whole chunk into.

        Returns:
            (words, order): ``order[k]`` is the input index of the k-th sentence in
            ``words``, or ``order`` is None when that is the input order.
        """
        narrow: list[str] = []
        narrow_idx: list[int] = []
        wide: list[str] = []
        wide_idx: list[int] = []
        exact: list[str] = []
        exact_idx: list[int] = []
        sub_non_ascii = _NON_ASCII_RE.sub
        replace = self._replace_run
        for i, s in enumerate(sentences):
            if not s.isascii():
                s = sub_non_ascii(replace, s)
                if _UNSAFE in s:
                    exact += self._exact_words(sentences[i])
                    exact.append(_MARK)
                    exact_idx.append(i)
                    continue
                if not s.isascii():
                    wide.append(s)
                    wide_idx.append(i)
                    continue
            narrow.append(s)
            narrow_idx.append(i)
        split = _WORD_RE.findall
        words = split(self._normalize_run(narrow)) if narrow else []
        if not wide and not exact:
            return words, None
        if wide:
            words += split(self._normalize_run(wide))
        words += exact
        return words, narrow_idx + wide_idx + exact_idx

    def _replace_run(self, m: re.Match[str]) -> str:
        return m.group().translate(self._chars)

    def _normalize_run(self, run: list[str]) -> str:
        """Sentences that need only ASCII rules (after replacement), joined by the marker."""
        text = _MARK.join(run) + _MARK
        if text.count(_MARK) != len(run) or _CONTROL_NO_NUL_RE.search(text):
            text = _MARK.join(_CONTROL_RE.sub("", s) for s in run) + _MARK
        if not self._cased:
            # Replacements are fixed points of str.lower (checked), so this only lowers ASCII.
            text = text.lower()
        return text

    def _exact_words(self, sentence: str) -> list[str]:
        """Words of an unsafe sentence by the real normalizer and pre-tokenizer."""
        normalized = self._normalizer.normalize_str(_SURROGATE_RE.sub("", sentence))
        return [w for w, _ in self._pre_tokenizer.pre_tokenize_str(normalized)]

    def _char_replacement(self, c: str) -> str:
        """What one non-ASCII character becomes before the regex, or ``_UNSAFE``."""
        if "\ud800" <= c <= "\udfff":
            return ""  # a lone surrogate: removed, like every other Cs character
        n = self._normalizer.normalize_str(c)
        if not n:
            return ""
        if self._strip and any(
            unicodedata.combining(ch) or unicodedata.category(ch) == "Cn" for ch in n
        ):
            return _UNSAFE  # NFD could reorder it with its neighbours
        pieces = [w for w, _ in self._pre_tokenizer.pre_tokenize_str("a" + n + "a")]
        if len(pieces) == 1:
            rep = n
        else:
            if not (pieces[0].startswith("a") and pieces[-1].endswith("a")):
                return _UNSAFE
            # The first piece joins the word on the left, the last the word on the right.
            rep = " ".join([pieces[0][1:], *pieces[1:-1], pieces[-1][:-1]])
        # Our regex must split the replacement in context exactly as BertPreTokenizer does.
        for left, right in (("a", "a"), ("!", "!"), ("a", "!"), ("!", "a")):
            want = [w for w, _ in self._pre_tokenizer.pre_tokenize_str(left + n + right)]
            if _WORD_RE.findall(left + rep + right) != want:
                return _UNSAFE
        if not self._cased and rep.lower() != rep:
            return _UNSAFE
        return rep


__all__ = ["SENTENCE_END", "BasicTokenizer"]
