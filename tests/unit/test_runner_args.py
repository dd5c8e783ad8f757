"""Where a run's work happens: in this process for one worker, worker processes for more."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions

from corpus_pipeline.beam.options import in_one_process, make_options, spread
from corpus_pipeline.commands.common import IN_PROCESS_MAX_BYTES, runner_args

IN_MEMORY = "--direct_running_mode=in_memory"


def _big(tmp_path: Path) -> str:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * IN_PROCESS_MAX_BYTES)
    return str(path)


def test_one_worker_runs_in_this_process(tmp_path: Path) -> None:
    workers, args = runner_args(1, [], [_big(tmp_path)])
    assert workers == 1 and IN_MEMORY in args


def test_more_workers_start_worker_processes(tmp_path: Path) -> None:
    workers, args = runner_args(2, [], [_big(tmp_path)])
    assert workers == 2 and IN_MEMORY not in args


def test_a_small_input_without_workers_runs_in_this_process(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("One line.\n", encoding="utf-8")
    assert IN_MEMORY in runner_args(None, [], [str(small)])[1]


def test_the_users_running_mode_is_kept(tmp_path: Path) -> None:
    mode = ["--direct_running_mode", "multi_processing"]
    workers, args = runner_args(1, mode, [_big(tmp_path)])
    assert workers == 1 and args == mode


def test_reshuffles_only_where_there_are_workers_to_spread_over(tmp_path: Path) -> None:
    """In one process the graph has no Reshuffle; with 2 workers it has one per spread."""

    def reshuffles(workers: int) -> int:
        n, args = runner_args(workers, [], [_big(tmp_path)])
        p = beam.Pipeline(options=make_options(n, args))
        assert in_one_process(p) == (workers == 1)
        assert p.options.view_as(DirectOptions).direct_num_workers == workers
        _ = spread(p | beam.Create([1, 2, 3], reshuffle=False), "Spread") | beam.Map(str)
        labels: list[str] = []

        class Visitor(beam.pipeline.PipelineVisitor):  # type: ignore[misc]
            def enter_composite_transform(self, node: object) -> None:
                labels.append(node.full_label)  # type: ignore[attr-defined]

        p.visit(Visitor())
        return sum(1 for label in labels if label.endswith("Spread"))

    assert reshuffles(1) == 0
    assert reshuffles(2) == 1
