"""Book collections: a folder of plain-text files, one book per file, one document per book.

Books come mostly from Project Gutenberg, so reading one means: guess the encoding (UTF-8 with
or without BOM, UTF-16/32 with BOM), replace and count undecodable bytes, drop binary and empty
files, strip the Gutenberg header and footer (license text must never reach the shards), and
reflow the ~70-column hard wrapping so that a sentence is never cut at a line end.

The folder listing does IO; :func:`decode_book` and :func:`clean_book` are pure and take bytes
or text, so the Beam source can read a file from any filesystem and call them.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.records import Article
from corpus_pipeline.sources.article_filter import passes_length_filters

Count = Callable[..., None]

BOOK_SUFFIX = ".txt"

# A decoded file whose characters are more than this fraction replacement characters or control
# characters is not text (an image or archive renamed to .txt, say).
_MAX_NON_TEXT_FRACTION = 0.3

# Every undecodable byte becomes one lone surrogate. A strict UTF-8/16/32 decoder never outputs
# lone surrogates itself, so counting them afterwards counts exactly the bad bytes, and they are
# then replaced by U+FFFD (a lone surrogate cannot even be encoded back to UTF-8).
_SENTINEL = "\udfff"
_ERROR_HANDLER = "corpus_pipeline.books.count_bad_bytes"


def _mark_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _SENTINEL * (exc.end - exc.start), exc.end


codecs.register_error(_ERROR_HANDLER, _mark_bad_bytes)

# Byte-order marks, longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# C0/C1 control characters other than whitespace: a text file has almost none.
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")

# Gutenberg markers, matched at the start of a line, case-insensitively. The header ends with
# "*** START OF THE/THIS PROJECT GUTENBERG EBOOK <title> ***" (older files: "*END*THE SMALL
# PRINT! ..."), the footer starts with "*** END OF THE/THIS PROJECT GUTENBERG EBOOK" or, a few
# lines earlier, "End of the Project Gutenberg EBook of <title>" / "End of Project Gutenberg's".
_START_RE = re.compile(
    r"^[^\w\n]*(?:START OF (?:THE |THIS )?PROJECT GUTENBERG|END[^\w\n]*THE SMALL PRINT)",
    re.IGNORECASE | re.MULTILINE,
)
_END_RE = re.compile(
    r"^[^\w\n]*END OF (?:THE |THIS )?PROJECT GUTENBERG", re.IGNORECASE | re.MULTILINE
)
_TITLE_RE = re.compile(r"^Title:[ \t]*(\S.*)$", re.MULTILINE)
# Producer credits right after the header ("Produced by an anonymous Project Gutenberg
# volunteer ..."): boilerplate, not the book.
_CREDIT_RE = re.compile(
    r"^[^\w\n]*(?:produced by|prepared by|scanned (?:and proofed )?by|transcribed (?:from|by)"
    r"|(?:this )?e-?(?:text|book) (?:was )?(?:prepared|produced|transcribed|scanned|created))",
    re.IGNORECASE,
)
# Only the first few paragraphs after the header are checked for credits.
_CREDIT_PARAGRAPHS = 3

# Reflow: a line break inside a paragraph is a wrap (joined with a space) when the next line's
# first word would not have fitted on the line within the book's wrap width minus this slack.
# Shorter lines (tables of contents, verse, letter closings) keep their line breaks. Measured on
# the bundled Sherlock Holmes (width 65): slack 10 keeps exactly the table of contents and the
# letter signatures as lines and joins every line of prose.
_WRAP_SLACK = 10
_WRAP_WIDTH_QUANTILE = 0.9


@dataclass(frozen=True)
class BookListing:
    """The files of a book folder.

    Attributes:
        books: ``.txt`` files, sorted by path.
        skipped: Every other file (the caller counts them as ``books/skipped:not_txt``).
    """

    books: list[Path]
    skipped: list[Path]


def scan_books(folder: str | Path) -> BookListing:
    """List the books of ``folder`` (recursively) and the files that are not books.

    Args:
        folder: A folder of ``.txt`` files (sub-folders are searched too). A single ``.txt``
            file is accepted as a collection of one book.

    Returns:
        The ``.txt`` files (suffix compared case-insensitively) and the other files, each sorted
        so that every run lists them in the same order.

    Raises:
        UserError: The folder does not exist, or holds no ``.txt`` file.
    """
    root = Path(folder)
    if root.is_file():
        if root.suffix.lower() == BOOK_SUFFIX:
            return BookListing([root], [])
        raise UserError(f"{root}: not a folder of .txt books; pass the folder that holds them")
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; pass a folder of .txt books")
    books: list[Path] = []
    skipped: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            (books if path.suffix.lower() == BOOK_SUFFIX else skipped).append(path)
    if not books:
        what = f"only {len(skipped)} non-.txt file(s)" if skipped else "no files"
        raise UserError(f"{root}: no .txt books in this folder ({what}); add UTF-8 .txt files")
    return BookListing(books, skipped)


def list_books(folder: str | Path) -> list[Path]:
    """The ``.txt`` files of ``folder``, recursive and sorted (see :func:`scan_books`)."""
    return scan_books(folder).books


def book_name(path: str | Path, folder: str | Path) -> str:
    """The stable name of a book: its path relative to the collection folder, with ``/``.

    The document id is ``book:<name>``, so it does not depend on where the folder lives.
    """
    path, folder = Path(path), Path(folder)
    if path == folder:
        return path.name
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


def decode_book(data: bytes) -> tuple[str | None, int]:
    """Decode a book's bytes to text.

    UTF-8 (with or without BOM) is the default; a UTF-16 or UTF-32 BOM selects that encoding,
    and UTF-16 without a BOM is recognised by its NUL bytes. The BOM is removed.

    Args:
        data: The whole file.

    Returns:
        ``(text, replaced)``: the text with each undecodable byte replaced by U+FFFD and the
        number of such bytes; ``(None, 0)`` for a binary file (NUL bytes in a file that is not
        UTF-16/32, or mostly non-text characters).
    """
    sniffed = _sniff_encoding(data)
    if sniffed is None:
        return None, 0
    encoding, bom_length = sniffed
    # Decode after the BOM: the "-le"/"-be" codecs would keep it as a U+FEFF character.
    text = data[bom_length:].decode(encoding, errors=_ERROR_HANDLER)
    replaced = text.count(_SENTINEL)
    if replaced:
        text = text.replace(_SENTINEL, "\ufffd")
    non_text = replaced + len(_CONTROL_RE.findall(text))
    if "\x00" in text or non_text > _MAX_NON_TEXT_FRACTION * max(1, len(text)):
        return None, 0
    return text.replace("\ufeff", ""), replaced


def _sniff_encoding(data: bytes) -> tuple[str, int] | None:
    """``(encoding, BOM length)``, or None for a binary file."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    if b"\x00" not in data:
        return "utf-8", 0
    # UTF-16 without a BOM: ASCII-range text has a NUL in every other byte.
    sample = data[:4096]
    half = max(1, len(sample) // 2)
    even_nuls, odd_nuls = sample[0::2].count(0) / half, sample[1::2].count(0) / half
    if odd_nuls > 0.3 and even_nuls < 0.05:
        return "utf-16-le", 0
    if even_nuls > 0.3 and odd_nuls < 0.05:
        return "utf-16-be", 0
    return None


@dataclass(frozen=True)
class GutenbergParts:
    """A book split from its Project Gutenberg boilerplate.

    Attributes:
        body: The text between header and footer (all of it where a marker is missing).
        title: The header's ``Title:``, or None.
        stripped: A header or footer marker was found and removed.
    """

    body: str
    title: str | None
    stripped: bool


def strip_gutenberg(text: str) -> GutenbergParts:
    """Remove the Project Gutenberg header, footer and producer credits.

    Args:
        text: The book with ``\\n`` line ends.

    Returns:
        The body, the header's title and whether anything was stripped.
    """
    start, end = 0, len(text)
    first_start = _START_RE.search(text)
    footer = _END_RE.search(text, first_start.end() if first_start else 0)
    if footer is not None:
        end = footer.start()
    # Older files have the small print and a "*** START" line in either order: the header ends
    # after the last start marker before the footer.
    header = None
    for match in _START_RE.finditer(text, 0, end):
        header = match
    title = None
    if header is not None:
        start = _end_of_marker(text, header.start())
        title_match = _TITLE_RE.search(text, 0, header.start())
        if title_match is not None:
            title = _title_with_continuation(text, title_match)
    body = text[start:end]
    if header is not None:
        body = _drop_credits(body)
    return GutenbergParts(body, title, header is not None or footer is not None)


def _end_of_marker(text: str, pos: int) -> int:
    """The end of a marker line; a "*** START ... ***" whose title wraps ends on a later line."""
    line_end = text.find("\n", pos)
    if line_end < 0:
        return len(text)
    line = text[pos:line_end].strip()
    if line.startswith("***") and not line.endswith("***"):
        for _ in range(3):
            nxt = text.find("\n", line_end + 1)
            nxt = len(text) if nxt < 0 else nxt
            piece = text[line_end + 1 : nxt].strip()
            if not piece:
                break
            line_end = nxt
            if piece.endswith("***"):
                break
    return line_end


def _title_with_continuation(text: str, match: re.Match[str]) -> str:
    parts = [match.group(1).strip()]
    rest = text[match.end() + 1 :].split("\n", 4)[:4]
    for line in rest:  # long titles continue on indented lines
        if not line[:1].isspace() or not line.strip():
            break
        parts.append(line.strip())
    return " ".join(parts)


def _drop_credits(body: str) -> str:
    paragraphs = re.split(r"\n[ \t]*\n", body.strip("\n"), maxsplit=_CREDIT_PARAGRAPHS)
    kept = 0
    while kept < min(_CREDIT_PARAGRAPHS, len(paragraphs)) and _CREDIT_RE.match(paragraphs[kept]):
        kept += 1
    return "\n\n".join(paragraphs[kept:])


def reflow(text: str) -> str:
    """Join hard-wrapped lines into one line per paragraph.

    Paragraphs are separated by blank lines. Inside one, a line break is a wrap when the next
    line's first word would not have fitted on the line (the wrap width is the book's 90th
    percentile line length, less a slack); other breaks (verse, tables of contents, signatures)
    are kept. Whitespace runs become single spaces.

    Args:
        text: Text with ``\\n`` line ends.

    Returns:
        One line per paragraph (or kept line), separated by a single ``\\n``, no blank lines.
    """
    lines = [line.rstrip() for line in text.split("\n")]
    lengths = sorted(len(line) for line in lines if line)
    if not lengths:
        return ""
    width = lengths[min(len(lengths) - 1, int(len(lengths) * _WRAP_WIDTH_QUANTILE))]
    out: list[str] = []
    current: list[str] = []
    previous = ""
    for line in lines:
        words = line.split()
        if not words:
            if current:
                out.append(" ".join(current))
                current = []
            previous = ""
            continue
        if current and len(previous) + 1 + len(words[0]) <= width - _WRAP_SLACK:
            out.append(" ".join(current))
            current = []
        current.extend(words)
        previous = line
    if current:
        out.append(" ".join(current))
    return "\n".join(out)


def clean_book(text: str) -> GutenbergParts:
    """Decoded book text to clean article text: line ends, Gutenberg boilerplate, reflow.

    Returns:
        The reflowed body (one line per paragraph), the Gutenberg title and whether
        boilerplate was stripped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = strip_gutenberg(text)
    return GutenbergParts(reflow(parts.body), parts.title, parts.stripped)


def read_book(
    source: str | Path | bytes,
    name: str,
    cfg: ExtractConfig | None = None,
    *,
    count: Count,
) -> Article | None:
    """Read one book as one document.

    Args:
        source: The file's path, or its bytes (a Beam source reads through its filesystem).
        name: The book's stable name (see :func:`book_name`); the id is ``book:<name>``.
        cfg: ``min_article_chars`` applies (shorter books: ``books/dropped:short``).
        count: Counter callback. ``books/passed``, ``books/characters``,
            ``books/replaced_bytes`` (undecodable bytes replaced by U+FFFD),
            ``books/gutenberg_stripped``, ``books/dropped:binary``, ``books/dropped:empty``,
            ``books/dropped:short``.

    Returns:
        The article (title from the Gutenberg ``Title:`` line, else the file stem), or None for
        a dropped file.

    Raises:
        UserError: ``source`` is a path that cannot be read.
    """
    cfg = cfg or ExtractConfig()
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise UserError(f"{source}: cannot read book ({e.strerror}); check the path") from e
    if not data.strip():
        count("books/dropped:empty")
        return None
    decoded, replaced = decode_book(data)
    if decoded is None:
        count("books/dropped:binary")
        return None
    if replaced:
        count("books/replaced_bytes", replaced)
    cleaned = clean_book(decoded)
    text, title = cleaned.body, cleaned.title
    if cleaned.stripped:
        count("books/gutenberg_stripped")
    if not passes_length_filters(text, cfg, count, "books"):
        return None
    count("books/passed")
    count("books/characters", len(text))
    return Article(
        id=f"book:{name}",
        title=title or Path(name).stem,
        source="books",
        text=text,
    )
