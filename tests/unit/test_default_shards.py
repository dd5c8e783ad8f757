"""The default shard count grows with the input, so a shard writer's memory does not."""

from __future__ import annotations

from pathlib import Path

from corpus_pipeline import resources
from corpus_pipeline.config import PRESETS, MaskConfig
from pipelines.mask_plan import (
    SHARD_TARGET_INSTANCES,
    default_shards,
    input_text_bytes,
)


def test_small_inputs_keep_four_shards() -> None:
    cfg = MaskConfig(**PRESETS["phase1"], dupe_factor=5)
    text = input_text_bytes([str(resources.SAMPLE_WIKI_DUMP), str(resources.SAMPLE_BOOKS_DIR)])
    # The excerpt holds ~2.6 MB of article text, the book ~0.56 MB.
    assert 2_500_000 < text < 4_500_000
    assert default_shards(text, cfg) == 4


def test_a_large_input_gets_shards_of_bounded_size(tmp_path: Path) -> None:
    """bench/scale.py's 1 GB of XML (286 MB of bz2) gave 5.0M phase1 instances; with the
    default it is cut into shards of about the target size, for phase1 and phase2 alike."""
    dump = tmp_path / "enwiki-pages-articles-multistream.xml.bz2"
    with open(dump, "wb") as f:
        f.truncate(286 * 2**20)  # sparse: only the size is read
    text = input_text_bytes([str(dump)])
    phase1 = MaskConfig(**PRESETS["phase1"], dupe_factor=5)
    n = default_shards(text, phase1)
    assert 5_037_128 / n < 1.5 * SHARD_TARGET_INSTANCES and n >= 16
    phase2 = MaskConfig(**PRESETS["phase2"], dupe_factor=5)
    assert default_shards(text, phase2) < n  # 4x fewer instances, each 4x larger
    assert default_shards(text, phase1) == n  # same input, same count
