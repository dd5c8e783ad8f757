"""A failure inside Beam workers ends with one ``error:`` line on stderr, not pages of
tracebacks: the workers' stderr and the launcher's Beam logs go to a log file, which the line
names when it helps (an unexpected exception), and which a successful run removes.

stderr is read at file-descriptor level from a child process, so what worker processes print
is included (an in-process ``redirect_stderr`` sees only the launcher's ``sys.stderr``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from corpus_pipeline import resources
from tests.faults.test_disk_full import tmpfs

FAILING_PIPELINE = textwrap.dedent(
    """
    import logging
    logging.basicConfig(level=logging.ERROR)  # as the CLI: no import-time warnings
    import apache_beam as beam
    from corpus_pipeline import tmpdirs
    from corpus_pipeline.beam.runner import run_pipeline
    from corpus_pipeline.cli import run_guarded

    def explode(x):
        if x == 7:
            raise ValueError("element 7 is cursed")
        return x

    def build(p):
        _ = p | beam.Create(list(range(20))) | beam.Reshuffle() | "Explode" >> beam.Map(explode)

    def verb():
        with tmpdirs.private_tmp():
            run_pipeline(build, 2)

    raise SystemExit(run_guarded(verb))
    """
)


def test_an_exception_in_a_worker_is_one_line_naming_a_log(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run(
        [sys.executable, "-c", FAILING_PIPELINE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    line = lines[0]
    assert line.startswith("error: the pipeline failed in step Explode: ValueError: ")
    assert "element 7 is cursed" in line
    m = re.search(r"tracebacks in (\S+\.log)$", line)
    assert m, line
    log = Path(m.group(1))
    assert log.parent == tmp_path  # outside the verb's private folder, which is gone
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "element 7 is cursed" in text
    leftovers = [n for n in os.listdir(tmp_path) if n != log.name]
    assert leftovers == [], leftovers


def test_disk_full_with_two_workers_is_one_line(tmp_path: Path) -> None:
    """The real 2 MB tmpfs, 2 worker processes: 146-311 stderr lines before this fix."""
    docs = tmp_path / "docs.txt"
    docs.write_text(resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8") * 30)
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "corpus_pipeline",
                "mask",
                "--input",
                str(docs),
                "--output",
                str(mnt / "out"),
                "--format",
                "all",
                "--shards",
                "2",
                "--dupe-factor",
                "5",
                "--workers",
                "2",
                "--no-space-check",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full"), p.stderr
