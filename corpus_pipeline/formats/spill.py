"""Spill files: a bucket's instances grouped by destination shard, between two Beam steps.

A masking step writes one spill file per bucket of documents, its instances grouped by the
shard they go to, and emits only ``(shard, SpillRange)`` references. The shard writer then reads
its ranges from every spill file. So the data never crosses a GroupByKey (FnApiRunner keeps
grouped data in memory) and peak memory is bounded by bucket size and shard size.

Layout: a sequence of blocks, each ``u64le length | pickle(list of records)``; a SpillRange is
(path, offset, length, count). Spill files are private, temporary and deleted after the run.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corpus_pipeline.formats.common import atomic_output

_LEN = struct.Struct("<Q")


@dataclass(frozen=True, order=True)
class SpillRange:
    """Where one shard's records of one bucket lie in a spill file."""

    key: tuple[Any, ...]
    path: str
    offset: int
    length: int
    count: int


def write_spill(
    path: str, key: tuple[Any, ...], groups: Mapping[int, Sequence[Any]]
) -> dict[int, SpillRange]:
    """Write ``{shard: records}`` to ``path`` atomically; returns each shard's range."""
    ranges: dict[int, SpillRange] = {}
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        for shard in sorted(groups):
            records = list(groups[shard])
            if not records:
                continue
            blob = pickle.dumps(records, protocol=5)
            offset = f.tell()
            f.write(_LEN.pack(len(blob)))
            f.write(blob)
            ranges[shard] = SpillRange(key, path, offset, _LEN.size + len(blob), len(records))
    return ranges


def read_spill(r: SpillRange) -> list[Any]:
    """The records of one range."""
    with open(r.path, "rb") as f:
        f.seek(r.offset)
        (n,) = _LEN.unpack(f.read(_LEN.size))
        blob = f.read(n)
    if len(blob) != n:
        raise OSError(f"{r.path}: spill file truncated at offset {r.offset}")
    records: list[Any] = pickle.loads(blob)
    return records


def iter_spills(ranges: Sequence[SpillRange]) -> Iterator[Any]:
    """Records of several ranges in key order (deterministic)."""
    for r in sorted(ranges):
        yield from read_spill(r)


def remove_spills(paths: Sequence[str]) -> None:
    """Delete spill files (missing ones are fine)."""
    for p in set(paths):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
