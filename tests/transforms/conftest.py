"""Beam TestPipeline helpers: our PTransforms and DoFns on Beam's FnApiRunner, in-process.

Every test here builds its own small input, runs one graph (a second or two) and compares what
it wrote with what the pure stage functions give for the same input and seed.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline

from corpus_pipeline import resources
from corpus_pipeline.beam.counters import query_counters
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.stages.masking import MaskVocab
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked


def run_graph(build: Callable[[Any], None]) -> dict[str, int]:
    """Build a graph on a TestPipeline (FnApiRunner, in this process), run it to the end.

    ``util.assert_that`` checks added by ``build`` fail the run. Returns our counters.
    """
    p = TestPipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    build(p)
    result = p.run()
    result.wait_until_finish()
    return query_counters(result)


def save(obj: Any, path: str) -> None:
    """Hand a value computed in the graph to the test (the graph runs on pickled copies).

    Use as ``pcoll | beam.combiners.ToList() | beam.Map(save, path)``, then :func:`load`.
    """
    Path(path).write_bytes(pickle.dumps(obj))


def load(path: str | Path) -> Any:
    """What :func:`save` wrote."""
    return pickle.loads(Path(path).read_bytes())


class Tally:
    """A ``count(name, n)`` callback for calling pure stages directly."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(n)


@pytest.fixture(scope="session")
def uncased() -> tuple[VocabSpec, MaskVocab, int]:
    """The bundled uncased vocabulary as workers get it, its masking view and its size."""
    path = resources.default_vocab(False)
    tokens = load_vocab_checked(path)
    spec = VocabSpec.from_file(path, path.name, False, bundled="uncased")
    return spec, MaskVocab.from_tokens(tokens, source=str(path)), len(tokens)
