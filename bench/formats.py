"""Shard formats: write and read throughput, bytes per instance, and the readers consumers use.

Real masked instances: the bundled enwiki excerpt, extracted (``.bench/`` cache, ``--fresh``
to redo), then ``corpus-pipeline mask --preset phase1 --format all`` and ``corpus-pipeline
pack`` on its output (both timed as subprocesses). Every record is read back once with
``registry.iter_dataset``; then, for hdf5, tfrecord and mmap, unpacked and packed, best of
``--repeat``:

* write: the records of each shard through ``registry.open_writer`` into a temp folder, in
  batches of 1024 as the verbs do (files fsynced and renamed by the writers);
* read: every shard back with ``registry.read_shard`` (checked equal to what was written);
* bytes per instance of the files written (checked identical to the verb's files).

The TFRecord writers are also timed against a per-record encoder (per-instance columns, one
``encode_examples`` Example and one ``frame_record`` per record: what batch encoding saves),
interleaved in the same passes, its bytes checked identical (row ``tfrecord (per-record ref)``).

Baselines in the same run, on the same shards:

* the ``tfrecord`` PyPI package's ``tfrecord.reader.tfrecord_loader`` (no index, all
  features; what PyTorch BERT trainers use) against our TFRecord reader, with and without
  CRC checks (theirs never checks CRCs);
* h5py whole-array loading, NVIDIA DeepLearningExamples' way (``f[key][:]`` for every key
  when a shard is opened), alone and followed by per-row access (unpacked: DLE's
  ``pretraining_dataset.__getitem__`` in numpy, int64 copies and -1-filled MLM labels; packed:
  each row's variable-length arrays copied to int64, as MLPerf's loader starts), against our
  streaming reader (1024 rows per read, instances rebuilt unpadded, packs split back into
  their instances), with the peak Python heap of reading the largest shard (``tracemalloc``,
  which sees numpy's buffers).

Instances/s count instances (a pack holds several; the baselines deliver the same data as
padded or packed rows); rates per CPU second of this process (robust on a shared machine),
wall time alongside.

Usage: ``python bench/formats.py [--repeat 3] [--fresh] [--writers-only]``
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _common import (
    Best,
    child_env,
    cli,
    extracted_excerpt,
    print_table,
    run_measured,
    timed,
)
from tfrecord.reader import tfrecord_loader

from corpus_pipeline.beam.shards import WRITE_BATCH
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.formats import registry
from corpus_pipeline.formats import tfrecord as tfr
from corpus_pipeline.formats import tfrecord_columns as tfc
from corpus_pipeline.formats import tfrecord_writer as tfw
from corpus_pipeline.formats.common import sha256_file
from corpus_pipeline.formats.example_proto import encode_examples
from corpus_pipeline.records import Instance, Pack


class Dataset:
    """A dataset folder made by a verb, its manifest and its records grouped by shard."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.m = mf.read_manifest(str(path))
        self.packed = self.m["kind"] == "packed"
        self.name = self.m["name"]
        self.shards = [s for s in self.m["shards"] if s["records"]]
        records = list(registry.iter_dataset(str(path), self.m))
        self.records: list[list[Any]] = []
        pos = 0
        for s in self.shards:
            self.records.append(records[pos : pos + s["records"]])
            pos += s["records"]
        if pos != len(records):
            raise SystemExit(f"{path}: read {len(records)} records, manifest lists {pos}")
        self.instances = int(self.m["totals"]["instances"])
        if count_instances(records) != self.instances:
            raise SystemExit(f"{path}: instance count differs from the manifest")

    def only(self, i: int) -> Dataset:
        """The same dataset restricted to its ``i``-th non-empty shard."""
        one = copy.copy(self)
        one.shards, one.records = [self.shards[i]], [self.records[i]]
        return one

    @property
    def kind(self) -> str:
        return "packed" if self.packed else "unpacked"

    def files(self, fmt: str, index: int) -> list[str]:
        return registry.shard_files(fmt, self.name, index, self.packed)


def count_instances(records: Iterable[Instance | Pack]) -> int:
    return sum(len(r.instances) if isinstance(r, Pack) else 1 for r in records)


# ---------------------------------------------------------------- ours: write, read


