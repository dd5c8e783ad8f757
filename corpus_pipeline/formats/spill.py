"""Spill files: a bucket's instances grouped by destination shard, between two Beam steps.

A masking step writes one spill file per bucket of documents, its instances grouped by the
shard they go to, and emits only ``(shard, SpillRange)`` references. The shard writer then reads
its ranges from every spill file. So the data never crosses a GroupByKey (FnApiRunner keeps
grouped data in memory) and peak memory is bounded by bucket size and shard size.

Layout: a sequence of blocks, each ``u64le length | pickle(payload)``; a SpillRange is
(path, offset, length, count). Lists of :class:`Instance` are stored column-wise (a few flat
arrays per block instead of four small arrays per instance: pickling many small numpy arrays
dominated the run time); other records are pickled as they are. Spill files are private,
temporary and deleted after the run. When the output is remote (``s3://``, ``gs://``), spill
files live under it too (workers share no disk): each is built locally and published whole
(``fsio.atomic_output``).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corpus_pipeline import fsio
from corpus_pipeline.records import Instance

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
    """Write ``{shard: records}`` to ``path`` atomically; returns each shard's range.

    Nothing is written when every group is empty (nothing would refer to the file).
    """
    ranges: dict[int, SpillRange] = {}
    if not any(len(records) for records in groups.values()):
        return ranges
    with fsio.atomic_output(path) as tmp, open(tmp, "wb") as f:
        for shard in sorted(groups):
            records = list(groups[shard])
            if not records:
                continue
            blob = pickle.dumps(_encode(records), protocol=5)
            offset = f.tell()
            f.write(_LEN.pack(len(blob)))
            f.write(blob)
            ranges[shard] = SpillRange(key, path, offset, _LEN.size + len(blob), len(records))
    return ranges


def read_spill(r: SpillRange) -> list[Any]:
    """The records of one range."""
    with fsio.open_read(r.path) as f:
        f.seek(r.offset)
        (n,) = _LEN.unpack(f.read(_LEN.size))
        blob = f.read(n)
    if len(blob) != n:
        raise OSError(f"{r.path}: spill file truncated at offset {r.offset}")
    return _decode(pickle.loads(blob))


def iter_spills(ranges: Sequence[SpillRange]) -> Iterator[Any]:
    """Records of several ranges in key order (deterministic)."""
    for r in sorted(ranges):
        yield from read_spill(r)


_COLUMNS = ("input_ids", "segment_ids", "masked_lm_positions", "masked_lm_ids")


def _encode(records: list[Any]) -> Any:
    if not records or not all(type(r) is Instance for r in records):
        return ("records", records)
    lengths = np.fromiter((len(r.input_ids) for r in records), np.int64, len(records))
    masked = np.fromiter((len(r.masked_lm_positions) for r in records), np.int64, len(records))
    labels = np.fromiter((r.next_sentence_label for r in records), np.int8, len(records))
    cols = {
        "input_ids": np.concatenate([r.input_ids for r in records]).astype(np.int32, copy=False),
        "segment_ids": np.concatenate([r.segment_ids for r in records]).astype(np.int8, copy=False),
        "masked_lm_positions": np.concatenate([r.masked_lm_positions for r in records]).astype(
            np.int32, copy=False
        ),
        "masked_lm_ids": np.concatenate([r.masked_lm_ids for r in records]).astype(
            np.int32, copy=False
        ),
    }
    return ("instances", lengths, masked, labels, cols)


def _decode(payload: Any) -> list[Any]:
    if payload[0] == "records":
        records: list[Any] = payload[1]
        return records
    _, lengths, masked, labels, cols = payload
    # Plain slices (views) rather than np.split, which costs ~3x as much per piece.
    tok_end = np.cumsum(lengths).tolist()
    msk_end = np.cumsum(masked).tolist()
    tok = zip([0, *tok_end[:-1]], tok_end, strict=True)
    msk = zip([0, *msk_end[:-1]], msk_end, strict=True)
    ids, seg = cols["input_ids"], cols["segment_ids"]
    pos, mid = cols["masked_lm_positions"], cols["masked_lm_ids"]
    return [
        Instance(ids[a:b], seg[a:b], pos[c:d], mid[c:d], label)
        for (a, b), (c, d), label in zip(tok, msk, labels.tolist(), strict=True)
    ]
