"""Sentence-split documents on disk: Google's text format and JSON lines.

Text format (the input of Google's / NVIDIA's ``create_pretraining_data.py``): one sentence
per line, a blank line between documents. It carries no ids, so a reader names documents
``<file name>:<index>``. JSON lines: one object per document with ``id``, ``title``,
``source`` and ``sentences``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from corpus_pipeline import fsio
from corpus_pipeline.errors import InputFormatError, UserError
from corpus_pipeline.formats.base import ShardWriter
from corpus_pipeline.records import Document

DOC_FORMATS = ("text", "jsonl")
SUFFIX = {"text": ".txt", "jsonl": ".jsonl"}


def write_document(f: IO[str], doc: Document, fmt: str) -> None:
    """Append one document to an open text file in ``fmt``."""
    if fmt == "jsonl":
        f.write(
            json.dumps(
                {
                    "id": doc.id,
                    "title": doc.title,
                    "source": doc.source,
                    "sentences": doc.sentences,
                },
                ensure_ascii=False,
            )
        )
        f.write("\n")
    else:
        # Sentences never contain newlines (the splitter normalises whitespace); the blank
        # line after each document is the separator, as in Google's sample_text.txt.
        f.write("\n".join(doc.sentences))
        f.write("\n\n")


class DocumentWriter(ShardWriter):
    """Writes one documents file (text or JSON lines) that appears only once complete.

    Args:
        path: Final path, local or remote; a local folder must exist.
        fmt: ``text`` or ``jsonl``.
    """

    def __init__(self, path: str | Path, fmt: str) -> None:
        super().__init__()
        self.path = Path(path)
        self.fmt = fmt
        tmp = self._create(path)
        self._f = open(tmp, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in _finish

    def write(self, docs: Iterable[Document]) -> None:
        """Appends documents."""
        self._check_open()
        for doc in docs:
            write_document(self._f, doc, self.fmt)
            self.num_records += 1

    def _finish(self) -> None:
        self._f.close()

    def _release(self) -> None:
        self._f.close()


def write_documents(path: str | Path, docs: Iterable[Document], fmt: str) -> int:
    """Write documents atomically to ``path`` (local or remote); returns the number written."""
    with DocumentWriter(path, fmt) as w:
        w.write(docs)
    return w.num_records


def detect_format(path: str | Path) -> str:
    """``jsonl`` for ``.jsonl``/``.json`` files, else ``text``."""
    return "jsonl" if str(path).endswith((".jsonl", ".json")) else "text"


def read_documents(path: str | Path, fmt: str | None = None) -> Iterator[Document]:
    """Stream documents from a text or JSON-lines file.

    Text format: blank-line separated groups of lines; whitespace-only lines count as blank
    (blank lines inside a document would otherwise break it in two, bert issue #125).

    Raises:
        UserError: The file is missing.
        InputFormatError: A JSON line is malformed.
    """
    p = str(path)
    fs = fsio.filesystem(p)
    name = fs.basename(p)
    fmt = fmt or detect_format(p)
    if not fs.isfile(p):
        raise UserError(f"{p}: no such file: pass a documents file or folder from `extract`")
    with fs.open_text(p) as f:
        if fmt == "jsonl":
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj.get("sentences"), list) or not all(
                        isinstance(x, str) for x in obj["sentences"]
                    ):
                        raise TypeError("'sentences' must be a list of strings")
                    yield Document(
                        id=str(obj["id"]),
                        title=str(obj.get("title", "")),
                        source=str(obj.get("source", "")),
                        sentences=[str(s) for s in obj["sentences"]],
                    )
                except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
                    raise InputFormatError(
                        f"{p}:{lineno}: not a document JSON line ({e}): expected "
                        '{"id": ..., "sentences": [...]}'
                    ) from None
            return
        index = 0
        sentences: list[str] = []
        for line in f:
            s = line.strip()
            if s:
                sentences.append(s)
            elif sentences:
                yield Document(id=f"{name}:{index}", title="", source="text", sentences=sentences)
                index += 1
                sentences = []
        if sentences:
            yield Document(id=f"{name}:{index}", title="", source="text", sentences=sentences)


def list_document_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of document files (.txt/.jsonl).

    Raises:
        UserError: A path is missing, or no document file is found.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.is_file() and q.suffix in (".txt", ".jsonl") and not q.name.startswith(".")
            )
            if not found:
                raise UserError(f"{p}: no .txt or .jsonl document files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return files


def list_document_paths(inputs: Iterable[str | Path]) -> list[str]:
    """:func:`list_document_files` for local and remote (``s3://``, ``gs://``) inputs, as strings.

    Raises:
        UserError: A path is missing, or no document file is found.
    """
    paths: list[str] = []
    for item in inputs:
        s = str(item)
        if not fsio.is_remote(s):
            paths.extend(str(p) for p in list_document_files([s]))
            continue
        below = fsio.list_files(s)
        found = [
            p
            for p, _ in below
            if p.endswith((".txt", ".jsonl")) and not fsio.basename(p).startswith(".")
        ]
        if found:
            paths.extend(found)
        elif below:
            raise UserError(f"{s}: no .txt or .jsonl document files in this folder")
        elif fsio.isfile(s):
            paths.append(s)
        else:
            raise UserError(f"{s}: no such file or folder")
    return paths
