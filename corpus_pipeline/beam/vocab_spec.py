"""How the masking DoFns get their WordPiece vocabulary on a worker (``VocabSpec``)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from corpus_pipeline import resources
from corpus_pipeline.errors import UserError


@dataclass(frozen=True)
class VocabSpec:
    """How workers rebuild the encoder, with nothing from the launcher's disk.

    A bundled vocabulary (``bundled`` = ``"uncased"`` or ``"cased"``) is read from the
    worker's own installed package; any other vocabulary travels as its bytes (~230 kB for
    BERT's) inside the DoFns. Either way the worker checks the sha256 of what it loaded, so a
    worker with another corpus-pipeline version fails in one line instead of encoding with
    other ids. No path of the launcher ever reaches a worker (a Dataflow container has none
    of them).
    """

    name: str  # the file's name, for messages and the manifest
    cased: bool
    sha256: str
    bundled: str | None = None
    content: bytes | None = field(default=None, repr=False)
    strip_accents: bool | None = None  # None: BERT's rule (strip when uncased)

    @classmethod
    def from_file(
        cls,
        local: str | os.PathLike[str],
        name: str,
        cased: bool,
        bundled: str | None = None,
        strip_accents: bool | None = None,
    ) -> VocabSpec:
        """The spec of a vocabulary read on the launcher from ``local`` (a local copy)."""
        data = Path(local).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if bundled is not None:
            return cls(name, cased, digest, bundled=bundled, strip_accents=strip_accents)
        return cls(name, cased, digest, content=data, strip_accents=strip_accents)

    def local_path(self) -> str:
        """A file with this vocabulary on this machine (a worker's), its sha256 checked."""
        cached = _VOCAB_FILES.get(self.sha256)
        if cached is not None and os.path.isfile(cached):
            return cached
        if self.bundled is not None:
            path = str(resources.default_vocab(self.bundled == "cased"))
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise UserError(
                    f"{path}: bundled vocabulary unreadable on this worker ({e.strerror}): "
                    "reinstall corpus-pipeline on the workers"
                ) from None
        else:
            assert self.content is not None
            data = self.content
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise UserError(
                f"vocabulary {self.name}: sha256 {digest[:12]} on this worker, "
                f"{self.sha256[:12]} on the launcher: install the same corpus-pipeline "
                "version on the workers as on the launcher"
            )
        if self.bundled is None:
            # The encoder reads a file: one private copy per worker process and vocabulary.
            fd, path = tempfile.mkstemp(prefix="corpus-pipeline-vocab-", suffix=".txt")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        _VOCAB_FILES[self.sha256] = path
        return path


#: Vocabulary files this process has checked, by sha256 (see ``VocabSpec.local_path``).
_VOCAB_FILES: dict[str, str] = {}


__all__ = ["VocabSpec"]
