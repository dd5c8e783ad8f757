"""Sentence splitting: an article's paragraphs to one clean sentence per line.

Punkt (Kiss & Strunk 2006, "Unsupervised Multilingual Sentence Boundary Detection") with the
parameters bundled in ``corpus_pipeline/data/punkt_tab/<language>/`` (nltk's ``punkt_tab``
format: ``abbrev_types.txt``, ``collocations.tab``, ``ortho_context.tab``, ``sent_starters.txt``).
The parameters are read from those four files directly, and the boundary decisions are made by
:mod:`corpus_pipeline.stages.punkt`, which gives exactly nltk's ``PunktSentenceTokenizer``
spans several times faster (``tests/unit/test_punkt_fast.py`` holds it to nltk's output,
``bench/sentences.py`` measures it); nltk itself is not imported here. The splitter is built
once per process (on a Beam worker, at first use).

The cleanup around Punkt fixes what breaks pretraining-data tools downstream: whitespace inside a
sentence becomes single spaces (one sentence per line, always), a punctuation-only piece is
attached to its neighbour instead of becoming a sentence of its own, a personal title
(``Mr.``) never ends a sentence, and runaway "sentences" (lists, tables) are cut below
``max_sentence_chars``.

Languages (``SentenceConfig.language``, a Wikipedia language code; ``--lang`` on the CLI):

- ``en`` (and ``simple``, and the legacy name ``english``): Punkt with the bundled English
  parameters, as above. Its output is what the English tests hold.
- ``ja``, ``zh`` and the other Chinese-script wikis (:data:`CJK_LANGUAGES`): a sentence ends at
  ``。！？`` or their variants (full-width ``．``, half-width ``｡``), taking the closing quotes
  and brackets after it (``」』）】``); an ender inside an open ``「…」``-style bracket does not
  end the sentence (``「はい。」と彼は言った。`` is one), unless the brackets of the paragraph
  do not balance (then every ender splits).
- Every other language: Wikimedia's ``sentencex`` (MIT; rules and abbreviation lists for the
  Wikipedia languages, falling back along its language chain), then two fixes: a piece that
  starts with a lower-case letter continues the previous one (``αι. και``, ``т.е. пример``,
  abbreviations sentencex does not know), and the CJK enders above also split (Korean text
  uses both ``.`` and ``。``). sentencex is imported at first use, so English never needs it.

A Punkt parameter set name other than ``english`` is not accepted: nltk's other ``punkt_tab``
sets are downloaded data, not a package, and we bundle only English.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

from corpus_pipeline.config import SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.records import Article, Document
from corpus_pipeline.resources import PUNKT_DIR
from corpus_pipeline.stages.punkt import PunktParams, PunktSplitter, read_punkt_tab

Count = Callable[..., None]

# A sentence needs a letter or digit; anything else is punctuation or symbols only.
_WORDLIKE_RE = re.compile(r"[^\W_]")
# Control characters that are not whitespace (whitespace is normalised by str.split).
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u200b\ufeff]")

# Personal titles never end a sentence (unlike "St.", "U.S." or "Inc.", which can).
_TITLE_END_RE = re.compile(r"(?<![^\W_])(?:Mr|Mrs|Ms|Messrs|Dr|Prof|Rev|Mme|Mlle)\.$")

# "?" or "!" and closing quotes/brackets at the end of a piece.
_OPEN_END_RE = re.compile(r"[?!][\"'\u201d\u2019)\]]*$")

# Wikipedia language codes whose text is written without spaces between sentences and ends
# them with ideographic punctuation (Chinese script wikis and Japanese).
CJK_LANGUAGES = frozenset(
    {"ja", "zh", "zh-yue", "zh-classical", "zh-min-nan", "yue", "wuu", "gan", "lzh", "cdo", "hak"}
)
# Codes that mean English punkt ("english" is the punkt set name older configs hold).
_ENGLISH = frozenset({"en", "simple", "english"})
_LANG_CODE_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")

_CJK_ENDERS = "。！？．｡"
_CJK_OPEN = "「『（【〔〈《〘〖｛［\u201c"
_CJK_CLOSE = "」』）】〕〉》〙〗｝］\u201d"
# An ender run, then closing quotes/brackets (CJK or Western) and spaces.
_CJK_END_RE = re.compile(rf"[{_CJK_ENDERS}]+[{_CJK_CLOSE}\"'”’)\]]*[ ]*")

_tokenizers: dict[str, PunktSplitter] = {}
_lock = threading.Lock()


def _read_lines(path: Path) -> list[str]:
    # punkt_tab files are UTF-8, one entry per line; blank lines are not entries.
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def load_punkt_parameters(directory: str | Path) -> PunktParams:
    """Build Punkt parameters from a ``punkt_tab`` model directory.

    Args:
        directory: A folder with ``abbrev_types.txt``, ``collocations.tab``,
            ``ortho_context.tab`` and ``sent_starters.txt`` (nltk's ``punkt_tab`` layout).

    Returns:
        The parameters, equal to what nltk's ``load_punkt_params`` reads.

    Raises:
        UserError: A file is missing or malformed.
    """
    directory = Path(directory)
    names = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")
    try:
        return read_punkt_tab({name: _read_lines(directory / name) for name in names})
    except (OSError, ValueError) as e:
        raise UserError(
            f"{directory}: unreadable punkt_tab parameters ({e}); reinstall corpus-pipeline"
        ) from e


def available_languages() -> list[str]:
    """The bundled punkt parameter sets (sub-folders of ``data/punkt_tab``)."""
    return sorted(p.name for p in PUNKT_DIR.iterdir() if p.is_dir())


def get_tokenizer(language: str = "english") -> PunktSplitter:
    """The per-process Punkt splitter for ``language``, built on first use.

    It has nltk's ``PunktSentenceTokenizer`` interface for splitting (``span_tokenize``,
    ``tokenize``) and gives the same output.

    Raises:
        UserError: No parameters are bundled for ``language``.
    """
    tokenizer = _tokenizers.get(language)
    if tokenizer is not None:
        return tokenizer
    with _lock:
        if language not in _tokenizers:
            if language not in available_languages():
                raise UserError(
                    f"--language {language}: no bundled punkt parameters; "
                    f"use one of {', '.join(available_languages())}"
                )
            _tokenizers[language] = PunktSplitter(load_punkt_parameters(PUNKT_DIR / language))
        return _tokenizers[language]


@functools.lru_cache(maxsize=64)
def normalize_language(language: str) -> str:
    """A language code as ``--lang`` takes it: lower case, ``-`` (``zh_yue`` -> ``zh-yue``).

    Raises:
        UserError: ``language`` is not a language code (nor ``english``).
    """
    code = language.strip().lower().replace("_", "-")
    if code in _ENGLISH or _LANG_CODE_RE.match(code):
        return code
    raise UserError(
        f"--lang {language}: not a Wikipedia language code (like en, ja, de, zh-yue); "
        f"no bundled punkt parameters of that name either (bundled: "
        f"{', '.join(available_languages())})"
    )


@functools.lru_cache(maxsize=64)
def splitter_kind(language: str) -> str:
    """Which splitter a language gets: ``punkt`` (English), ``cjk`` or ``sentencex``."""
    code = normalize_language(language)
    if code in _ENGLISH:
        return "punkt"
    if code in CJK_LANGUAGES:
        return "cjk"
    return "sentencex"


def _cjk_spans(paragraph: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of CJK text: after each ender run and its closing brackets, outside
    brackets (all of them when the paragraph's brackets do not balance)."""
    end = len(paragraph) if end is None else end
    found = [(m.start(), m.end()) for m in _CJK_END_RE.finditer(paragraph, start, end)]
    cuts = [e for _, e in found]
    if found and any(c in _CJK_OPEN for c in paragraph[start:end]):
        # Bracket depth where each ender run starts, from one pass over the characters.
        wanted = {s for s, _ in found}
        depth_at: dict[int, int] = {}
        depth = 0
        for i in range(start, end):
            if i in wanted:
                depth_at[i] = depth
            c = paragraph[i]
            if c in _CJK_OPEN:
                depth += 1
            elif c in _CJK_CLOSE:
                depth = max(0, depth - 1)
        if depth == 0:  # balanced: an ender inside brackets is quoted speech, not an end
            cuts = [e for s, e in found if depth_at[s] == 0]
    spans: list[tuple[int, int]] = []
    prev = start
    for cut in [*cuts, end]:
        piece_end = cut
        while piece_end > prev and paragraph[piece_end - 1] == " ":
            piece_end -= 1
        if piece_end > prev:
            spans.append((prev, piece_end))
        prev = cut
    return spans