def write_all(ds: Dataset, fmt: str, out: Path) -> None:
    """Every shard of ``ds`` in ``fmt`` under ``out`` (what the verbs' shard writer does)."""
    for s, records in zip(ds.shards, ds.records, strict=True):
        with registry.open_writer(
            fmt,
            str(out),
            ds.name,
            s["index"],
            max_seq_length=ds.m["max_seq_length"],
            max_predictions=ds.m["max_predictions"],
            vocab_size=ds.m["vocab"]["size"],
            max_per_pack=ds.m["max_per_pack"] if ds.packed else None,
        ) as w:
            for start in range(0, len(records), WRITE_BATCH):
                w.write(records[start : start + WRITE_BATCH])


def write_tfrecord_reference(ds: Dataset, out: Path) -> None:
    """Every shard as TFRecord one record at a time: per-record encoding and framing."""
    s, p = ds.m["max_seq_length"], ds.m["max_predictions"]
    for sh, records in zip(ds.shards, ds.records, strict=True):
        path = out / ds.files("tfrecord", sh["index"])[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        w: tfw.TFRecordShardWriter | tfw.PackedTFRecordShardWriter
        if ds.packed:
            w = tfw.PackedTFRecordShardWriter(path, s, p, ds.m["max_per_pack"])
        else:
            w = tfw.TFRecordShardWriter(path, s, p)
        with w:
            for start in range(0, len(records), WRITE_BATCH):
                batch = records[start : start + WRITE_BATCH]
                if ds.packed:
                    cols = tfc.packs_to_columns_loop(batch, s, p, ds.m["max_per_pack"])
                else:
                    cols = tfc.instances_to_columns_loop(batch, s, p)
                w.write_records(encode_examples(cols))


def read_all(ds: Dataset, fmt: str, out: Path) -> int:
    """Streams every shard back; returns the instance count."""
    n = 0
    for s in ds.shards:
        n += count_instances(registry.read_shard(fmt, str(out), ds.name, s["index"], ds.packed))
    return n


def bench_format(ds: Dataset, fmt: str, tmp: Path, repeat: int) -> dict[str, Any]:
    out = tmp / f"{ds.kind}-{fmt}"
    ref_out = tmp / f"{ds.kind}-{fmt}-ref"
    write, read, ref = Best(), Best(), Best()
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        with timed(write):
            write_all(ds, fmt, out)
        if fmt == "tfrecord":  # interleaved: load elsewhere hits both writers alike
            shutil.rmtree(ref_out, ignore_errors=True)
            with timed(ref):
                write_tfrecord_reference(ds, ref_out)
        with timed(read):
            n = read_all(ds, fmt, out)
        if n != ds.instances:
            raise SystemExit(f"{fmt}: read back {n} instances, wrote {ds.instances}")
    # Correctness, outside the timed loops: the bytes are the verb's and (on the smallest
    # shard, to save time; the test suite covers the readers) the records round-trip.
    i = min(range(len(ds.shards)), key=lambda j: ds.shards[j]["records"])
    back = list(registry.read_shard(fmt, str(out), ds.name, ds.shards[i]["index"], ds.packed))
    if back != ds.records[i]:
        raise SystemExit(f"{fmt} shard {ds.shards[i]['index']}: records read back differ")
    files = [rel for s in ds.shards for rel in ds.files(fmt, s["index"])]
    size = sum((out / rel).stat().st_size for rel in files)
    same = all(sha256_file(str(out / rel)) == sha256_file(str(ds.path / rel)) for rel in files)
    result = {"write": write, "read": read, "bytes": size, "same": same}
    if fmt == "tfrecord":
        ref_same = all(
            sha256_file(str(ref_out / rel)) == sha256_file(str(ds.path / rel)) for rel in files
        )
        result["ref"] = {"write": ref, "same": ref_same}
    return result


# ---------------------------------------------------------------- baselines


def tfrecord_package(ds: Dataset, out: Path) -> int:
    """Every shard through ``tfrecord.reader.tfrecord_loader``; returns the record count."""
    features = tfr.PACKED_FEATURES if ds.packed else tfr.UNPACKED_FEATURES
    n = 0
    for s in ds.shards:
        path = str(out / ds.files("tfrecord", s["index"])[0])
        for _ in tfrecord_loader(path, None, description=dict(features)):
            n += 1
    return n


def ours_tfrecord_no_crc(ds: Dataset, out: Path) -> int:
    n = 0
    for s in ds.shards:
        path = out / ds.files("tfrecord", s["index"])[0]
        reader = tfr.read_packed_tfrecord if ds.packed else tfr.read_tfrecord
        n += count_instances(reader(path, verify_crc=False))
    return n


def h5_whole_arrays(path: Path) -> dict[str, np.ndarray]:
    """DLE's ``pretraining_dataset.__init__``: every dataset loaded whole."""
    with h5py.File(path, "r") as f:
        return {k: np.asarray(f[k][:]) for k in f}


def dle_rows(arrays: dict[str, np.ndarray], max_pred: int) -> int:
    """DLE's ``__getitem__`` for every row, in numpy (int64 copies, -1 filled MLM labels)."""
    keys = (
        "input_ids",
        "input_mask",
        "segment_ids",
        "masked_lm_positions",
        "masked_lm_ids",
        "next_sentence_labels",
    )
    cols = [arrays[k] for k in keys]
    n = len(cols[0])
    for i in range(n):
        ids, _, _, pos, mlm, _ = [c[i].astype(np.int64) for c in cols]
        labels = np.full(ids.shape, -1, dtype=np.int64)
        k = int(np.count_nonzero(pos)) or max_pred
        labels[pos[:k]] = mlm[:k]
    return n


def packed_rows(arrays: dict[str, np.ndarray]) -> int:
    """MLPerf's packed loader touches each row's variable-length arrays."""
    cols = list(arrays.values())
    n = len(cols[0])
    for i in range(n):
        _ = [c[i].astype(np.int64) for c in cols]
    return n


def h5py_baseline(ds: Dataset, out: Path, rows: bool) -> int:
    n = 0
    for s in ds.shards:
        arrays = h5_whole_arrays(out / ds.files("hdf5", s["index"])[0])
        if rows:
            if ds.packed:
                packed_rows(arrays)
            else:
                dle_rows(arrays, ds.m["max_predictions"])
        n += s["records"]
    return n


def traced_peak_mb(fn: Callable[[Dataset], object], ds: Dataset) -> float:
    """Peak bytes allocated (Python objects and numpy buffers) by ``fn(ds)``, in MB."""
    tracemalloc.start()
    try:
        fn(ds)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def bench_baselines(ds: Dataset, repeat: int) -> list[list[object]]:
    """Rows ``[kind, format, reader, inst/s per core, inst/s wall, CPU x ours, peak MB]``.

    Every reader reads the verb's own shards (``bench_format`` checks our writers reproduce
    them byte for byte).
    """
    out = ds.path
    big = max(range(len(ds.shards)), key=lambda i: ds.shards[i]["records"])
    one = ds.only(big)  # the memory pass reads the largest shard alone

    def ours(fmt: str) -> Callable[[Dataset], int]:
        return lambda d: read_all(d, fmt, out)

    runs: list[tuple[str, str, Callable[[Dataset], int], bool]] = [
        ("tfrecord", "ours read_shard (CRC checked)", ours("tfrecord"), True),
        ("tfrecord", "ours, verify_crc=False", lambda d: ours_tfrecord_no_crc(d, out), True),
        ("tfrecord", "tfrecord pkg tfrecord_loader", lambda d: tfrecord_package(d, out), False),
        ("hdf5", "ours read_shard (streaming)", ours("hdf5"), True),
        ("hdf5", "h5py f[key][:] (load only)", lambda d: h5py_baseline(d, out, False), False),
        ("hdf5", "h5py f[key][:] + per row", lambda d: h5py_baseline(d, out, True), False),
    ]
    best = {label: Best() for _, label, _, _ in runs}
    for _ in range(repeat):  # interleaved: load elsewhere hits every reader alike
        for _, label, fn, _ in runs:
            with timed(best[label]):
                fn(ds)
    rows: list[list[object]] = []
    ref: dict[str, float] = {}
    for fmt, label, fn, is_ours in runs:
        b = best[label]
        if is_ours and fmt not in ref:
            ref[fmt] = b.cpu
        peak = traced_peak_mb(fn, one)
        rows.append(
            [
                ds.kind,
                fmt,
                label,
                ds.instances / b.cpu,
                ds.instances / b.wall,
                b.cpu / ref[fmt],
                peak,
            ]
        )
    return rows


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes, best kept (default 3)")
    ap.add_argument("--fresh", action="store_true", help="re-extract the excerpt")
    ap.add_argument(
        "--writers-only", action="store_true", help="skip the reader baselines (much shorter)"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    docs = extracted_excerpt(args.fresh)
    tmp = Path(tempfile.mkdtemp(prefix="bench-formats-"))
    try:
        unpacked, packed = tmp / "masked", tmp / "packed"
        r_mask = run_measured(
            cli(
                "mask",
                *("--input", str(docs), "--output", str(unpacked)),
                *("--preset", "phase1", "--format", "all"),
            ),
            env=child_env(),
        )
        r_pack = run_measured(
            cli("pack", "--input", str(unpacked), "--output", str(packed)), env=child_env()
        )
        datasets = [Dataset(unpacked), Dataset(packed)]
        u, p = datasets
        print(
            f"input: bundled enwiki excerpt -> mask --preset phase1 --format all: "
            f"{u.instances:,} instances in {len(u.shards)} shards ({r_mask.wall:.1f} s wall, "
            f"{r_mask.cpu:.1f} s cpu); pack: {sum(map(len, p.records)):,} "
            f"packs of <= {p.m['max_per_pack']} ({r_pack.wall:.1f} s wall, {r_pack.cpu:.1f} s "
            f"cpu); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )

        rows: list[list[object]] = []
        ref_rows: list[list[object]] = []
        for ds in datasets:
            for fmt in registry.FORMATS:
                r = bench_format(ds, fmt, tmp / "rewrite", args.repeat)
                w, rd = r["write"], r["read"]
                rows.append(
                    [
                        ds.kind,
                        fmt,
                        ds.instances / w.cpu,
                        ds.instances / rd.cpu,
                        ds.instances / w.wall,
                        ds.instances / rd.wall,
                        r["bytes"] / ds.instances,
                        r["bytes"] / 2**20,
                        r["same"],
                    ]
                )
                if "ref" in r:
                    rw = r["ref"]["write"]
                    ref_rows.append([ds.kind, ds.instances / rw.cpu, ds.instances / w.cpu])
                    rows.append(
                        [
                            ds.kind,
                            f"{fmt} (per-record ref)",
                            ds.instances / rw.cpu,
                            "",
                            ds.instances / rw.wall,
                            "",
                            "",
                            "",
                            r["ref"]["same"],
                        ]
                    )
        print(f"\nwrite (open_writer) and read (read_shard), instances/s, best of {args.repeat}")
        print_table(
            [
                "kind",
                "format",
                "write/s cpu",
                "read/s cpu",
                "write/s wall",
                "read/s wall",
                "B/inst",
                "MB",
                "= verb's",
            ],
            rows,
            indent="  ",
        )

        print(
            "\nTFRecord write, batch encoder vs the per-record encoder it replaced (CPU): "
            + "; ".join(
                f"{k} {new:,.0f} vs {old:,.0f}/s = {new / old:.2f}x" for k, old, new in ref_rows
            )  # type: ignore[operator]
        )
        if args.writers_only:
            return 0
        base: list[list[object]] = []
        for ds in datasets:
            base.extend(bench_baselines(ds, args.repeat))
        print(
            f"\nreaders on the same shards, instances/s, best of {args.repeat}; 'cpu x ours' = "
            "CPU time relative to ours (CRC checked / streaming): > 1 is slower than ours; "
            "peak MB = tracemalloc peak reading the largest shard"
        )
        print_table(
            ["kind", "format", "reader", "inst/s cpu", "inst/s wall", "cpu x ours", "peak MB"],
            base,
            indent="  ",
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def pick(kind: str, label: str) -> list[object]:
        return next(r for r in base if r[0] == kind and r[2] == label)

    parts = []
    for kind in ("unpacked", "packed"):
        tf_ratio = pick(kind, "tfrecord pkg tfrecord_loader")[5]
        h5 = pick(kind, "h5py f[key][:] + per row")
        ours_h5 = pick(kind, "ours read_shard (streaming)")
        parts.append(
            f"{kind}: ours vs tfrecord pkg {tf_ratio:.2f}x, ours vs h5py whole-array+rows "
            f"{h5[5]:.2f}x at {ours_h5[6]:.1f} vs {h5[6]:.1f} MB peak"
        )
    print("\nratio (reader speed, ours / baseline, CPU time): " + "; ".join(parts))
    print(f"total {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
