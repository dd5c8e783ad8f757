"""Extraction planning, on the launcher: the inputs -> a deterministic list of work units.

An input is a Wikipedia dump (its bz2 streams by the multistream index, or the whole file), a
JSON-lines or Parquet file, a folder of ``.txt`` documents or a books folder; each becomes
:class:`ExtractTask` s in command-line order. Also here: the run's language (from the dumps'
``<siteinfo>``), the ``--max-docs`` cut (read through the very functions the workers use, so
workers read exactly the planned prefixes) and each task's share of the progress bar.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import InputFormatError, UserError
from corpus_pipeline.records import Article
from corpus_pipeline.sources import (
    books,
    text,
    wikipedia_clean,
    wikipedia_pages,
    wikipedia_plan,
    wikipedia_records,
)
from corpus_pipeline.stages.sentences import normalize_language, split_sentences


@dataclass(frozen=True)
class ExtractTask:
    """One unit of input work planned on the launcher.

    Attributes:
        source_index: Position of the input (dump, text file or folder, books folder).
        unit_index: Position of the unit inside that input.
        kind: ``wiki``, ``book``, ``text`` or ``skip`` (a file of a ``.txt`` folder that is
            not ``.txt``: only counted, ``extract/skipped:not_txt``).
        unit: A ``wikipedia_records.WorkUnit``, a book path (str) or a ``text.TextUnit``.
        limit: Read only the first ``limit`` raw items of the unit (pages, records, books):
            ``--max-docs`` cut (:func:`apply_max_docs`); None reads it all.
    """

    source_index: int
    unit_index: int
    kind: str
    unit: Any
    limit: int | None = None


def task_bytes(task: ExtractTask) -> int:
    """The input bytes of a task, the unit of extraction progress (at least 1, so every task
    counts; a task of a skipped file 0)."""
    if task.kind == "skip":
        return 0
    unit = task.unit
    if isinstance(unit, wikipedia_records.WorkUnit):
        end = unit.end if unit.end is not None else _file_size(unit.path)
        return max(1, end - unit.start)
    return max(1, _file_size(unit if isinstance(unit, str) else unit.path))


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path) if not fsio.is_remote(path) else fsio.stat_files(path)[0][1]
    except (OSError, IndexError, UserError):
        return 0


def total_bytes(tasks: Sequence[ExtractTask]) -> int:
    """What the extraction progress of ``tasks`` adds up to (:func:`task_bytes`)."""
    return sum(task_bytes(t) for t in tasks)


def skipped_book_files(book_dirs: Iterable[str]) -> list[str]:
    """Files in the books folders that are not books (not .txt)."""
    return [p for folder in book_dirs for p in scan_book_paths(folder)[1]]


def scan_book_paths(folder: str) -> tuple[list[str], list[str]]:
    """``books.scan_books`` for local and remote folders: (book paths, other files)."""
    if not fsio.is_remote(folder):
        listing = books.scan_books(folder)
        return [str(p) for p in listing.books], [str(p) for p in listing.skipped]
    found = [p for p, _ in fsio.list_files(folder)]
    if not found and fsio.isfile(folder):
        found = [folder]  # a single book file
    txt = [p for p in found if p.lower().endswith(books.BOOK_SUFFIX)]
    other = [p for p in found if not p.lower().endswith(books.BOOK_SUFFIX)]
    if not txt:
        what = f"only {len(other)} non-.txt file(s)" if other else "no files"
        raise UserError(f"{folder}: no .txt books in this folder ({what}); add UTF-8 .txt files")
    return txt, other


def dump_opener(path: str) -> Any:
    """How a dump is opened: the local default, or Beam's FileSystems (no decompression)."""
    return fsio.open_read if fsio.is_remote(path) else wikipedia_records.open_local


def find_dump_index(path: str) -> str | None:
    """``wikipedia_plan.find_index`` for local and remote dumps."""
    if not fsio.is_remote(path):
        return wikipedia_plan.find_index(path)
    name = fsio.basename(path)
    if "multistream" not in name:
        return None
    stem = re.sub(r"\.xml(\.bz2)?$", "", name)
    cand = fsio.join(path.rsplit("/", 1)[0], stem + "-index.txt.bz2")
    return cand if fsio.isfile(cand) else None


