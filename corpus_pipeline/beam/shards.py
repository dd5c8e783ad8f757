"""Writing a dataset's shards: one DoFn per shard, every requested format, resumable.

A shard's instances arrive as spill ranges (see ``formats/spill.py``) or are read from an
existing dataset (``pack``). The writer orders them deterministically (a seeded permutation
of the shard's instances, which are first put in key order), optionally packs them, and writes
each format to temp names renamed (or uploaded, for a remote dataset) on success. A completion marker
``.markers/<name>_<i>.json`` holding the shard's summary is written last: a rerun finds it,
checks the files are still there and that the marker's fingerprint is the run's (see
``corpus_pipeline/outdir.py``: a run of another configuration never keeps a shard), and does
not redo the shard. The marker also keeps the counters the shard's work incremented, and a
rerun that keeps the shard counts them again, so
a resumed run's manifest has the same counters as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from corpus_pipeline import fsio
from corpus_pipeline.beam.counters import BeamCounts
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.config import PackConfig
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.spill import SpillRange, iter_spills
from corpus_pipeline.hashing import rng_for
from corpus_pipeline.records import Instance, Pack

WRITE_BATCH = 1024
# Shards a rerun kept from a killed run: printed in the run's summary, never in a manifest
# (a resumed run's manifest equals an uninterrupted run's).
RESUMED = "write/shards_already_done"


@dataclass(frozen=True)
class ShardSpec:
    """What every shard of a dataset looks like."""

    out_dir: str
    name: str
    formats: tuple[str, ...]
    max_seq_length: int
    max_predictions: int
    vocab_size: int
    seed: int
    pack: PackConfig | None = None
    # sha256 of what produced the dataset (outdir.fingerprint): recorded in every marker, and a
    # marker of another fingerprint is not a finished shard of this run.
    fingerprint: str = ""


def manifest_counters(counts: dict[str, int]) -> dict[str, int]:
    """The counters a manifest records: those of the data, not how often the run was resumed."""
    return {k: v for k, v in counts.items() if k != RESUMED}


def marker_path(spec: ShardSpec, index: int) -> str:
    return os.path.join(spec.out_dir, ".markers", f"{registry.shard_stem(spec.name, index)}.json")


class ShardCounts:
    """A ``count`` callback that also keeps what one shard counted (saved in its marker)."""

    def __init__(self, count: Callable[..., None]) -> None:
        self.count = count
        self.counts: dict[str, int] = {}

    def __call__(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(n)
        self.count(name, n)


def finished_shard(
    spec: ShardSpec, index: int, count: Callable[..., None] | None = None
) -> dict[str, Any] | None:
    """The summary of a shard finished by an earlier run, if its files are all still there.

    With ``count``, the counters the shard's work incremented are counted again (and
    ``RESUMED`` once), as if the shard had been written by this run.
    """
    path = marker_path(spec, index)
    try:
        with fsio.open_text(path) as f:
            summary: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    counters = summary.pop("counters", None)
    if not isinstance(counters, dict):
        return None  # a marker from before counters were kept: redo the shard
    if summary.pop("fingerprint", None) != spec.fingerprint:
        return None  # written by a run of another configuration
    files = summary.get("files", {})
    if sorted(files) != sorted(spec.formats if summary.get("instances") else []):
        return None
    for entries in files.values():
        for e in entries:
            if not fsio.isfile(os.path.join(spec.out_dir, e["path"])):
                return None
    if count is not None:
        for name, n in sorted(counters.items()):
            count(name, n)
        count(RESUMED)
    return summary


def order_instances(instances: list[Instance], seed: int, index: int) -> list[Instance]:
    """A deterministic shuffle of a shard: sort by content, then a seeded permutation.

    Sorting first makes the order independent of how the instances arrived.
    """
    instances.sort(key=Instance.key)
    perm = rng_for(seed, "shard-order", index).permutation(len(instances))
    return [instances[i] for i in perm]


def write_shard(
    spec: ShardSpec, index: int, instances: list[Instance], count: Callable[..., None]
) -> dict[str, Any]:
    """Write one shard in every format of ``spec``; returns its manifest entry.

    ``count`` may be a :class:`ShardCounts` that already holds this shard's earlier counts.
    """
    count = count if isinstance(count, ShardCounts) else ShardCounts(count)
    records: Sequence[Instance | Pack] = instances
    packing: dict[str, Any] | None = None
    timings: dict[str, float] = {}
    if spec.pack is not None and instances:
        from corpus_pipeline.stages.packing import pack_instances

        strategies: list[Any] = []
        records = list(
            pack_instances(
                instances,
                spec.pack,
                spec.max_seq_length,
                spec.max_predictions,
                count=count,
                on_strategy=strategies.append,
            )
        )
        real = sum(len(i) for i in instances)
        strategy = strategies[0].summary() if strategies else None
        if strategy is not None:
            # Wall-clock time differs between identical runs: kept out of the shard entry.
            timings["strategy_seconds"] = float(strategy.pop("seconds", 0.0) or 0.0)
        packing = {
            "packs": len(records),
            "real_tokens": real,
            "efficiency_unpacked": real / (len(instances) * spec.max_seq_length),
            "efficiency": real / (len(records) * spec.max_seq_length),
            "strategy": strategy,
        }
    files: dict[str, list[dict[str, str]]] = {}
    if records:
        for fmt in spec.formats:
            with registry.open_writer(
                fmt,
                spec.out_dir,
                spec.name,
                index,
                max_seq_length=spec.max_seq_length,
                max_predictions=spec.max_predictions,
                vocab_size=spec.vocab_size,
                max_per_pack=spec.pack.max_per_pack if spec.pack else None,
            ) as w:
                for start in range(0, len(records), WRITE_BATCH):
                    w.write(records[start : start + WRITE_BATCH])
            files[fmt] = registry.writer_file_hashes(
                fmt, w, spec.out_dir, spec.name, index, spec.pack is not None
            )
    count("write/shards")
    count("write/records", len(records))
    summary: dict[str, Any] = {
        "index": index,
        "instances": len(instances),
        "records": len(records),
        "files": files,
    }
    if packing is not None:
        summary["packing"] = packing
    if timings:
        summary["timings"] = timings
    # The marker is written last, after every file of the shard is under its final name (the
    # writers rename or upload on close): a marker means a finished shard.
    marker = marker_path(spec, index)
    fs = fsio.filesystem(marker)
    fs.makedirs(os.path.dirname(marker))
    record = {**summary, "counters": count.counts, "fingerprint": spec.fingerprint}
    fs.write_bytes(marker, json.dumps(record, sort_keys=True).encode("utf-8"))
    return summary


class WriteShardFromSpills(beam.DoFn):
    """``(shard, [SpillRange])`` -> the shard's files in every dataset of ``specs``.

    Several specs share one read of the spills: ``run`` writes the unpacked and the packed
    dataset from the same instances. Outputs ``(dataset folder, manifest entry)`` per spec.
    """

    def __init__(self, specs: Sequence[ShardSpec], progress: Progress) -> None:
        self.specs = list(specs)
        self.progress = progress
        self.count = BeamCounts()

    def process(
        self, element: tuple[int, Iterable[SpillRange | None]]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        index, items = element
        todo = []
        for spec in self.specs:
            done = finished_shard(spec, index, self.count)
            if done is not None:
                yield spec.out_dir, done
            else:
                todo.append(spec)
        if todo:
            ranges = sorted(r for r in items if r is not None)
            instances = order_instances(list(iter_spills(ranges)), todo[0].seed, index)
            for spec in todo:
                yield spec.out_dir, write_shard(spec, index, instances, self.count)
        self.progress.tick()


def prepare_output(out_dir: str, formats: Sequence[str]) -> None:
    """Create the format folders and remove temp files a killed run left behind."""
    fs = fsio.filesystem(out_dir)
    if fs.remote:
        fsio.check_writable(out_dir)  # object stores make no folders: fail here if read-only
    for sub in (*formats, ".markers"):
        d = fs.join(out_dir, sub)
        fs.makedirs(d)
        fs.remove_stale_temps(d)


def read_source_shard(fmt: str, src_dir: str, name: str, index: int) -> list[Instance]:
    """Shard ``index`` of an unpacked dataset; a remote one is first copied to a temp folder."""
    if not fsio.is_remote(src_dir):
        return list(registry.read_shard(fmt, src_dir, name, index, False))
    with tempfile.TemporaryDirectory(prefix="corpus-pipeline-src-") as d:
        for rel in registry.shard_files(fmt, name, index, False):
            os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
            fsio.download(fsio.join(src_dir, rel), os.path.join(d, rel))
        return list(registry.read_shard(fmt, d, name, index, False))


class PackShardFromDataset(beam.DoFn):
    """Shard ``i`` of an existing unpacked dataset -> packed shard ``i`` of ``spec``."""

    def __init__(
        self,
        spec: ShardSpec,
        src_dir: str,
        src_name: str,
        src_format: str,
        progress: Progress,
        empty: frozenset[int] = frozenset(),
    ) -> None:
        self.spec = spec
        self.src_dir = src_dir
        self.src_name = src_name
        self.src_format = src_format
        self.progress = progress
        self.empty = empty  # source shards no instance went to: they have no files
        self.count = BeamCounts()

    def process(self, index: int) -> Iterator[dict[str, Any]]:
        done = finished_shard(self.spec, index, self.count)
        if done is not None:
            yield done
            self.progress.tick()
            return
        count = ShardCounts(self.count)
        instances = (
            []
            if index in self.empty
            else read_source_shard(self.src_format, self.src_dir, self.src_name, index)
        )
        count("pack/read_instances", len(instances))
        yield write_shard(
            self.spec, index, order_instances(instances, self.spec.seed, index), count
        )
        self.progress.tick()
