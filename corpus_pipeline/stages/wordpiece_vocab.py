"""WordPiece vocabulary files: one token per line, the line number being the id.

Read as the Rust ``WordPiece.read_file`` reads them (trailing whitespace trimmed), and checked
so that a bad file is one clear error naming it instead of wrong ids later.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from corpus_pipeline.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Tokens every vocabulary must have (BERT's names)."""

#: The last vocabulary read in this process: (path, size, mtime), its tokens, its sha256.
_LOADED: tuple[tuple[str, int, int], tuple[str, ...], str] | None = None


def load_vocab_checked(path: str | Path) -> list[str]:
    """Read a WordPiece vocabulary (one token per line; the line number is the id).

    See :func:`load_vocab_with_sha256`, which also gives the sha256 of the bytes read.
    """
    return load_vocab_with_sha256(path)[0]


def load_vocab_with_sha256(path: str | Path) -> tuple[list[str], str]:
    """Read a WordPiece vocabulary and the sha256 of the very bytes its tokens came from.

    One read: a caller that records the digest (the tokenizer, to check that workers load
    the launcher's vocabulary) hashes what it parsed, not a second read of the file.

    Lines are read as the Rust ``WordPiece.read_file`` reads them (trailing whitespace trimmed).

    Args:
        path: The vocabulary file.

    Returns:
        The tokens, indexed by id, and the file's sha256 (hex).

    Raises:
        UserError: The file is missing, unreadable, not UTF-8 or empty, a token appears twice
            (ids would be ambiguous), or one of ``SPECIAL_TOKENS`` is missing.
    """
    global _LOADED
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: vocabulary file not found: pass --vocab with a WordPiece vocab.txt")
    try:
        st = p.stat()
        # The launcher, the in-process runner and each DoFn of a run read the same file: once
        # per process, again only when the file changed (size or modification time).
        stamp = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if _LOADED is not None and _LOADED[0] == stamp:
            return list(_LOADED[1]), _LOADED[2]
        data = p.read_bytes()
        text = data.decode("utf-8")
    except OSError as e:
        raise UserError(f"{p}: cannot read vocabulary ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: vocabulary is not UTF-8 text (byte {e.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [line.rstrip() for line in lines]
    if not any(tokens):
        raise UserError(f"{p}: vocabulary file is empty: expected one WordPiece token per line")
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in seen:
            raise UserError(
                f"{p}: token {tok!r} appears twice (lines {seen[tok] + 1} and {i + 1}): "
                "a vocabulary needs unique tokens"
            )
        seen[tok] = i
    missing = [t for t in SPECIAL_TOKENS if t not in seen]
    if missing:
        raise UserError(
            f"{p}: vocabulary lacks the special token(s) {' '.join(missing)}: "
            "a BERT vocabulary needs [PAD] [UNK] [CLS] [SEP] [MASK]"
        )
    digest = hashlib.sha256(data).hexdigest()
    _LOADED = (stamp, tuple(tokens), digest)
    return tokens, digest


__all__ = ["SPECIAL_TOKENS", "load_vocab_checked", "load_vocab_with_sha256"]
