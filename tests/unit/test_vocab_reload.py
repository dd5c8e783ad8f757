"""A vocabulary is read once per process, and again when the file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corpus_pipeline.errors import UserError
from corpus_pipeline.stages.wordpiece_vocab import SPECIAL_TOKENS, load_vocab_with_sha256


def test_a_changed_vocabulary_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join([*SPECIAL_TOKENS, "a", "b"]) + "\n", encoding="utf-8")
    first, sha1 = load_vocab_with_sha256(path)
    first.append("mutated by a caller")  # a caller's list is its own
    again, sha2 = load_vocab_with_sha256(path)
    assert again == [*SPECIAL_TOKENS, "a", "b"] and sha1 == sha2
    path.write_text("\n".join([*SPECIAL_TOKENS, "c"]) + "\n", encoding="utf-8")
    changed, sha3 = load_vocab_with_sha256(path)
    assert changed == [*SPECIAL_TOKENS, "c"] and sha3 != sha1
    # A broken file is refused even when a good one of the same path was read before.
    path.write_text("\n".join(["a", "a", "b", "c"]) + "\n", encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    with pytest.raises(UserError, match="appears twice"):
        load_vocab_with_sha256(path)