def _sentencex_spans(paragraph: str, code: str) -> list[tuple[int, int]]:
    import sentencex  # noqa: PLC0415 - optional at import time: English never needs it

    spans: list[tuple[int, int]] = []
    for b in sentencex.get_sentence_boundaries(code, paragraph):
        start, end = int(b["start_index"]), int(b["end_index"])
        # sentencex keeps the spaces after a sentence; CJK enders inside it also split.
        for s, e in _cjk_spans(paragraph, start, end):
            while e > s and paragraph[e - 1] == " ":
                e -= 1
            while s < e and paragraph[s] == " ":
                s += 1
            if e <= s:
                continue
            if spans and paragraph[s].islower() and paragraph[spans[-1][1] - 1] == ".":
                spans[-1] = (spans[-1][0], e)  # an abbreviation sentencex does not know
            else:
                spans.append((s, e))
    return spans


def sentence_spans(paragraph: str, language: str = "en") -> list[tuple[int, int]]:
    """Raw sentence spans of a whitespace-normalised paragraph in ``language``."""
    kind = splitter_kind(language)
    if kind == "punkt":
        return get_tokenizer("english").span_tokenize(paragraph)
    if kind == "cjk":
        return _cjk_spans(paragraph)
    return _sentencex_spans(paragraph, normalize_language(language))


