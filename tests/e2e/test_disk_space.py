"""The output-size estimate printed before a run, and the refusal when it does not fit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from corpus_pipeline import diskspace, resources
from corpus_pipeline.cli import main
from corpus_pipeline.config import PRESETS, MaskConfig
from corpus_pipeline.formats.documents import list_document_paths
from pipelines.mask_plan import estimated_instances, input_text_bytes
from tests.e2e.conftest import IN_PROCESS
from tests.faults.test_disk_full import tmpfs


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_the_estimate_bounds_what_mask_writes(wiki_docs: Path, wiki_masked: Path) -> None:
    """On the bundled excerpt (phase1, dupe 5, every format): the estimate is above what was
    written, and not absurdly so (within 2x: it includes the peak of temp files)."""
    cfg = MaskConfig(**PRESETS["phase1"], dupe_factor=5)
    text = input_text_bytes(list_document_paths([str(wiki_docs)]))
    need = diskspace.estimate_bytes(
        estimated_instances(text, cfg), cfg.max_seq_length, ["hdf5", "tfrecord", "mmap"]
    )
    written = _du(wiki_masked)
    assert written <= need <= 2 * written, (written, need)


def test_a_run_that_does_not_fit_is_refused_before_it_starts(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text(resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8") * 30)
    with tmpfs(tmp_path / "mnt", "512k") as mnt:
        out = mnt / "out"
        argv = ["mask", "--input", str(docs), "--output", str(out), "--format", "all"]
        argv += ["--dupe-factor", "5", *IN_PROCESS]
        # The refusal comes before any pipeline is built: main() in this process (fd 2 read).
        assert main(argv) == 2
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "--no-space-check" in lines[0], lines
        assert "free" in lines[0]
        assert not out.exists() or not any(out.rglob("*.hdf5"))
        # The flag goes ahead (and then meets the full disk: one line, exit 1), in a child
        # whose whole stderr (Beam's logging included) is read.
        cmd = [sys.executable, "-m", "corpus_pipeline", *argv, "--no-space-check"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert p.returncode == 1
        assert p.stdout.startswith("estimated output ")
        assert len(p.stderr.strip().splitlines()) == 1 and "disk full" in p.stderr
