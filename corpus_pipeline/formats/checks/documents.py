"""``verify``'s check of a documents shard (``extract``): every document reads back
(``formats/documents.py``) and their number is the manifest's."""

from __future__ import annotations

from pathlib import Path

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.checks.common import CheckResult, line
from corpus_pipeline.formats.documents import read_documents


def check_document_shard(path: Path, fmt: str, documents: int, res: CheckResult) -> None:
    """Reads every document of one shard file; a count other than ``documents`` (the
    manifest's) or an unreadable document is a problem in ``res``."""
    try:
        n = sum(1 for _ in read_documents(path, fmt))
    except UserError as e:
        res.problems.append(line(path, str(e)))
        return
    res.records += n
    if n != documents:
        res.problems.append(line(path, f"{n} documents, the manifest says {documents}"))
