"""Wikipedia dump(s) -> pretraining shards: ``pipelines.pretraining`` without books."""

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
    """The whole graph for dumps only."""
    if cfg.books:
        raise ValueError("pipelines.wiki takes no books: use pipelines.pretraining")
    pretraining.build(p, cfg, built, progress)


def main(argv: Sequence[str] | None = None) -> int:
    return pretraining.main(argv, books=False)


if __name__ == "__main__":
    raise SystemExit(main())
