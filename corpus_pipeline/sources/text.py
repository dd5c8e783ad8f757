"""User corpora: JSON-lines, Parquet and folders of plain text, one record -> one article.

Three shapes are read, each file a work unit:

- JSON-lines (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``, ``.jsonl.bz2``, ``.jsonl.xz``): one JSON
  object per line; the text under ``ExtractConfig.text_key`` (``text``), the id under
  ``id_key`` or, without one, ``<file name>:<line number>``.
- Parquet (``.parquet``; what ``datasets.Dataset.to_parquet`` and the Hub's parquet exports
  write): the same keys are column names; the default id is ``<file name>:<row number>``.
- A folder of ``.txt`` files: blank lines separate documents (one line = one paragraph, so
  Google's sentence-per-line format reads as is), or, with ``doc_per_file``, one file is one
  document (hard-wrapped lines are joined as for books, :func:`books.reflow`).

Every bad record is counted as ``extract/dropped:<reason>`` and skipped, never raised:
``invalid_json``, ``invalid_encoding``, ``not_object`` (a JSON line that is no object),
``missing_key`` (no text key), ``not_string`` (the text is not a string, null included),
``missing_id``/``bad_id`` (with ``id_key``: absent, or not a string or integer), ``empty``,
``short`` (``min_article_chars``), ``binary`` (a ``.txt`` file that is not text). A compressed
file cut short or corrupt stops its unit at that point, counted as
``extract/dropped:truncated_stream`` or ``extract/dropped:corrupt_stream`` (damage: it counts
towards ``--max-loss``, as for dumps).

The readers yield ``Article | None`` per record read, ``None`` for a dropped one, so that a
caller can stop after a number of records (``--max-docs``) and get the same prefix every time.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import lzma
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.records import Article
from corpus_pipeline.sources import books
from corpus_pipeline.sources.article_filter import passes_length_filters

Count = Callable[..., None]
Opener = Callable[[str], IO[bytes]]

log = logging.getLogger(__name__)

SOURCE = "text"

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".jsonl.bz2", ".jsonl.xz")
PARQUET_SUFFIXES = (".parquet",)
TXT_SUFFIX = ".txt"

_PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class TextUnit:
    """One file of a user corpus (a Beam element).

    Attributes:
        path: The file (local absolute path or remote URL).
        kind: ``jsonl``, ``parquet`` or ``txt``.
        name: Its stable name in ids: the file name, or the path relative to its ``.txt``
            folder (``/``-separated), so ids do not depend on where the corpus lives.
    """

    path: str
    kind: str
    name: str


def input_kind(path: str) -> str | None:
    """``jsonl`` or ``parquet`` from the file name (case-insensitive), else None (a dump)."""
    lower = path.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def open_local(path: str) -> IO[bytes]:
    return open(path, "rb")


def read_unit(
    unit: TextUnit,
    cfg: ExtractConfig,
    *,
    count: Count,
    opener: Opener = open_local,
    tally: Count | None = None,
) -> Iterator[Article | None]:
    """The records of one file, in file order: an article each, None for a dropped one.

    Args:
        unit: The file.
        cfg: ``text_key``, ``id_key``, ``doc_per_file``, ``min_article_chars``.
        count: Counter callback (``extract/records``, ``extract/articles``,
            ``extract/characters``, ``extract/dropped:<reason>``; see the module docstring).
        opener: Opens the path as a binary file (``fsio.open_read`` for remote paths).
        tally: Volume counters for the loss report: ``extract/read:units`` once.
    """
    (tally or count)("extract/read:units")
    if unit.kind == "jsonl":
        yield from _guard(read_jsonl(unit, cfg, count=count, opener=opener), unit, count)
    elif unit.kind == "parquet":
        yield from read_parquet(unit, cfg, count=count, opener=opener)
    elif unit.kind == "txt":
        yield from read_txt(unit, cfg, count=count, opener=opener)
    else:
        raise ValueError(f"unknown text unit kind {unit.kind!r}")


def _guard(records: Iterator[Article | None], unit: TextUnit, count: Count) -> Iterator[Any]:
    """A compressed file cut short or corrupt: count it once and end the unit there."""
    try:
        yield from records
    except EOFError as e:
        count("extract/dropped:truncated_stream")
        log.warning("%s: truncated (%s): the rest of the file is lost", unit.path, e)
    except (OSError, lzma.LZMAError, ValueError) as e:
        count("extract/dropped:corrupt_stream")
        log.warning("%s: corrupt compressed data (%s): the rest is lost", unit.path, e)
    except Exception as e:  # zstandard.ZstdError is a plain Exception subclass
        if type(e).__name__ != "ZstdError":
            raise
        kind = "truncated_stream" if "truncated" in str(e).lower() else "corrupt_stream"
        count(f"extract/dropped:{kind}")
        log.warning("%s: %s (%s): the rest of the file is lost", unit.path, kind, e)


def _decompressed(path: str, raw: IO[bytes]) -> IO[bytes]:
    lower = path.lower()
    if lower.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if lower.endswith((".zst", ".zstd")):
        import zstandard  # installed with apache-beam

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader, 1 << 20)  # type: ignore[arg-type]
    if lower.endswith(".bz2"):
        return bz2.BZ2File(raw, mode="rb")
    if lower.endswith(".xz"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def read_jsonl(
    unit: TextUnit, cfg: ExtractConfig, *, count: Count, opener: Opener = open_local
) -> Iterator[Article | None]:
    """One article (or None, counted) per non-blank line of a JSON-lines file."""
    with opener(unit.path) as raw, _decompressed(unit.path, raw) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue  # a blank line (often the last) is no record
            count("extract/records")
            try:
                text_line = line.decode("utf-8")
            except UnicodeDecodeError:
                count("extract/dropped:invalid_encoding")
                yield None
                continue
            try:
                record = json.loads(text_line)
            except (ValueError, RecursionError):  # JSONDecodeError; absurdly deep nesting
                count("extract/dropped:invalid_json")
                yield None
                continue
            if not isinstance(record, dict):
                count("extract/dropped:not_object")
                yield None
                continue
            yield record_to_article(record, f"{unit.name}:{lineno}", cfg, count=count)


def read_parquet(
    unit: TextUnit, cfg: ExtractConfig, *, count: Count, opener: Opener = open_local
) -> Iterator[Article | None]:
    """One article (or None, counted) per row of a Parquet file, read in batches."""
    import pyarrow.parquet as pq  # installed with apache-beam

    with opener(unit.path) as raw:
        try:
            pf = pq.ParquetFile(raw)
        except Exception as e:  # pyarrow.ArrowInvalid and friends: not a Parquet file
            count("extract/dropped:corrupt_stream")
            log.warning("%s: not a readable Parquet file (%s)", unit.path, e)
            return
        names = set(pf.schema_arrow.names)
        wanted = [k for k in (cfg.text_key, cfg.id_key) if k and k in names]
        if cfg.text_key not in names:
            log.warning(
                "%s: no column %r (columns: %s); give --text-key",
                unit.path,
                cfg.text_key,
                ", ".join(sorted(names)),
            )
        if not wanted:  # no column to read: every row lacks the text
            for _ in range(pf.metadata.num_rows):
                count("extract/records")
                count("extract/dropped:missing_key")
                yield None
            return
        row = 0
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=wanted):
            columns = batch.to_pydict()
            for i in range(batch.num_rows):
                count("extract/records")
                record = {k: v[i] for k, v in columns.items()}
                yield record_to_article(record, f"{unit.name}:{row}", cfg, count=count)
                row += 1


def record_to_article(
    record: dict[str, Any], default_id: str, cfg: ExtractConfig, *, count: Count
) -> Article | None:
    """A JSON object or a Parquet row -> article, or None (counted)."""
    if cfg.text_key not in record:
        count("extract/dropped:missing_key")
        return None
    text = record[cfg.text_key]
    if not isinstance(text, str):
        count("extract/dropped:not_string")
        return None
    if cfg.id_key:
        if record.get(cfg.id_key) is None:
            count("extract/dropped:missing_id")
            return None
        value = record[cfg.id_key]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            count("extract/dropped:bad_id")
            return None
        doc_id = str(value)
    else:
        doc_id = default_id
    title = record.get("title")
    return make_article(doc_id, title if isinstance(title, str) else doc_id, text, cfg, count)


def make_article(doc_id: str, title: str, text: str, cfg: ExtractConfig, count: Count) -> Any:
    """Normalise line ends and blank lines, apply the empty/short filters, count."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.strip() for line in text.split("\n") if line.strip())
    if not passes_length_filters(text, cfg, count, "extract"):
        return None
    count("extract/articles")
    count("extract/characters", len(text))
    return Article(id=doc_id, title=title, source=SOURCE, text=text)


