"""A failed command leaves no empty output folder behind, and never removes one that existed
before or that holds something of value (``outdir.py``: ``releasing``)."""

from __future__ import annotations

from pathlib import Path

from corpus_pipeline import outdir
from tests.e2e.conftest import IN_PROCESS, run_cli


def _not_a_dump(tmp_path: Path) -> Path:
    """An existing file that passes the flag checks; the dump reader refuses it only when the
    pipeline is planned, after the output folder was claimed."""
    bad = tmp_path / "in" / "notadump.xml"
    bad.parent.mkdir()
    bad.write_text("hello, this is not XML\n", encoding="utf-8")
    return bad


def test_failed_run_removes_the_folders_it_created(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "out"
    rc = run_cli("run", "--input", _not_a_dump(tmp_path), "--output", out, *IN_PROCESS)
    assert rc == 2
    assert "not an XML file" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # out and the parents it created are gone


def test_failed_run_keeps_a_folder_that_existed(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    rc = run_cli("run", "--input", _not_a_dump(tmp_path), "--output", out, *IN_PROCESS)
    assert rc == 2
    assert out.is_dir()
    # The run's own leftovers are not cleaned here: a rerun resumes or refuses as before.
    assert (out / outdir.STATE).is_file()


def test_failed_mask_keeps_what_it_wrote(tmp_path, capsys):
    """No instance at all is an error found after the shards and the manifest were written:
    that folder holds files of value (and a rerun redoes it), so it stays."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "d_00000.txt").write_text("\n\n\n", encoding="utf-8")
    out = tmp_path / "new" / "out"
    rc = run_cli("mask", "--input", docs, "--output", out, *IN_PROCESS, "--shards", "1")
    assert rc == 2
    assert "no instances were produced" in capsys.readouterr().err
    assert (out / "manifest.json").is_file()
    assert not (out / outdir.LOCK).exists()  # released all the same
