"""Every instance of a dataset sits in the shard ``records.shard_of`` names, packed or not."""

from __future__ import annotations

from corpus_pipeline.formats import registry
from corpus_pipeline.formats.manifest import read_manifest
from corpus_pipeline.records import shard_of
from tests.e2e.conftest import IN_PROCESS, run_cli


def _check(out, packed: bool) -> None:
    m = read_manifest(str(out))
    n = len(m["shards"])
    seen = 0
    for entry in m["shards"]:
        if registry.is_empty_shard(entry):
            continue
        i = entry["index"]
        records = registry.read_shard("hdf5", str(out), m["name"], i, packed)
        insts = list(registry.instances_of(records))
        assert insts and {shard_of(inst, n) for inst in insts} == {i}
        seen += len(insts)
    assert seen == m["totals"]["instances"]


def test_masked_dataset_follows_the_shard_rule(wiki_masked) -> None:
    _check(wiki_masked, packed=False)


def test_packed_dataset_keeps_the_shard_rule(wiki_masked, tmp_path) -> None:
    out = tmp_path / "packed"
    rc = run_cli("pack", "--input", wiki_masked, "--output", out, "--format", "hdf5", *IN_PROCESS)
    assert rc == 0
    _check(out, packed=True)
