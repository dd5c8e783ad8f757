"""NSP negatives do not depend on how documents are sharded.

Negative-sampling buckets span every document file (``beam/mask.py``): ``run`` with 1, 8 or
many document shards, and ``extract`` + ``mask``, give the same instances, with Google's
random-next share (~50%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corpus_pipeline import resources
from corpus_pipeline.formats.manifest import read_manifest
from corpus_pipeline.inspect_data import open_dataset
from tests.e2e.conftest import IN_PROCESS, run_cli

COMMON = ["--preset", "phase1", "--dupe-factor", "1", "--seed", "7", "--format", "tfrecord"]
BUNDLED = ["--input", str(resources.SAMPLE_WIKI_DUMP), "--books", str(resources.SAMPLE_BOOKS_DIR)]
# NVIDIA's create_pretraining_data.py on the bundled excerpt: 0.519 (README, `mask`).
GOOGLE_BAND = (0.45, 0.60)


def instances(out: Path) -> list[tuple[bytes, ...]]:
    """Every instance of a dataset folder, in a canonical order."""
    rows = []
    for r in open_dataset(out).view("tfrecord").records():
        rows.append(
            tuple(
                np.asarray(a, np.int64).tobytes()
                for a in (r.input_ids, r.segment_ids, r.masked_lm_positions, r.masked_lm_ids)
            )
            + (bytes([int(r.next_sentence_label)]),)
        )
    return sorted(rows)


def run_bundled(out: Path, doc_shards: int, shards: int, *extra: str) -> Path:
    rc = run_cli(
        "run", *BUNDLED, *COMMON, "--doc-shards", doc_shards, "--shards", shards,
        "--output", out, *extra,
    )  # fmt: skip
    assert rc == 0
    return out / "unpacked"


@pytest.fixture(scope="module")
def one_doc_shard(tmp_path_factory):
    return run_bundled(tmp_path_factory.mktemp("ds1"), 1, 2, *IN_PROCESS)


@pytest.mark.parametrize(
    "doc_shards, shards, extra",
    [
        # 64 document shards: most files hold 0 to 3 documents (buckets confined to one file
        # would give few negatives); buckets spanning files are also checked on a TestPipeline
        # (tests/transforms/test_mask.py), worker counts by test_mask_cli.py.
        (64, 5, IN_PROCESS),
        pytest.param(8, 3, ("--workers", "2"), marks=pytest.mark.soak),
    ],
    ids=["64-doc-shards", "8-doc-shards-2-workers"],
)
def test_doc_shards_do_not_change_the_instances(tmp_path, one_doc_shard, doc_shards, shards, extra):
    m = read_manifest(str(one_doc_shard))
    rn = m["statistics"]["random_next_fraction"]
    assert GOOGLE_BAND[0] < rn < GOOGLE_BAND[1], rn
    assert m["warnings"] == []  # the bundled data is healthy
    expected = instances(one_doc_shard)
    assert len(expected) == m["totals"]["instances"] > 1000
    # Another number of document shards, with another number of output shards.
    out = run_bundled(tmp_path / f"ds{doc_shards}", doc_shards, shards, *extra)
    m2 = read_manifest(str(out))
    assert m2["statistics"]["random_next_fraction"] == rn
    assert m2["counters"].get("mask/fallback:no_negative_available", 0) == 0
    assert instances(out) == expected, doc_shards


def test_extract_then_mask_equals_run(tmp_path, one_doc_shard):
    docs = tmp_path / "docs"
    rc = run_cli(
        "extract", "--input", resources.SAMPLE_WIKI_DUMP, "--books", resources.SAMPLE_BOOKS_DIR,
        "--output", docs, "--shards", "5", *IN_PROCESS,
    )  # fmt: skip
    assert rc == 0
    out = tmp_path / "masked"
    rc = run_cli("mask", "--input", docs, "--output", out, *COMMON, "--shards", "2", *IN_PROCESS)
    assert rc == 0
    assert instances(out) == instances(one_doc_shard)


def test_books_only_run_has_random_next_with_two_books(tmp_path):
    lines = resources.SAMPLE_BOOKS_DIR.joinpath("sherlock.txt").read_text("utf-8").splitlines()
    books = tmp_path / "books"
    books.mkdir()
    half = len(lines) // 2
    (books / "first.txt").write_text("\n".join(lines[:half]) + "\n", "utf-8")
    (books / "second.txt").write_text("\n".join(lines[half:]) + "\n", "utf-8")
    out = tmp_path / "out"
    rc = run_cli(
        "run", "--books", books, *COMMON, "--doc-shards", "2", "--shards", "2",
        "--output", out, "--name", "books", *IN_PROCESS,
    )  # fmt: skip
    assert rc == 0
    m = read_manifest(str(out / "unpacked"))
    assert m["counters"]["mask/passed"] == 2
    rn = m["statistics"]["random_next_fraction"]
    assert GOOGLE_BAND[0] < rn < GOOGLE_BAND[1], rn
    assert m["warnings"] == []