def _unbreakable_before(s: str, i: int) -> bool:
    """True when a cut before ``s[i]`` would split a grapheme: ``s[i]`` is a combining mark,
    a joiner, a variation selector, an emoji modifier or a conjoining Hangul vowel/final
    jamo, or ``s[i - 1]`` is a zero-width joiner."""
    if i <= 0 or i >= len(s):
        return False
    c = s[i]
    o = ord(c)
    return (
        unicodedata.combining(c) != 0
        or unicodedata.category(c) in ("Mn", "Me", "Mc")
        or o in (0x200C, 0x200D)
        or 0xFE00 <= o <= 0xFE0F
        or 0xE0100 <= o <= 0xE01EF
        or 0x1F3FB <= o <= 0x1F3FF
        or 0x1160 <= o <= 0x11FF
        or 0xD7B0 <= o <= 0xD7FF
        or s[i - 1] == "\u200d"
    )


def _grapheme_cut(s: str, cut: int) -> int:
    """``cut`` moved back to a grapheme boundary (forward if none is before it)."""
    back = cut
    while back > 0 and _unbreakable_before(s, back):
        back -= 1
    if back > 0:
        return back
    while cut < len(s) and _unbreakable_before(s, cut):
        cut += 1
    return cut


def cut_long_sentence(sentence: str, max_chars: int, *, cjk: bool = False) -> list[str]:
    """Cut ``sentence`` into pieces of at most ``max_chars`` characters.

    Cuts prefer a ``;`` then a ``,`` boundary in the second half of the allowed window, then
    the last space; a run without any space (a long URL) is cut hard at ``max_chars``, moved
    back so that it never splits a grapheme (before a combining mark, a joiner or variation
    selector, after a ZWJ, inside a Hangul jamo syllable); a single grapheme longer than
    ``max_chars`` stays whole.

    Args:
        sentence: Whitespace-normalised text (single spaces).
        max_chars: The maximum piece length, >= 1.

    Returns:
        The pieces in order, stripped, none empty; ``[sentence]`` when it is short enough.
    """
    pieces: list[str] = []
    rest = sentence
    boundaries = ("; ", ", ", "；", "，", "、") if cjk else ("; ", ", ")
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]  # a space right after the limit is a valid cut
        half = max_chars // 2
        cut = -1
        for boundary in boundaries:
            found = window.rfind(boundary, half, max_chars + len(boundary) - 1)
            if found >= 0:
                cut = found + 1  # keep the punctuation with the left piece
                break
        if cut < 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = _grapheme_cut(rest, max_chars)
        piece = rest[:cut].strip()
        if piece:
            pieces.append(piece)
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _merge_spans(paragraph: str, spans: list[tuple[int, int]]) -> list[str]:
    """Sentences from Punkt's spans, with two of its mistakes undone.

    A punctuation-only piece (a lone closing quote, ``...``) joins the sentence before it, or
    the next one at the start of a paragraph. A piece ending in a personal title (``Mr.``,
    ``Dr.``) joins the next one: Punkt knows these abbreviations but still splits before a
    capitalised word it has no statistics for when that word ends the sentence (``"What can I
    do for you, Mr. Holmes?"``), or when a quote precedes the title (``'Mr. Ferguson``).
    A piece that starts in lower case after a ``?`` or ``!`` continues that sentence: Punkt
    always splits after them, which cuts every ``"Why?" he asked.`` in two.
    Merging spans (not strings) keeps the paragraph's exact text.
    """
    merged: list[list[int]] = []
    pending_start = -1  # start of punctuation seen before the paragraph's first real sentence
    glue_next = False
    for start, end in spans:
        piece = paragraph[start:end]
        if _WORDLIKE_RE.search(piece) is None:
            if merged:
                merged[-1][1] = end
            elif pending_start < 0:
                pending_start = start
            continue
        if glue_next or (
            merged
            and piece[0].islower()
            and _OPEN_END_RE.search(paragraph, max(0, merged[-1][1] - 8), merged[-1][1])
        ):
            merged[-1][1] = end
        else:
            merged.append([start if pending_start < 0 else pending_start, end])
            pending_start = -1
        glue_next = _TITLE_END_RE.search(piece, max(0, len(piece) - 10)) is not None
    return [paragraph[start:end] for start, end in merged]


