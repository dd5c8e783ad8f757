"""Shard writing and packing DoFns on a TestPipeline: ``WriteShardFromSpills`` (the end of
``MaskToShards``, unpacked and packed datasets from one read of the spills) and
``PackShardFromDataset`` (``pack``).

Instances come from the bundled sample text (``testing.datasets.make_instances``). What is
read back from every format must equal the pure functions' output: ``order_instances`` for
an unpacked shard, ``pack_instances`` of that order for a packed one.
"""

from __future__ import annotations

import os
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.beam.shards import (
    RESUMED,
    PackShardFromDataset,
    ShardSpec,
    WriteShardFromSpills,
    order_instances,
    prepare_output,
)
from corpus_pipeline.config import PackConfig
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.spill import write_spill
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.stages.packing import pack_instances
from corpus_pipeline.testing.datasets import build_dataset, make_instances
from tests.transforms.conftest import Tally, run_graph

S, P, SEED = 128, 20, 3
FORMATS = ("hdf5", "tfrecord", "mmap")
PACK = PackConfig(max_per_pack=3, seed=SEED)


def packed(instances: list[Instance]) -> list[Pack]:
    return list(pack_instances(instances, PACK, S, P, count=Tally()))


def read(out: Path, fmt: str, index: int, is_packed: bool) -> list:
    return list(registry.read_shard(fmt, str(out), "t", index, is_packed))


def summaries(pcoll) -> object:
    """``(folder, manifest entry)`` -> ``(folder name, index, instances, records)``."""
    return pcoll | beam.MapTuple(
        lambda d, s: (os.path.basename(d), s["index"], s["instances"], s["records"])
    )


@pytest.fixture(scope="module")
def spilled(tmp_path_factory: pytest.TempPathFactory):
    """Two shards of instances spilled in two ranges each (in two files), and an empty shard."""
    data = make_instances(num_shards=2, seed=SEED)
    work = tmp_path_factory.mktemp("spills")
    elements: list[tuple[int, list]] = [(2, [None])]  # a shard no instance went to
    for index, shard in enumerate(data.shards):
        half = len(shard) // 2
        ranges = [
            write_spill(str(work / f"s{index}-{part}.spill"), (index, part), {index: chunk})[index]
            for part, chunk in enumerate((shard[:half], shard[half:]))
        ]
        elements.append((index, [None, *reversed(ranges)]))  # order of arrival is no matter
    return data.shards, elements


def specs(root: Path, fingerprint: str = "fp") -> list[ShardSpec]:
    out = []
    for name, pack in (("unpacked", None), ("packed", PACK)):
        prepare_output(str(root / name), FORMATS)
        out.append(ShardSpec(str(root / name), "t", FORMATS, S, P, 30522, SEED, pack, fingerprint))
    return out


def write(root: Path, elements, fingerprint: str = "fp", expect=None) -> dict[str, int]:
    spec_list = specs(root, fingerprint)

    def build(p: beam.Pipeline) -> None:
        written = (
            p
            | beam.Create(elements, reshuffle=False)
            | beam.ParDo(WriteShardFromSpills(spec_list, Progress(None)))
        )
        if expect is not None:
            assert_that(summaries(written), equal_to(expect))

    return run_graph(build)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, spilled):
    shards, elements = spilled
    root = tmp_path_factory.mktemp("written")
    expect = []
    for i, shard in enumerate([*shards, []]):
        expect.append(("unpacked", i, len(shard), len(shard)))
        expect.append(("packed", i, len(shard), len(packed(order_instances(list(shard), SEED, i)))))
    counts = write(root, elements, expect=expect)
    return root, counts


def test_unpacked_shards_are_the_seeded_order_in_every_format(written, spilled) -> None:
    root, counts = written
    shards, _ = spilled
    for i, shard in enumerate(shards):
        want = order_instances(list(shard), SEED, i)
        for fmt in FORMATS:
            assert read(root / "unpacked", fmt, i, False) == want, (fmt, i)
    assert counts["write/shards"] == 2 * 3  # two datasets of three shards


def test_packed_shards_are_pack_instances_of_that_order(written, spilled) -> None:
    root, _ = written
    shards, _ = spilled
    for i, shard in enumerate(shards):
        want = packed(order_instances(list(shard), SEED, i))
        assert any(len(p.instances) > 1 for p in want), "the sample should pack"
        for fmt in FORMATS:
            assert read(root / "packed", fmt, i, True) == want, (fmt, i)


def test_an_empty_shard_has_no_files_but_a_marker(written) -> None:
    root, _ = written
    for name in ("unpacked", "packed"):
        files = {p.name for p in (root / name).rglob("*") if p.is_file()}
        assert not any("00002" in f for f in files if not f.endswith(".json")), files
        assert (root / name / ".markers" / f"{registry.shard_stem('t', 2)}.json").is_file()


def test_a_rerun_keeps_finished_shards_and_another_fingerprint_redoes_them(
    tmp_path: Path, spilled
) -> None:
    shards, elements = spilled
    root = tmp_path / "again"
    first = write(root, elements)
    files = [p for p in root.rglob("*") if p.is_file() and ".markers" not in p.parts]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    kept = write(root, elements)
    assert kept.get(RESUMED) == 2 * 3
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    # A resumed shard counts what its first run counted: the same counters, plus RESUMED.
    assert {k: v for k, v in kept.items() if k != RESUMED} == first
    redone = write(root, elements, fingerprint="another configuration")
    assert RESUMED not in redone
    assert redone == first
    assert read(root / "unpacked", "tfrecord", 0, False) == order_instances(
        list(shards[0]), SEED, 0
    )


def test_pack_shard_from_dataset(tmp_path: Path) -> None:
    src = tmp_path / "src"
    manifest = build_dataset(src, formats=("hdf5",), seed=SEED, num_shards=2, name="t")
    out = tmp_path / "packed"
    prepare_output(str(out), FORMATS)
    spec = ShardSpec(str(out), "t", FORMATS, S, P, 30522, SEED, PACK, "fp")
    sources = [read(src, "hdf5", i, False) for i in range(2)]
    expect = [
        (i, len(s), len(packed(order_instances(list(s), SEED, i)))) for i, s in enumerate(sources)
    ]

    def build(p: beam.Pipeline) -> None:
        got = (
            p
            | beam.Create([0, 1, 2], reshuffle=False)
            | beam.ParDo(
                PackShardFromDataset(spec, str(src), "t", "hdf5", Progress(None), frozenset({2}))
            )
            | beam.Map(lambda s: (s["index"], s["instances"], s["records"]))
        )
        assert_that(got, equal_to([*expect, (2, 0, 0)]))

    counts = run_graph(build)
    assert counts["pack/read_instances"] == manifest["totals"]["instances"]
    for i, s in enumerate(sources):
        want = packed(order_instances(list(s), SEED, i))
        for fmt in FORMATS:
            assert read(out, fmt, i, True) == want, (fmt, i)
