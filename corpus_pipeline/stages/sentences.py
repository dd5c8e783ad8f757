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
"""

from __future__ import annotations

import re
import threading
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


def cut_long_sentence(sentence: str, max_chars: int) -> list[str]:
    """Cut ``sentence`` into pieces of at most ``max_chars`` characters.

    Cuts prefer a ``;`` then a ``,`` boundary in the second half of the allowed window, then
    the last space; a run without any space (a long URL) is cut hard at ``max_chars``.

    Args:
        sentence: Whitespace-normalised text (single spaces).
        max_chars: The maximum piece length, >= 1.

    Returns:
        The pieces in order, stripped, none empty; ``[sentence]`` when it is short enough.
    """
    pieces: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]  # a space right after the limit is a valid cut
        half = max_chars // 2
        cut = -1
        for boundary in ("; ", ", "):
            found = window.rfind(boundary, half)
            if found >= 0:
                cut = found + 1  # keep the punctuation with the left piece
                break
        if cut < 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = max_chars
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
    spans = get_tokenizer(cfg.language).span_tokenize(paragraph)
    sentences = _merge_spans(paragraph, spans)
    if not sentences:
        if spans:
            count("split/dropped:punctuation_only", len(spans))
        return []
    max_chars = cfg.max_sentence_chars
    if max(map(len, sentences)) > max_chars:
        cut: list[str] = []
        for sentence in sentences:
            if len(sentence) > max_chars:
                count("split/long_sentences_cut")
                for piece in cut_long_sentence(sentence, max_chars):
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
        cfg: Sentence splitting options.
        count: Counter callback: ``split/documents``, ``split/sentences``,
            ``split/characters``, ``split/long_sentences_cut``, ``split/dropped:empty``
            (no sentence at all), ``split/dropped:short_sentence``,
            ``split/dropped:punctuation_only``.

    Returns:
        The document, or None when the article has no sentence.
    """
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
