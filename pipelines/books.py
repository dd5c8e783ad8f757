"""Book folders -> pretraining shards: ``pipelines.pretraining`` without dumps."""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam

from pipelines import pretraining


def build(
    p: beam.Pipeline,
    cfg: pretraining.PipelineConfig,
    built: pretraining._Built,
    progress: pretraining.Progress,
) -> None:
    """The whole graph for books only."""
    if cfg.dumps:
        raise ValueError("pipelines.books takes no dumps: use pipelines.pretraining")
    pretraining.build(p, cfg, built, progress)


def main(argv: Sequence[str] | None = None) -> int:
    return pretraining.main(argv, wiki=False)


if __name__ == "__main__":
    raise SystemExit(main())