def is_text_dir(path: str) -> bool:
    """An ``--input``-list entry that is a folder: a folder of ``.txt`` documents."""
    if fsio.is_remote(path):
        return text.input_kind(path) is None and not fsio.isfile(path)
    return os.path.isdir(path)


def scan_text_dir(folder: str) -> tuple[list[text.TextUnit], list[str]]:
    """The ``.txt`` files of a folder (recursive, sorted by path) as units, and the others.

    Raises:
        UserError: the folder holds no ``.txt`` file.
    """
    if fsio.is_remote(folder):
        found = [p for p, _ in fsio.list_files(folder)]
        prefix = folder.rstrip("/") + "/"
        rel = [p[len(prefix) :] if p.startswith(prefix) else fsio.basename(p) for p in found]
    else:
        root = os.path.abspath(folder)
        found = sorted(
            os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f != ".DS_Store"
        )
        rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in found]
    units = [
        text.TextUnit(p, "txt", r)
        for p, r in zip(found, rel, strict=True)
        if p.lower().endswith(text.TXT_SUFFIX)
    ]
    other = [p for p in found if not p.lower().endswith(text.TXT_SUFFIX)]
    if not units:
        what = f"only {len(other)} non-.txt file(s)" if other else "no files"
        raise UserError(f"--text-dir {folder}: no .txt files in this folder ({what})")
    return units, other


def _iter_tasks(
    inputs: Iterable[tuple[str, str | None]], book_dirs: Iterable[str], cfg: ExtractConfig
) -> Iterator[ExtractTask]:
    src = 0
    for path, index in inputs:
        kind = text.input_kind(path)
        if kind is not None:
            yield ExtractTask(src, 0, "text", text.TextUnit(path, kind, fsio.basename(path)))
        elif is_text_dir(path):
            units, other = scan_text_dir(path)
            for i, unit in enumerate(units):
                yield ExtractTask(src, i, "text", unit)
            for j, skipped in enumerate(other):
                yield ExtractTask(src, len(units) + j, "skip", skipped)
        else:
            units_ = wikipedia_plan.iter_units(
                path, cfg, index_path=index, opener=dump_opener(path)
            )
            for i, unit_ in enumerate(units_):
                yield ExtractTask(src, i, "wiki", unit_)
        src += 1
    for folder in book_dirs:
        for i, book in enumerate(scan_book_paths(folder)[0]):
            yield ExtractTask(src, i, "book", book)
        src += 1


def resolve_language(lang: str | None, dumps: Iterable[str]) -> str:
    """The language of a run's text, decided on the launcher (workers get it in their config).

    ``--lang`` when given; else the language the dumps' ``<siteinfo>`` names (``<dbname>``
    ``jawiki`` -> ``ja``; the root's ``xml:lang`` without one), which must be the same for
    every dump; else (books and other text, or dumps that name none) ``en``.

    Args:
        lang: The ``--lang`` flag, or None.
        dumps: The ``--input`` paths; those that are not MediaWiki dumps (other text, a
            folder) are passed over here, and planning reports them if they are broken.

    Raises:
        UserError: ``lang`` is not a language code, or the dumps are of different languages.
    """
    if lang:
        return normalize_language(lang)
    found: dict[str, list[str]] = {}
    for dump in dumps:
        try:
            code = wikipedia_plan.dump_language(dump, opener=dump_opener(dump))
        except InputFormatError:
            continue
        if code:
            found.setdefault(normalize_language(code), []).append(fsio.basename(dump))
    if len(found) > 1:
        which = "; ".join(f"{code}: {', '.join(names)}" for code, names in sorted(found.items()))
        raise UserError(
            f"the dumps are in different languages ({which}); extract each language on its "
            "own, or give --lang to split all text as one language"
        )
    return next(iter(found), "en")


