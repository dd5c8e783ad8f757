"""Punkt sentence boundaries from trained parameters, fast and identical to nltk's.

Kiss & Strunk (2006), "Unsupervised Multilingual Sentence Boundary Detection", decide whether a
``.``, ``?`` or ``!`` ends a sentence from four trained tables: abbreviation types, collocations
(word pairs around a period that is not a boundary), frequent sentence starters and each word
type's orthographic context (the cases it was seen in at the start, middle or an unknown
position of a sentence). This module applies those tables exactly as nltk's
``PunktSentenceTokenizer.span_tokenize`` does (nltk 3.9+: candidates from a period-context
regex, one decision per candidate over the tokens of the candidate's context, then the
realignment of closing quotes and brackets), so the spans are the same, character for
character. Only the decision procedure is here: training stays in nltk.

Why it is faster (measured by ``bench/sentences.py``): nltk builds a ``PunktToken`` object per
token of every candidate's context and runs its regexes per token, under a wall-clock timeout
wrapper. Here the whole paragraph goes through one compiled regex, the decision is a pure
function of the candidate's context string (the word before the mark, the mark, and the
punctuation or next token after it), so it is cached per context, and the per-token facts
(type, first-pass annotation, orthographic heuristic) are cached per token string. No object is
built per token.

The regexes are nltk's own. nltk compiles them with the ``regex`` package (its dependency),
whose Unicode classes differ from ``re``'s: the three that run per paragraph or per context use
``re`` with ``\\s`` spelled out as ``regex``'s whitespace; the per-token ones, which need its
``\\w`` and ``\\d``, use ``regex`` and run once per distinct token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple

import regex

# Orthographic context flags of the punkt_tab ``ortho_context.tab`` values (nltk's _ORTHO_*).
ORTHO_BEG_UC = 1 << 1
ORTHO_MID_UC = 1 << 2
ORTHO_UNK_UC = 1 << 3
ORTHO_BEG_LC = 1 << 4
ORTHO_MID_LC = 1 << 5
ORTHO_UNK_LC = 1 << 6
ORTHO_UC = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC
ORTHO_LC = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC

# nltk's PunktLanguageVars for English-like languages, written out. nltk compiles them with the
# ``regex`` engine; the hot ones here use the standard ``re``, which scans about twice as fast,
# with ``\s`` and ``\S`` spelled out as the ``regex`` engine's whitespace (Unicode White_Space:
# ``re``'s own ``\s`` also matches U+001C..U+001F). tests/unit/test_punkt_fast.py pins that set.
_WS = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_S = f"[{_WS}]"
_NOT_S = f"[^{_WS}]"
# Characters that cannot appear within words: a period right before one is a candidate.
_NON_WORD = "(?:[)\\\";}\\]\\*:@\\'\\({\\[\u2018\u2019\u201c\u201d\xab\xbb!\\?])"
# Hyphen runs and ellipses are one token.
_MULTI_CHAR = f"(?:\\-{{2,}}|\\.{{2,}}|(?:\\.{_S}){{2,}}\\.)"
# Characters that cannot start a word token.
_WORD_START = r"[^\(\"\`{\[:;&\#\*@\)}\]\-,]"
_WORD_TOKEN_RE = re.compile(
    f"{_MULTI_CHAR}"
    f"|(?={_WORD_START}){_NOT_S}+?(?={_S}|$|{_NON_WORD}|{_MULTI_CHAR}"
    f"|,(?=$|{_S}|{_NON_WORD}|{_MULTI_CHAR}))"
    f"|{_NOT_S}"
)
# A candidate: a sentence-end mark followed by other punctuation or by whitespace and a token.
# Group 1 (after_tok) is what the decision sees after the mark; group 2 (next_tok) starts the
# next sentence when there is one.
_PERIOD_CONTEXT_RE = re.compile(f"[\\.\\?!](?=({_NON_WORD}|{_S}+({_NOT_S}+)))")
# Closing punctuation after a boundary that belongs to the sentence before it.
_REALIGN_RE = re.compile(
    f"[\"')\\]}}\u2018\u2019\u201c\u201d\xab\xbb]+?(?:{_S}+|(?=--)|$)", re.MULTILINE
)
_REALIGN_FIRST = frozenset("\"')]}\u2018\u2019\u201c\u201d\xab\xbb")
# Token facts, computed once per token string: with nltk's engine (``\d`` and ``\w`` follow
# the ``regex`` engine's Unicode tables, which can be newer than Python's).
_NUMERIC_RE = regex.compile(r"^-?[\.,]?\d[\d,\.-]*\.?$")
_ELLIPSIS_RE = regex.compile(r"\.\.+$")
_INITIAL_RE = regex.compile(r"[^\W\d]\.$", regex.UNICODE)
# nltk finds "the word before" a candidate with str's notion of ASCII whitespace
# (string.whitespace), not the regex's \s.
_ASCII_WS = " \t\n\r\x0b\x0c"

_SENT_END = frozenset(".?!")
# A token that is one of these never starts a sentence (PunktSentenceTokenizer.PUNCTUATION).
_PUNCTUATION = frozenset(";:,.!?")
_NUMBER = "##number##"
# Cache bounds: a worker that splits all of Wikipedia sees millions of distinct contexts.
_MAX_CACHED = 200_000


@dataclass(frozen=True)
class PunktParams:
    """Trained Punkt parameters (the four tables of an nltk ``punkt_tab`` model).

    Attributes:
        abbrev_types: Lower-case abbreviation types without their final period (``dr``, ``p.m``).
        collocations: ``(type, next type)`` pairs around a period that is not a boundary.
        sent_starters: Lower-case types that frequently start a sentence.
        ortho_context: Type -> orthographic context flags (``ORTHO_*``); absent means 0.
    """

    abbrev_types: frozenset[str] = frozenset()
    collocations: frozenset[tuple[str, str]] = frozenset()
    sent_starters: frozenset[str] = frozenset()
    ortho_context: Mapping[str, int] = field(default_factory=dict)


class _Tok(NamedTuple):
    """What a decision needs to know about one token, computed once per token string."""

    period_final: bool
    first_break: bool  # first-pass annotation: sentence break
    abbr_or_ellipsis: bool  # first-pass annotation: abbreviation or ellipsis
    initial: bool  # one letter and a period
    type_no_period: str
    type_no_sentperiod: str  # as the next token: the type without a first-pass break period
    first_upper: bool
    starts: bool | None  # orthographic heuristic as the next token (None: unknown)
    seen_lower: bool  # the next-token type was seen in lower case


class PunktSplitter:
    """Sentence spans of a text with trained Punkt parameters, identical to nltk's.

    Thread-safe: the caches are plain dicts whose entries are pure functions of their keys.

    Args:
        params: The trained tables.
    """

    def __init__(self, params: PunktParams) -> None:
        self.params = params
        self._abbrevs = params.abbrev_types
        self._collocations = params.collocations
        self._starters = params.sent_starters
        self._ortho = params.ortho_context
        self._decisions: dict[str, bool] = {}
        self._tokens: dict[str, _Tok] = {}

    # ------------------------------------------------------------------ public API

    def span_tokenize(self, text: str, realign_boundaries: bool = True) -> list[tuple[int, int]]:
        """The ``(start, end)`` spans of the sentences of ``text``.

        Equal to ``list(nltk.tokenize.punkt.PunktSentenceTokenizer(params).span_tokenize(text,
        realign_boundaries))`` for every text.
        """
        slices = self._slices(text)
        if not realign_boundaries:
            return slices
        return self._realign(text, slices)

    def tokenize(self, text: str, realign_boundaries: bool = True) -> list[str]:
        """The sentences of ``text`` (slices of it), as nltk's ``tokenize``."""
        return [text[a:b] for a, b in self.span_tokenize(text, realign_boundaries)]

    # ------------------------------------------------------------------ candidates

    def _slices(self, text: str) -> list[tuple[int, int]]:
        """Sentence slices before realignment (nltk's ``_slices_from_text``)."""
        decisions = self._decisions
        slices: list[tuple[int, int]] = []
        last_break = 0
        other_ws = "\t" in text or "\n" in text or "\r" in text or "\x0b" in text or "\x0c" in text
        rfind = text.rfind
        # The previous candidate and the slice of the word before it: a candidate whose word
        # reaches back over the previous candidate replaces it (``acting!!! I`` is decided once,
        # on its last ``!``), as in nltk's _match_potential_end_contexts.
        prev = None
        prev_start = prev_stop = 0
        # The end of the text (None) is a last pseudo-candidate that nothing reaches back
        # over, so the last real candidate is decided by the same check as the others.
        for m in chain(_PERIOD_CONTEXT_RE.finditer(text), (None,)):
            if m is None:
                s = start = len(text)
            else:
                s = m.start()
                if other_ws:
                    k = max(rfind(c, prev_stop, s) for c in _ASCII_WS)
                else:
                    k = rfind(" ", prev_stop, s)
                start = k + 1 if k > prev_stop else prev_start
            if prev is not None and prev_stop <= start:
                context = text[prev_start : prev.end(1)]
                decision = decisions.get(context)
                if decision is None:
                    decision = self._decide(context)
                if decision:
                    end = prev_stop + 1
                    slices.append((last_break, end))
                    nxt = prev.start(2)
                    last_break = nxt if nxt >= 0 else end
            prev = m
            prev_start = start
            prev_stop = s
        slices.append((last_break, len(text.rstrip())))
        return slices

    @staticmethod
    def _realign(text: str, slices: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Closing quotes and brackets after a boundary join the sentence before it."""
        spans: list[tuple[int, int]] = []
        realign = 0
        last = len(slices) - 1
        for i, (a, b) in enumerate(slices):
            a += realign
            if i == last:
                if a < b:
                    spans.append((a, b))
                break
            a2, b2 = slices[i + 1]
            m = None
            if a2 < b2 and text[a2] in _REALIGN_FIRST:
                m = _REALIGN_RE.match(text, a2, b2)
            if m is not None:
                spans.append((a, a2 + len(m.group().rstrip())))
                realign = m.end() - a2
            else:
                realign = 0
                if a < b:
                    spans.append((a, b))
        return spans

    # ------------------------------------------------------------------ decisions

    def _decide(self, context: str) -> bool:
        """nltk's ``text_contains_sentbreak(context)``; the result is cached."""
        if "\n" in context:  # nltk tokenizes line by line
            words = [
                w
                for line in context.split("\n")
                if line.strip()  # str's whitespace, as nltk's line loop
                for w in _WORD_TOKEN_RE.findall(line)
            ]
        else:
            words = _WORD_TOKEN_RE.findall(context)
        decision = False
        if len(words) > 1:
            toks = self._tokens
            info = [toks.get(w) or self._token(w) for w in words]
            for i in range(len(info) - 1):
                if self._breaks(info[i], info[i + 1]):
                    decision = True
                    break
        if len(self._decisions) >= _MAX_CACHED:
            self._decisions.clear()
        self._decisions[context] = decision
        return decision

    def _breaks(self, tok: _Tok, nxt: _Tok) -> bool:
        """Whether ``tok`` ends a sentence when ``nxt`` follows it (first and second pass)."""
        if not tok.period_final:
            return tok.first_break
        typ = tok.type_no_period
        next_typ = nxt.type_no_sentperiod
        # Collocation heuristic: a known pair around the period is no boundary.
        if (typ, next_typ) in self._collocations:
            return False
        # An abbreviation or ellipsis also ends a sentence when the next word starts one:
        # orthographic evidence, or a capitalised frequent sentence starter.
        if tok.abbr_or_ellipsis and not tok.initial:
            if nxt.starts is True:
                return True
            if nxt.first_upper and next_typ in self._starters:
                return True
        # Initials and ordinals are abbreviations when the next word does not start a sentence,
        # and initials also when it is unknown but always capitalised (``J. Bach``).
        if tok.initial or typ == _NUMBER:
            if nxt.starts is False:
                return False
            if nxt.starts is None and tok.initial and nxt.first_upper and not nxt.seen_lower:
                return False
        return tok.first_break

    def _token(self, word: str) -> _Tok:
        """The per-type facts of one token (nltk's PunktToken and first-pass annotation)."""
        lower = word.lower()
        c0 = lower[0]
        numeric = (c0 in "-.,0123456789" or not c0.isascii()) and _NUMERIC_RE.match(lower)
        typ = _NUMBER if numeric else lower
        type_no_period = typ[:-1] if len(typ) > 1 and typ[-1] == "." else typ
        period_final = word.endswith(".")
        first_break = abbr_or_ellipsis = False
        if word in _SENT_END:
            first_break = True
        elif word.startswith("..") and _ELLIPSIS_RE.match(word):
            abbr_or_ellipsis = True
        elif period_final and not word.endswith(".."):
            stem = word[:-1].lower()
            if stem in self._abbrevs or stem.split("-")[-1] in self._abbrevs:
                abbr_or_ellipsis = True
            else:
                first_break = True
        type_no_sentperiod = type_no_period if first_break else typ
        ortho = self._ortho.get(type_no_sentperiod, 0)
        first_upper = word[0].isupper()
        # Orthographic heuristic: does this token start a sentence?
        starts: bool | None
        if word in _PUNCTUATION:
            starts = False
        elif first_upper and ortho & ORTHO_LC and not ortho & ORTHO_MID_UC:
            starts = True
        elif word[0].islower() and (ortho & ORTHO_UC or not ortho & ORTHO_BEG_LC):
            starts = False
        else:
            starts = None
        tok = _Tok(
            period_final=period_final,
            first_break=first_break,
            abbr_or_ellipsis=abbr_or_ellipsis,
            initial=len(word) == 2 and word[1] == "." and _INITIAL_RE.match(word) is not None,
            type_no_period=type_no_period,
            type_no_sentperiod=type_no_sentperiod,
            first_upper=first_upper,
            starts=starts,
            seen_lower=bool(ortho & ORTHO_LC),
        )
        if len(self._tokens) >= _MAX_CACHED:
            self._tokens.clear()
        self._tokens[word] = tok
        return tok


def read_punkt_tab(lines: Mapping[str, Iterable[str]]) -> PunktParams:
    """Parameters from the lines of the four ``punkt_tab`` files.

    Args:
        lines: ``abbrev_types.txt``, ``collocations.tab``, ``ortho_context.tab`` and
            ``sent_starters.txt`` -> their non-empty lines (tab-separated fields).

    Raises:
        KeyError: A file is missing. ValueError: A line is malformed.
    """
    collocations: set[tuple[str, str]] = set()
    for line in lines["collocations.tab"]:
        first, second = line.split("\t")
        collocations.add((first, second))
    ortho: dict[str, int] = {}
    for line in lines["ortho_context.tab"]:
        word, flags = line.split("\t")
        ortho[word] = int(flags)
    return PunktParams(
        abbrev_types=frozenset(lines["abbrev_types.txt"]),
        collocations=frozenset(collocations),
        sent_starters=frozenset(lines["sent_starters.txt"]),
        ortho_context=ortho,
    )
