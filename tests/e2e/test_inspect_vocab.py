"""``inspect`` finds a dataset's own (trained) vocabulary without ``--vocab``."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus_pipeline import resources
from tests.e2e.conftest import IN_PROCESS, run_cli


def test_a_trained_vocabulary_beside_the_dataset_is_found_by_its_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mask --vocab out/my-vocab.txt --output out/ds``: ``inspect out/ds/unpacked`` decodes
    with out/my-vocab.txt (its sha256 is the manifest's), not the bundled one."""
    out = tmp_path / "out"
    out.mkdir()
    vocab = out / "my-vocab.txt"
    tokens = resources.default_vocab(False).read_text(encoding="utf-8").splitlines()
    vocab.write_text("\n".join([*tokens, "zzzyyyxxx"]) + "\n", encoding="utf-8")
    books = tmp_path / "books"
    books.mkdir()
    text = resources.SAMPLE_BOOK.read_text(encoding="utf-8-sig")
    (books / "book.txt").write_text(text[:20000], encoding="utf-8")
    args = ["run", "--books", books, "--output", out / "ds", "--vocab", vocab]
    assert run_cli(*args, "--format", "hdf5", "--dupe-factor", "1", *IN_PROCESS) == 0
    capsys.readouterr()
    assert run_cli("inspect", out / "ds" / "unpacked", "--no-report", "--show", "0") == 0
    captured = capsys.readouterr()
    assert f"vocabulary {vocab}" in captured.out
    assert "sha256 differs" not in captured.err
    # Another file of that name (a different vocabulary) is not taken for it.
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    assert run_cli("inspect", out / "ds" / "unpacked", "--no-report", "--show", "0") == 0
    captured = capsys.readouterr()
    assert f"vocabulary {vocab}" not in captured.out
    assert "sha256 differs" in captured.err
