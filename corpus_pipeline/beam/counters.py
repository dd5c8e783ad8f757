"""Our Beam counters: the stages' ``count`` callback, reading them back after a run, and the
summary printed at its end."""

from __future__ import annotations

import threading
import time
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "corpus_pipeline"


class BeamCounts:
    """The ``count(name, n)`` callback of the stage abstraction, backed by Beam counters.

    Counters are created lazily and cached per name (stages name their outcomes freely).
    Where no Beam metrics container runs the DoFn (the Dask runner has none: its counters
    would be lost), counts go to a per-process table instead, which
    :func:`~corpus_pipeline.beam.runner.run_pipeline` collects from every Dask worker after the
    run (:func:`take_process_counts`).
    """

    def __init__(self) -> None:
        self._counters: dict[str, Any] = {}

    def __call__(self, name: str, n: int = 1) -> None:
        from apache_beam.metrics.execution import MetricsEnvironment

        if MetricsEnvironment.current_container() is None:
            with _PROCESS_COUNTS_LOCK:
                _PROCESS_COUNTS[name] = _PROCESS_COUNTS.get(name, 0) + n
            return
        c = self._counters.get(name)
        if c is None:
            c = beam.metrics.Metrics.counter(NAMESPACE, name)
            self._counters[name] = c
        c.inc(n)


_PROCESS_COUNTS: dict[str, int] = {}
_PROCESS_COUNTS_LOCK = threading.Lock()


def take_process_counts() -> dict[str, int]:
    """This process's counts made outside a Beam metrics container, and reset them."""
    with _PROCESS_COUNTS_LOCK:
        out = dict(_PROCESS_COUNTS)
        _PROCESS_COUNTS.clear()
    return out


def query_counters(result: Any) -> dict[str, int]:
    """Our namespace's counters from a PipelineResult (committed if the runner has them)."""
    counts: dict[str, int] = {}
    try:
        metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except (NotImplementedError, AttributeError):
        return counts
    for c in metrics.get("counters", []):
        value = c.committed if c.committed is not None else c.attempted
        counts[c.key.metric.name] = counts.get(c.key.metric.name, 0) + int(value or 0)
    return counts


def format_summary(title: str, counts: dict[str, int], elapsed: float | None = None) -> str:
    """A short, sorted summary of counters for the end of a run."""
    lines = [title + (f" ({elapsed:.1f} s)" if elapsed is not None else "")]
    width = max((len(k) for k in counts), default=0)
    for k in sorted(counts):
        lines.append(f"  {k:<{width}}  {counts[k]:>12,}")
    return "\n".join(lines)


class Timer:
    """Wall-clock timer for summaries."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