def read_txt(
    unit: TextUnit, cfg: ExtractConfig, *, count: Count, opener: Opener = open_local
) -> Iterator[Article | None]:
    """A ``.txt`` file: documents separated by blank lines, or the file as one document."""
    if cfg.doc_per_file:
        with opener(unit.path) as f:
            data = f.read()
        count("extract/records")
        decoded, replaced = books.decode_book(data)
        if decoded is None:
            count("extract/dropped:binary")
            yield None
            return
        if replaced:
            count("extract/replaced_bytes", replaced)
        text = books.reflow(decoded.replace("\r\n", "\n").replace("\r", "\n"))
        stem = os.path.splitext(os.path.basename(unit.name))[0]
        yield make_article(unit.name, stem, text, cfg, count)
        return
    with opener(unit.path) as f:
        head = f.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
            # UTF-16/32: decode the whole file (rare; such files are small in practice).
            decoded, replaced = books.decode_book(head + f.read())
            if decoded is None:
                count("extract/records")
                count("extract/dropped:binary")
                yield None
                return
            if replaced:
                count("extract/replaced_bytes", replaced)
            lines: Iterator[str] = iter(decoded.splitlines())
            yield from _blocks(lines, unit, cfg, count)
            return
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        stream = io.BufferedReader(_Prefixed(head, f))  # type: ignore[arg-type]
        yield from _blocks(_utf8_lines(stream, count), unit, cfg, count)


def _utf8_lines(f: IO[bytes], count: Count) -> Iterator[str]:
    for raw in f:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            count("extract/replaced_bytes", line.count("\ufffd"))
            yield line


def _blocks(lines: Iterator[str], unit: TextUnit, cfg: ExtractConfig, count: Count) -> Any:
    """Blank-line separated blocks -> articles ``<name>:<number of the block's first line>``."""
    block: list[str] = []
    first = 0
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if line:
            if not block:
                first = lineno
            block.append(line)
            continue
        if block:
            count("extract/records")
            yield make_article(f"{unit.name}:{first}", unit.name, "\n".join(block), cfg, count)
            block = []
    if block:
        count("extract/records")
        yield make_article(f"{unit.name}:{first}", unit.name, "\n".join(block), cfg, count)


class _Prefixed(io.RawIOBase):
    """A binary file with its first bytes (already read) put back in front."""

    def __init__(self, head: bytes, f: IO[bytes]) -> None:
        self.head = head
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)
