"""End-to-end fixtures: run the real CLI (real Beam pipelines) once per session."""

from __future__ import annotations

import pytest

from corpus_pipeline import resources
from corpus_pipeline.cli import main


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="session")
def wiki_docs(tmp_path_factory):
    """The bundled Wikipedia excerpt extracted into 2 text shards (2 workers)."""
    out = tmp_path_factory.mktemp("wiki_docs")
    rc = run_cli(
        "extract",
        "--input",
        resources.SAMPLE_WIKI_DUMP,
        "--output",
        out,
        "--shards",
        "2",
        "--workers",
        "2",
    )
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def wiki_masked(tmp_path_factory, wiki_docs):
    """Phase-1 masking of the excerpt, dupe factor 5, every format, 2 workers."""
    out = tmp_path_factory.mktemp("wiki_masked")
    rc = run_cli(
        "mask",
        "--input",
        wiki_docs,
        "--output",
        out,
        "--preset",
        "phase1",
        "--dupe-factor",
        "5",
        "--seed",
        "12345",
        "--format",
        "all",
        "--shards",
        "3",
        "--workers",
        "2",
    )
    assert rc == 0
    return out
