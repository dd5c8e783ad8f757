"""Private temp folders: a killed run's is removed by the next verb, a live run's is kept."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from corpus_pipeline import tmpdirs


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_dead_runs_of_this_host_only(tmp_path: Path) -> None:
    host = tmpdirs._host()
    dead = tmp_path / f"{tmpdirs.PREFIX}{host}-{dead_pid()}-abc"
    live = tmp_path / f"{tmpdirs.PREFIX}{host}-{os.getpid()}-abc"
    other_host = tmp_path / f"{tmpdirs.PREFIX}{host}x-{dead_pid()}-abc"
    unrelated = tmp_path / "beam-pipeline-temp123"
    for d in (dead, live, other_host, unrelated):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_text("x")
    assert tmpdirs.sweep(str(tmp_path)) == [str(dead)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        d.name for d in (live, other_host, unrelated)
    )


def test_private_tmp_is_used_and_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with tmpdirs.private_tmp() as d:
        assert os.environ["TMPDIR"] == d == tempfile.gettempdir()
        assert Path(d).parent == tmp_path
        Path(tempfile.mkdtemp()).joinpath("f").write_text("x")  # lands inside d
    assert os.environ["TMPDIR"] == str(tmp_path) and tempfile.gettempdir() == str(tmp_path)
    assert list(tmp_path.iterdir()) == []