def plan_tasks(
    dumps: Iterable[tuple[str, str | None]],
    book_dirs: Iterable[str],
    cfg: ExtractConfig,
    scfg: SentenceConfig | None = None,
) -> list[ExtractTask]:
    """Work units of every input, in a deterministic order.

    Args:
        dumps: ``(path, index)`` per input, in command-line order: a Wikipedia dump (with its
            multistream index or None), a JSON-lines or Parquet file (by extension, index
            None), or a folder of ``.txt`` documents (index None).
        book_dirs: Folders of books (one ``.txt`` file = one document).
        cfg: ``max_docs`` cuts the plan to the first N documents (:func:`apply_max_docs`).
        scfg: The sentence splitting that decides whether an article makes a document.
    """
    tasks = _iter_tasks(dumps, book_dirs, cfg)
    if cfg.max_docs is not None:
        return apply_max_docs(tasks, cfg, scfg or SentenceConfig())
    return list(tasks)


def check_text_dirs(dirs: Sequence[str]) -> None:
    """``--text-dir`` must be an existing folder."""
    for d in dirs:
        if fsio.is_remote(d):
            continue  # checked when listed (no .txt files: one line)
        if not os.path.isdir(d):
            what = "is a file, not a folder" if os.path.exists(d) else "no such folder"
            raise UserError(f"--text-dir {d}: {what}; give a folder of .txt files")


def default_name(inputs: Sequence[str], text_dirs: Sequence[str], book_dirs: Sequence[str]) -> str:
    """``wiki``, ``books``, ``text`` (JSON-lines, Parquet, .txt folders) or ``mixed``."""
    kinds = {"text" if text.input_kind(i) else "wiki" for i in inputs}
    kinds |= {"text"} if text_dirs else set()
    kinds |= {"books"} if book_dirs else set()
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _ignore(name: str, n: int = 1) -> None:
    del name, n


def _raw_items(task: ExtractTask, ecfg: ExtractConfig, count: Any, tally: Any) -> Iterator[Any]:
    """A unit's raw items in input order: pages (wiki), articles or None (books, text)."""
    if task.kind == "wiki":
        yield from wikipedia_pages.read_pages(
            task.unit, ecfg, count=count, opener=dump_opener(task.unit.path), tally=tally
        )
    elif task.kind == "book":
        remote = fsio.is_remote(task.unit)
        yield books.read_book(
            fsio.read_bytes(task.unit) if remote else Path(task.unit),
            fsio.basename(task.unit) if remote else Path(task.unit).name,
            ecfg,
            count=count,
        )
    elif task.kind == "text":
        remote = fsio.is_remote(task.unit.path)
        opener = fsio.open_read if remote else text.open_local
        yield from text.read_unit(task.unit, ecfg, count=count, opener=opener, tally=tally)


def _to_article(task: ExtractTask, item: Any, ecfg: ExtractConfig, count: Any) -> Article | None:
    if task.kind == "wiki":
        return wikipedia_clean.clean_page(item, ecfg, count=count)
    article: Article | None = item
    return article


def _take(items: Iterator[Any], limit: int | None) -> Iterator[Any]:
    """The first ``limit`` items, closing the source (stops its reading) when done."""
    try:
        for n, item in enumerate(items, 1):
            yield item
            if limit is not None and n >= limit:
                return
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def apply_max_docs(
    tasks: Iterable[ExtractTask], ecfg: ExtractConfig, scfg: SentenceConfig
) -> list[ExtractTask]:
    """Cut a plan to the first ``ecfg.max_docs`` documents, in input order.

    The launcher reads the units in order through the very functions the workers use
    (read, clean, sentence-split, counting nothing) until N items have made documents, and
    plans only those units, the last one with a ``limit`` on the raw items (pages, records)
    to read. Tasks are consumed lazily, so later inputs are not even planned, and reading
    stops after the last needed item (a single-stream dump is not read to its end).
    Workers then read exactly these prefixes: the same N documents for any number of
    workers or runner. The cost is reading the sample twice (meant for small N).
    """
    assert ecfg.max_docs is not None
    need = ecfg.max_docs
    kept: list[ExtractTask] = []
    for task in tasks:
        if task.kind == "skip":
            kept.append(task)
            continue
        read = 0
        for item in _take(_raw_items(task, ecfg, _ignore, _ignore), None):
            read += 1
            article = _to_article(task, item, ecfg, _ignore)
            if article is not None and split_sentences(article, scfg, count=_ignore):
                need -= 1
                if need == 0:
                    break
        if need == 0:
            kept.append(replace(task, limit=read))
            break
        kept.append(task)
    return kept
