"""BERT instances and packs as Megatron indexed datasets (``.bin`` + ``.idx``, see :mod:`.mmap`).

**Statically masked instances** (our own layout; each file pair is a valid ``IndexedDataset``).
For N instances, one indexed dataset per field, sequence i of every field belongs to instance i:

=============================== ===================== ==========================================
prefix                          dtype                 sequence i
=============================== ===================== ==========================================
``<name>_input_ids``            uint16 / int32        the L token ids of instance i (unpadded)
``<name>_segment_ids``          int8                  its L segment ids
``<name>_masked_lm_positions``  uint16 / int32        its M sorted masked positions (0-based)
``<name>_masked_lm_ids``        uint16 / int32        its M original ids
``<name>_next_sentence_labels`` uint8                 one element: 1 = random next sentence
=============================== ===================== ==========================================

Token ids use uint16 when the vocabulary has < 65500 entries (else int32), positions uint16 when
S < 65500 (else int32). The document index of every field is 0, 1, ..., N: one document per
instance, so ``IndexedDataset(prefix)[i]`` and document i are both instance i.

**Packed instances**: the same five fields, one sequence per *instance*, plus
``<name>_pack_lengths`` (int16, int32 when S >= 32768) holding one sequence per pack: the length
of each instance in the pack (1..K values). The document index of the five instance fields
groups instances into packs (document j = the instances of pack j), that of ``_pack_lengths`` is
0..num_packs. Masked positions stay relative to their own instance; a consumer adds the running
offset ``cumsum(pack_lengths) - pack_lengths`` to place them in the packed row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from corpus_pipeline import fsio
from corpus_pipeline.formats.common import FormatError, RecordStream
from corpus_pipeline.formats.mmap import IndexedDatasetReader, MmapWriter, token_dtype
from corpus_pipeline.records import Instance, Pack

__all__ = [
    "INSTANCE_FIELDS",
    "MmapInstanceReader",
    "MmapInstanceWriter",
    "MmapPackReader",
    "MmapPackWriter",
    "read_mmap_instances",
    "read_mmap_packs",
]

#: The per-instance fields of the statically masked layout, in order.
INSTANCE_FIELDS = (
    "input_ids",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "next_sentence_labels",
)


# ------------------------------------------------------------------------------------------
# Statically masked instances


class MmapInstanceWriter(MmapWriter):
    """Writes statically masked instances as one indexed dataset per field (see module doc).

    Args:
        out_dir: Existing folder.
        name: File name prefix (``<name>_input_ids.bin`` ...).
        vocab_size: Vocabulary size (uint16 ids when < 65500, else int32).
        max_seq_length: S if known; positions are int32 when ``S >= 65500``, else uint16.

    Attributes:
        num_records: Instances written.
    """

    def __init__(
        self,
        out_dir: str | Path,
        name: str,
        vocab_size: int,
        *,
        max_seq_length: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        ids = token_dtype(vocab_size)
        pos = token_dtype(max_seq_length if max_seq_length is not None else 0)
        dtypes = {
            "input_ids": ids,
            "segment_ids": np.dtype(np.int8),
            "masked_lm_positions": pos,
            "masked_lm_ids": ids,
            "next_sentence_labels": np.dtype(np.uint8),
        }
        super().__init__()
        try:
            for field, dt in dtypes.items():
                self._add_dataset(field, fsio.join(str(out_dir), f"{name}_{field}"), dt)
        except BaseException as e:
            self.abort(e)
            raise
        self.num_records = 0

    def _write_instances(self, insts: Sequence[Instance]) -> None:
        for inst in insts:
            if not isinstance(inst, Instance):
                raise TypeError(f"expected Instance, got {type(inst).__name__}")
            if inst.masked_lm_positions.shape[0] != inst.masked_lm_ids.shape[0] or (
                inst.segment_ids.shape[0] != inst.input_ids.shape[0]
            ):
                raise ValueError("instance fields have inconsistent lengths")
        w = self._writers
        w["input_ids"].add_items([i.input_ids for i in insts])
        w["segment_ids"].add_items([i.segment_ids for i in insts])
        w["masked_lm_positions"].add_items([i.masked_lm_positions for i in insts])
        w["masked_lm_ids"].add_items([i.masked_lm_ids for i in insts])
        nsp = np.fromiter((i.next_sentence_label for i in insts), dtype=np.uint8, count=len(insts))
        w["next_sentence_labels"].add_items(list(nsp.reshape(-1, 1)))

    def write(self, batch: Sequence[Instance]) -> None:
        """Appends instances, one document each."""
        self._check_open()
        self._write_instances(batch)
        for field in INSTANCE_FIELDS:
            self._writers[field].end_documents(np.ones(len(batch), dtype=np.int64))
        self.num_records += len(batch)


class MmapPackWriter(MmapInstanceWriter):
    """Writes packs: the instance fields (one document per pack) plus ``<name>_pack_lengths``.

    Args:
        out_dir: Existing folder.
        name: File name prefix.
        vocab_size: Vocabulary size.
        max_seq_length: S if known (int32 pack lengths when >= 32768, else int16).

    Attributes:
        num_records: Packs written.
        num_instances: Instances written.
    """

    def __init__(
        self,
        out_dir: str | Path,
        name: str,
        vocab_size: int,
        *,
        max_seq_length: int | None = None,
    ) -> None:
        super().__init__(out_dir, name, vocab_size, max_seq_length=max_seq_length)
        big = max_seq_length is not None and max_seq_length >= 32768
        try:
            self._add_dataset(
                "pack_lengths",
                fsio.join(str(out_dir), f"{name}_pack_lengths"),
                np.int32 if big else np.int16,
            )
        except BaseException as e:
            self.abort(e)
            raise
        self.num_instances = 0

    def write(self, batch: Sequence[Pack | Instance]) -> None:  # type: ignore[override]
        """Appends packs (an :class:`Instance` is a pack of one)."""
        self._check_open()
        packs = [Pack([r]) if isinstance(r, Instance) else r for r in batch]
        insts = [i for p in packs for i in p.instances]
        sizes = np.array([len(p.instances) for p in packs], dtype=np.int64)
        if (sizes == 0).any():
            raise ValueError("empty pack")
        self._write_instances(insts)
        for field in INSTANCE_FIELDS:
            self._writers[field].end_documents(sizes)
        pl = self._writers["pack_lengths"]
        pl.add_items([np.array([len(i) for i in p.instances], dtype=np.int64) for p in packs])
        pl.end_documents(np.ones(len(packs), dtype=np.int64))
        self.num_records += len(packs)
        self.num_instances += len(insts)


class _MmapReaderBase(RecordStream):
    """Opens and cross-checks the per-field datasets of an instance/pack layout."""

    def __init__(self, out_dir: str | Path, name: str, fields: Iterable[str]) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.r = {f: IndexedDatasetReader(self.out_dir / f"{name}_{f}") for f in fields}
        n = len(self.r["input_ids"])
        where = f"{self.out_dir / name}_*"
        for f in INSTANCE_FIELDS:
            if len(self.r[f]) != n:
                raise FormatError(f"{where}: field {f} has {len(self.r[f])} sequences, not {n}")
        if not np.array_equal(self.r["input_ids"].lengths, self.r["segment_ids"].lengths):
            raise FormatError(f"{where}: input_ids and segment_ids lengths differ")
        if not np.array_equal(
            self.r["masked_lm_positions"].lengths, self.r["masked_lm_ids"].lengths
        ):
            raise FormatError(f"{where}: masked_lm_positions and masked_lm_ids lengths differ")
        if n and (self.r["next_sentence_labels"].lengths != 1).any():
            raise FormatError(f"{where}: next_sentence_labels must hold one element per instance")
        self._where = where
        self._n_instances = n

    def _instances(self, lo: int, hi: int) -> list[Instance]:
        ids, lens = self.r["input_ids"].read_range(lo, hi)
        seg, _ = self.r["segment_ids"].read_range(lo, hi)
        pos, mlens = self.r["masked_lm_positions"].read_range(lo, hi)
        mlm, _ = self.r["masked_lm_ids"].read_range(lo, hi)
        nsp, _ = self.r["next_sentence_labels"].read_range(lo, hi)
        ids, seg = ids.astype(np.int32), seg.astype(np.int8)
        pos, mlm = pos.astype(np.int32), mlm.astype(np.int32)
        t = np.concatenate([[0], np.cumsum(lens)])
        m = np.concatenate([[0], np.cumsum(mlens)])
        return [
            Instance(
                input_ids=ids[t[j] : t[j + 1]],
                segment_ids=seg[t[j] : t[j + 1]],
                masked_lm_positions=pos[m[j] : m[j + 1]],
                masked_lm_ids=mlm[m[j] : m[j + 1]],
                next_sentence_label=int(nsp[j]),
            )
            for j in range(hi - lo)
        ]


class MmapInstanceReader(_MmapReaderBase):
    """Iterates the :class:`Instance` records of an instance layout (1024 at a time)."""

    def __init__(self, out_dir: str | Path, name: str) -> None:
        super().__init__(out_dir, name, INSTANCE_FIELDS)
        self._len = self._n_instances

    def _generate(self) -> Iterator[Instance]:
        for lo in range(0, self._len, 1024):
            yield from self._instances(lo, min(self._len, lo + 1024))


class MmapPackReader(_MmapReaderBase):
    """Iterates the :class:`Pack` records of a packed layout."""

    def __init__(self, out_dir: str | Path, name: str) -> None:
        super().__init__(out_dir, name, (*INSTANCE_FIELDS, "pack_lengths"))
        pl = self.r["pack_lengths"]
        self._len = len(pl)
        if int(pl.lengths.astype(np.int64).sum()) != self._n_instances:
            raise FormatError(
                f"{self._where}: pack_lengths covers {int(pl.lengths.sum())} instances, "
                f"not {self._n_instances}"
            )

    def _generate(self) -> Iterator[Pack]:
        pl = self.r["pack_lengths"]
        sizes = pl.lengths.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for lo in range(0, self._len, 1024):
            hi = min(self._len, lo + 1024)
            insts = self._instances(int(starts[lo]), int(starts[hi]))
            for j in range(lo, hi):
                a, b = int(starts[j] - starts[lo]), int(starts[j + 1] - starts[lo])
                pack = Pack(insts[a:b])
                if not np.array_equal(pl[j], [len(i) for i in pack.instances]):
                    raise FormatError(f"{self._where}: pack {j} lengths disagree with input_ids")
                yield pack


def read_mmap_instances(out_dir: str | Path, name: str) -> MmapInstanceReader:
    """Opens the instance layout ``<out_dir>/<name>_*``: iterate for :class:`Instance`.

    Raises:
        FormatError: A field is missing, truncated, corrupt or inconsistent with the others.
    """
    return MmapInstanceReader(out_dir, name)


def read_mmap_packs(out_dir: str | Path, name: str) -> MmapPackReader:
    """Opens the packed layout ``<out_dir>/<name>_*``: iterate for :class:`Pack`.

    Raises:
        FormatError: A field is missing, truncated, corrupt or inconsistent with the others.
    """
    return MmapPackReader(out_dir, name)
