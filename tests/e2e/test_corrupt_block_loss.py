"""A bz2 block that does not decode, in a single-stream dump: one block lost, not the dump.

A single-stream dump is read by bz2 blocks (``sources/wikipedia_shares.py``). A corrupt block
costs the pages in it (nobody can count them) and the page it cuts; the loss report counts
the block among the blocks read, estimates its pages from the others, and fails only when
that share is over ``--max-loss``: on a 100 GB dump (~100,000 blocks) one bad block is a
trace (counted and shown), not a failed run; on a small dump it is most of a percent.
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.sources import bz2_blocks
from corpus_pipeline.testing.multistream import read_dump_bytes
from tests.e2e.conftest import IN_PROCESS, run_cli

#: The excerpt's pages: read in full from an intact dump (counter extract/read:pages).
PAGES = 206


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The excerpt at bz2 level 1 (100 kB blocks), one block in the middle garbled; and the
    number of blocks."""
    folder = tmp_path_factory.mktemp("corrupt-block")
    data = bytearray(bz2.compress(read_dump_bytes(resources.SAMPLE_WIKI_DUMP), 1))
    path = folder / "enwiki-excerpt.xml.bz2"
    path.write_bytes(data)
    with open(path, "rb") as f:
        blocks = list(bz2_blocks.BlockReader(f, 0))
    k = len(blocks) // 2
    lo, hi = blocks[k].offset // 8, blocks[k + 1].offset // 8
    mid = (lo + hi) // 2
    data[mid : mid + 16] = bytes(b ^ 0x5A for b in data[mid : mid + 16])
    path.write_bytes(data)
    return path, len(blocks)


def test_one_corrupt_block_is_counted_as_a_block_and_its_pages_estimated(
    tmp_path: Path, dump: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, blocks = dump
    out = tmp_path / "out"
    # 1 of ~60 blocks is over the default 0.1%: exit 1, the shards written all the same.
    assert run_cli("extract", "--input", path, "--output", out, *IN_PROCESS) == 1
    err = capsys.readouterr().err
    assert f"1 of {blocks} bz2 blocks do not decode" in err
    loss = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["loss"]
    assert loss["blocks_read"] == blocks and loss["blocks_damaged"] == 1
    assert loss["share_of"] == "bz2 blocks" and loss["share"] == pytest.approx(1 / blocks)
    # The stream is not counted lost: the pages of every other block were read.
    assert loss["streams_damaged"] == 0
    assert loss["pages_dropped_by_reason"] == {"corrupt_block": 1}
    missing = PAGES - loss["pages_read"]
    assert missing >= 1
    # The estimate (pages per intact block) is the right size: within 3x of what is missing.
    assert missing / 3 <= loss["pages_lost_estimate"] <= 3 * missing


def test_under_max_loss_the_run_succeeds_and_says_what_was_lost(
    tmp_path: Path, dump: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, blocks = dump
    out = tmp_path / "out"
    args = ["extract", "--input", path, "--output", out, "--max-loss", "0.05", *IN_PROCESS]
    assert run_cli(*args) == 0
    printed = capsys.readouterr()
    assert f"1 of {blocks} bz2 blocks do not decode" in printed.out + printed.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counters"]["extract/dropped:corrupt_block"] == 1
    assert manifest["documents"] > 0


def test_inspect_shows_what_damage_in_the_dump_cost_the_dataset(
    tmp_path: Path, dump: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``inspect`` of a dataset reads the loss of the documents it was made from."""
    path, blocks = dump
    out = tmp_path / "run"
    args = ["run", "--input", path, "--output", out, "--max-loss", "0.05", "--format", "hdf5"]
    assert run_cli(*args, "--dupe-factor", "1", *IN_PROCESS) == 0
    capsys.readouterr()
    assert run_cli("inspect", out / "unpacked", "--no-report", "--show", "0") == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("input loss")]
    assert len(lines) == 1 and str(out / "docs") in lines[0]
    assert f"1 of {blocks} bz2 blocks do not decode" in lines[0]
    assert run_cli("inspect", out / "unpacked", "--no-report", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    (loss,) = doc["input_loss"].values()
    assert loss["blocks_damaged"] == 1 and loss["blocks_read"] == blocks
