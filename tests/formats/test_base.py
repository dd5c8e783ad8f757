"""formats/base.ShardWriter: files appear complete, in creation order, or not at all."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from corpus_pipeline.formats.base import ShardWriter


class TwoFiles(ShardWriter):
    """A toy writer: ``<stem>.data`` streamed through a HashingFile, ``<stem>.meta`` at close."""

    def __init__(self, folder: Path, stem: str, fail_finish: bool = False) -> None:
        super().__init__()
        self.path = folder / f"{stem}.data"
        self.meta = folder / f"{stem}.meta"
        self.fail_finish = fail_finish
        self._data = self._hashing(open(self._create(self.path), "wb"), self.path)  # noqa: SIM115

    def write(self, chunks: list[bytes]) -> None:
        self._check_open()
        for c in chunks:
            self._data.write(c)
            self.num_records += 1

    def _finish(self) -> None:
        if self.fail_finish:
            raise OSError(28, "No space left on device")
        self._create(self.meta).write_bytes(str(self.num_records).encode())


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_close_publishes_every_file_with_its_sha256(tmp_path: Path) -> None:
    with TwoFiles(tmp_path, "s") as w:
        w.write([b"ab", b"cd"])
        names = os.listdir(tmp_path)
        assert names and all(n.startswith(".s.data.tmp-") for n in names)  # temp names only
    assert (tmp_path / "s.data").read_bytes() == b"abcd"
    assert (tmp_path / "s.meta").read_bytes() == b"2"
    assert w.file_sha256 == {"s.data": sha(b"abcd"), "s.meta": sha(b"2")}
    assert w.sha256 == sha(b"abcd")
    assert sorted(os.listdir(tmp_path)) == ["s.data", "s.meta"]


def test_files_are_committed_in_creation_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    w = TwoFiles(tmp_path, "s")
    w.write([b"x"])
    w.close()
    # The file created last is the completion marker: it appears after the others.
    assert renamed == ["s.data", "s.meta"]


def test_an_exception_in_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), TwoFiles(tmp_path, "s") as w:
        w.write([b"ab"])
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="closed"):
        w.write([b"cd"])


def test_a_failed_close_names_the_shard_and_leaves_nothing(tmp_path: Path) -> None:
    w = TwoFiles(tmp_path, "s", fail_finish=True)
    w.write([b"ab"])
    with pytest.raises(OSError) as raised:
        w.close()
    assert raised.value.errno == 28
    assert raised.value.filename == str(tmp_path / "s.data")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="only after close"):
        _ = w.file_sha256
