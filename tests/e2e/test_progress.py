"""Progress bars you can trust: a total known at planning, an ETA, never past 100%."""

from __future__ import annotations

import re

from corpus_pipeline import resources
from tests.e2e.conftest import IN_PROCESS
from tests.support.terminal import bar_frames, on_a_terminal, percentages


def test_single_stream_extract_bar_counts_bytes_and_ends_at_its_total(tmp_path):
    """The bundled dump is single-stream: one task read in 11 chunks of 10 pages. Counted
    per task, its bar would show 1100%; counted in bytes it ends exactly at the dump's size.

    In this process's runner (``in_memory``): the ticks are the same; ticks from worker
    processes are the run bar's test below."""
    rc, _, err = on_a_terminal(
        "extract",
        "--input",
        resources.SAMPLE_WIKI_DUMP,
        "--output",
        tmp_path / "docs",
        "--pages-per-chunk",
        "10",
        *IN_PROCESS,
    )
    assert rc == 0, err
    frames = bar_frames(err, "extract")
    shown = percentages(frames)
    assert shown and max(shown) == 100 == shown[-1], frames
    done, total = re.search(r"\| ([\d.]+[kMG]?)/([\d.]+[kMG]?) ", frames[-1]).groups()
    assert done == total == "1.62M"  # the dump's 1.6 MiB


def test_run_bar_has_a_total_and_an_eta(tmp_path):
    """Ticks from 2 worker processes; the first 30 documents (``--max-docs``) are enough."""
    rc, _, err = on_a_terminal(
        "run",
        "--input",
        resources.SAMPLE_WIKI_DUMP,
        "--books",
        resources.SAMPLE_BOOKS_DIR,
        "--output",
        tmp_path / "out",
        "--format",
        "hdf5",
        "--pack",
        "--dupe-factor",
        "1",
        "--validation-docs",
        "3",
        "--max-docs",
        "30",
        "--workers",
        "2",
    )
    assert rc == 0, err
    frames = bar_frames(err, "run")
    shown = percentages(frames)
    assert shown == sorted(shown) and shown[-1] == 100, frames
    assert all(re.search(r"\[\d\d:\d\d<(\?|\d\d:\d\d)\]$", f) for f in frames), frames