def split_paragraph(paragraph: str, cfg: SentenceConfig, *, count: Count) -> list[str]:
    """Split one paragraph into clean sentences.

    Args:
        paragraph: One line of an article (no newline needed; any whitespace is normalised).
        cfg: Language, maximum and minimum sentence length.
        count: Counter callback (``split/long_sentences_cut``, ``split/dropped:short_sentence``,
            ``split/dropped:punctuation_only``).

    Returns:
        Sentences with single spaces, no newlines or tabs, each with a letter or digit and at
        most ``cfg.max_sentence_chars`` characters.
    """
    if _CONTROL_RE.search(paragraph) is not None:
        paragraph = _CONTROL_RE.sub("", paragraph)
    # Normalise once per paragraph: Punkt's spans are slices of it, so the sentences are then
    # already clean and need no per-sentence work.
    paragraph = " ".join(paragraph.split())
    if not paragraph:
        return []
    spans = sentence_spans(paragraph, cfg.language)
    sentences = _merge_spans(paragraph, spans)
    if not sentences:
        if spans:
            count("split/dropped:punctuation_only", len(spans))
        return []
    max_chars = cfg.max_sentence_chars
    if max(map(len, sentences)) > max_chars:
        cjk = splitter_kind(cfg.language) != "punkt"
        cut: list[str] = []
        for sentence in sentences:
            if len(sentence) > max_chars:
                count("split/long_sentences_cut")
                for piece in cut_long_sentence(sentence, max_chars, cjk=cjk):
                    # A cut through a run of dashes or dots can leave symbols only.
                    if _WORDLIKE_RE.search(piece) is None:
                        count("split/dropped:punctuation_only")
                    else:
                        cut.append(piece)
            else:
                cut.append(sentence)
        sentences = cut
    if cfg.min_sentence_chars > 1:
        kept = [s for s in sentences if len(s) >= cfg.min_sentence_chars]
        if len(kept) < len(sentences):
            count("split/dropped:short_sentence", len(sentences) - len(kept))
        sentences = kept
    return sentences


def split_sentences(article: Article, cfg: SentenceConfig, *, count: Count) -> Document | None:
    """Split an article into a document of sentences, one per paragraph piece.

    Each line of ``article.text`` is a paragraph; sentences never cross paragraphs.

    Args:
        article: Clean text, paragraphs separated by newlines.
        cfg: Sentence splitting options (books in ``cfg.books_language``).
        count: Counter callback: ``split/documents``, ``split/sentences``,
            ``split/characters``, ``split/long_sentences_cut``, ``split/dropped:empty``
            (no sentence at all), ``split/dropped:short_sentence``,
            ``split/dropped:punctuation_only``.

    Returns:
        The document, or None when the article has no sentence.
    """
    cfg = cfg.for_source(article.source)
    sentences: list[str] = []
    for paragraph in article.text.split("\n"):
        sentences.extend(split_paragraph(paragraph, cfg, count=count))
    if not sentences:
        count("split/dropped:empty")
        return None
    count("split/documents")
    count("split/sentences", len(sentences))
    count("split/characters", sum(map(len, sentences)))
    return Document(id=article.id, title=article.title, source=article.source, sentences=sentences)
