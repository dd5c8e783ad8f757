"""Training batches from a dataset folder: every format, packed or not, streamed and resumable.

Records come from ``dataset.py`` (the folder, its manifest and the format readers). With
``dynamic=True`` instances are made on the fly from the Megatron sentence-level dataset by the
static masking stage itself (:func:`~corpus_pipeline.stages.masking.create_instances`), with a
fresh mask every epoch (RoBERTa's dynamic masking, Liu et al. 2019, arXiv 1907.11692).

**Batches.** An unpacked row is a pack of one, so both kinds share one layout (B rows, S
columns, K sequences per row at most, M masked slots): ``sequence_ids`` holds k on the tokens of
the k-th sequence of a row and 0 on padding (the model attends within equal ids: a padding mask
unpacked, block-diagonal packed), ``position_ids`` restart at 0 for each sequence, masked
positions are offset into the row, and ``cls_positions`` / ``next_sentence_labels`` hold one
entry per sequence (NSP is predicted for each sequence of a pack).

**Work split.** Each epoch the shards are put in a seeded order and the records, numbered in
that order, are cut into blocks of ``batch_size``. Rank r takes a contiguous range of blocks
(ranks differ by at most one block) and splits it into contiguous sub-ranges, one per DataLoader
worker; a *stream* is one (rank, worker) range. No divisibility is required: the last block may
be short and ranges may be empty. A stream opens only the shards its range overlaps, shuffles
its records through a seeded buffer and yields whole batches, so every record is seen exactly
once per epoch across all ranks and workers. Dynamic masking splits the (seeded, per-epoch
permuted) documents the same way.

**Resuming.** ``DataLoader`` returns the batches of its workers round-robin, skipping exhausted
workers. Every batch carries the index of its stream, and :class:`LoaderState` counts the
batches taken from each stream this epoch and which stream is next. A resumed loader replays
each stream's deterministic sequence, drops the batches already taken and rotates the
worker-to-stream assignment so the round-robin starts at the stream that was next: the
remaining batches come in exactly the order an uninterrupted run would have produced.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline import hashing
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.records import EncodedDocument, Instance, Pack
from corpus_pipeline.train.dataset import DatasetInfo, read_records, resolve_vocab

#: Records held by each stream's shuffle buffer.
DEFAULT_SHUFFLE_BUFFER = 10_000

#: Keys of a batch that are tensors fed to the model / the losses.
TENSOR_KEYS = (
    "input_ids",
    "segment_ids",
    "position_ids",
    "sequence_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "cls_positions",
    "next_sentence_labels",
    "nsp_weights",
)
#: Keys the model's ``forward`` takes.
MODEL_KEYS = (
    "input_ids",
    "segment_ids",
    "position_ids",
    "sequence_ids",
    "masked_lm_positions",
    "masked_lm_weights",
    "cls_positions",
    "nsp_weights",
)


# ------------------------------------------------------------------------------------------
# Batches


def collate(records: Sequence[Instance | Pack], info: DatasetInfo) -> dict[str, np.ndarray]:
    """Pad records (instances, or packs of instances) into one batch of numpy arrays.

    Layout: ``input_ids``, ``segment_ids``, ``position_ids``, ``sequence_ids`` (B, S);
    ``masked_lm_positions``, ``masked_lm_ids``, ``masked_lm_weights`` (B, M) with positions
    offset into the row; ``cls_positions``, ``next_sentence_labels``, ``nsp_weights`` (B, K).
    Ints are int64, weights float32.

    Raises:
        FormatError: A record longer than S, with more than K sequences or M masked positions,
            or with token ids outside the vocabulary.
    """
    b, s, m, k = len(records), info.max_seq_length, info.masked_width, info.max_per_pack
    ids = np.zeros((b, s), np.int64)
    seg = np.zeros((b, s), np.int64)
    pos = np.zeros((b, s), np.int64)
    sid = np.zeros((b, s), np.int64)
    mpos = np.zeros((b, m), np.int64)
    mids = np.zeros((b, m), np.int64)
    mw = np.zeros((b, m), np.float32)
    cls = np.zeros((b, k), np.int64)
    nsp = np.zeros((b, k), np.int64)
    nw = np.zeros((b, k), np.float32)
    for r, rec in enumerate(records):
        members = rec.instances if isinstance(rec, Pack) else [rec]
        if len(members) > k:
            raise FormatError(f"{info.path}: a record holds {len(members)} sequences, K={k}")
        off = 0
        mo = 0
        for j, inst in enumerate(members):
            n = len(inst)
            q = inst.masked_lm_positions.shape[0]
            if off + n > s or mo + q > m:
                raise FormatError(
                    f"{info.path}: a record has {off + n} tokens / {mo + q} masked positions, "
                    f"more than S={s} / M={m} of the manifest: regenerate the dataset"
                )
            ids[r, off : off + n] = inst.input_ids
            seg[r, off : off + n] = inst.segment_ids
            pos[r, off : off + n] = np.arange(n)
            sid[r, off : off + n] = j + 1
            mpos[r, mo : mo + q] = inst.masked_lm_positions
            mpos[r, mo : mo + q] += off
            mids[r, mo : mo + q] = inst.masked_lm_ids
            mw[r, mo : mo + q] = 1.0
            cls[r, j] = off
            nsp[r, j] = inst.next_sentence_label
            nw[r, j] = 1.0
            off += n
            mo += q
    if b and (int(ids.max()) >= info.vocab_size or int(mids.max()) >= info.vocab_size):
        raise FormatError(
            f"{info.path}: token id {max(int(ids.max()), int(mids.max()))} is outside the "
            f"vocabulary of {info.vocab_size} tokens: the manifest does not describe these shards"
        )
    return {
        "input_ids": ids,
        "segment_ids": seg,
        "position_ids": pos,
        "sequence_ids": sid,
        "masked_lm_positions": mpos,
        "masked_lm_ids": mids,
        "masked_lm_weights": mw,
        "cls_positions": cls,
        "next_sentence_labels": nsp,
        "nsp_weights": nw,
    }


def ordered_batches(
    info: DatasetInfo, batch_size: int, limit: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """The first ``limit`` batches (all when None) of a dataset in file order: shards in
    manifest order, records in shard order, no shuffling. The same batches on every call
    (held-out evaluation).

    Raises:
        UserError: ``batch_size`` below 1.
        FormatError: A shard shorter than the manifest says, or a bad record.
    """
    if batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    records = itertools.chain.from_iterable(
        read_records(info, index, n, 0, n) for index, n in info.shards
    )
    produced = 0
    while limit is None or produced < limit:
        chunk = list(itertools.islice(records, batch_size))
        if not chunk:
            return
        produced += 1
        yield collate(chunk, info)


# ------------------------------------------------------------------------------------------
# Work split and state


def split_range(n: int, parts: int, index: int) -> tuple[int, int]:
    """The ``index``-th of ``parts`` contiguous, near-equal ranges of ``range(n)``."""
    return n * index // parts, n * (index + 1) // parts


def stream_blocks(num_blocks: int, world: int, rank: int, workers: int, w: int) -> tuple[int, int]:
    """Block range of stream (rank, worker ``w``): rank ranges, then worker sub-ranges."""
    lo, hi = split_range(num_blocks, world, rank)
    a, b = split_range(hi - lo, workers, w)
    return lo + a, lo + b


@dataclass
class LoaderState:
    """Where a rank's loader is: the epoch, and the batches taken from each stream in it.

    Attributes:
        epoch: Current epoch (0-based).
        batches: Batches consumed in this epoch.
        per_stream: Batches consumed from each logical worker stream in this epoch.
        next_stream: The stream the round-robin serves next.
    """

    epoch: int = 0
    batches: int = 0
    per_stream: list[int] = field(default_factory=lambda: [0])
    next_stream: int = 0

    @classmethod
    def fresh(cls, workers: int, epoch: int = 0) -> LoaderState:
        return cls(epoch=epoch, per_stream=[0] * max(1, workers))

    def advance(self, stream: int) -> None:
        """Account for one batch received from ``stream``."""
        self.per_stream[stream] += 1
        self.batches += 1
        self.next_stream = (stream + 1) % len(self.per_stream)

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batches = 0
        self.per_stream = [0] * len(self.per_stream)
        self.next_stream = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batches": self.batches,
            "per_stream": list(self.per_stream),
            "next_stream": self.next_stream,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], workers: int) -> tuple[LoaderState, bool]:
        """Restore a state for ``workers`` streams; the flag is False when that count differs
        from the saved one (the position is then approximated: the same number of batches,
        spread evenly, so the data order differs from an uninterrupted run)."""
        w = max(1, workers)
        per = [int(x) for x in data.get("per_stream", [])]
        if len(per) == w:
            return cls(
                int(data["epoch"]), int(data["batches"]), per, int(data["next_stream"])
            ), True
        n = int(data.get("batches", 0))
        even = [n // w + (i < n % w) for i in range(w)]
        return cls(int(data["epoch"]), n, even, n % w), False


def _shuffled(records: Iterable[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """A seeded shuffle buffer of ``size`` records (size <= 1: no shuffling)."""
    if size <= 1:
        yield from records
        return
    buf: list[Any] = []
    for rec in records:
        if len(buf) < size:
            buf.append(rec)
            continue
        i = int(rng.integers(size))
        out, buf[i] = buf[i], rec
        yield out
    for i in rng.permutation(len(buf)).tolist():
        yield buf[i]


def _copy_instance(inst: Instance) -> Instance:
    # The masker's arrays share batch buffers: a shuffle buffer holds instances a long time.
    return replace(
        inst,
        input_ids=inst.input_ids.copy(),
        segment_ids=inst.segment_ids.copy(),
        masked_lm_positions=inst.masked_lm_positions.copy(),
        masked_lm_ids=inst.masked_lm_ids.copy(),
    )


class PretrainingStream:
    """The batches of one rank: work split, shuffling, collation and resumption.

    Torch-free: ``corpus_pipeline.train.loader`` wraps it in an ``IterableDataset`` and a
    ``DataLoader``; tests and tools can iterate :meth:`batches` directly.

    Args:
        info: The dataset.
        batch_size: Rows per batch.
        seed: Shuffling (and dynamic masking) seed.
        world_size: Number of ranks.
        rank: This rank.
        shuffle_buffer: Records per stream shuffle buffer (<= 1: file order).
        dynamic: Make instances on the fly from the sentence-level dataset.
        vocab_path: Vocabulary for dynamic masking (default: :func:`resolve_vocab`).
    """

    def __init__(
        self,
        info: DatasetInfo,
        batch_size: int,
        seed: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        dynamic: bool = False,
        vocab_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise UserError("--batch-size must be >= 1")
        self.info = info
        self.batch_size = batch_size
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.shuffle_buffer = shuffle_buffer
        self.dynamic = dynamic
        self.state = LoaderState.fresh(1)
        self._mask_cfg: MaskConfig | None = None
        self._vocab_path: Path | None = None
        if dynamic:
            if info.megatron_prefix is None:
                raise UserError(
                    f"{info.path}: --dynamic-masking needs the sentence-level dataset "
                    "(manifest 'megatron' is null): regenerate the data with it"
                )
            # Instances made on the fly are rows of their own, whatever the static shards are.
            self.info = info = replace(info, packed=False, max_per_pack=1)
            self._vocab_path = resolve_vocab(info, vocab_path)
            known = {f.name for f in fields(MaskConfig)}
            cfg = MaskConfig(**{k: v for k, v in info.mask_config.items() if k in known})
            cfg = replace(
                cfg, max_seq_length=info.max_seq_length, max_predictions=info.max_predictions
            )
            cfg.validate()
            self._mask_cfg = cfg

    def set_state(self, state: LoaderState) -> None:
        """Position the next iteration (epoch, batches already taken per stream)."""
        self.state = LoaderState(
            state.epoch, state.batches, list(state.per_stream), state.next_stream
        )

    # --- records of one stream ---------------------------------------------------------

    def shard_order(self, epoch: int) -> list[tuple[int, int]]:
        """The shards in this epoch's seeded order."""
        perm = hashing.rng_for(self.seed, "train-shard-order", epoch).permutation(
            len(self.info.shards)
        )
        return [self.info.shards[i] for i in perm.tolist()]

    def static_records(self, epoch: int, stream: int, workers: int) -> Iterator[Instance | Pack]:
        """The records of ``stream`` (of ``workers``) on this rank in ``epoch``, file order."""
        order = self.shard_order(epoch)
        total = sum(n for _, n in order)
        nb = -(-total // self.batch_size)
        blo, bhi = stream_blocks(nb, self.world_size, self.rank, workers, stream)
        lo, hi = blo * self.batch_size, min(bhi * self.batch_size, total)
        start = 0
        for index, n in order:
            a, b = max(lo, start), min(hi, start + n)
            if a < b:
                yield from read_records(self.info, index, n, a - start, b - start)
            start += n
            if start >= hi:
                break

    def dynamic_records(self, epoch: int, stream: int, workers: int) -> Iterator[Instance]:
        """Freshly masked instances of the documents of ``stream`` in ``epoch``."""
        from corpus_pipeline.formats.mmap import IndexedDatasetReader
        from corpus_pipeline.stages.buckets import iter_buckets
        from corpus_pipeline.stages.masking import MaskVocab, create_instances
        from corpus_pipeline.stages.wordpiece import CHARS_PER_TOKEN

        assert self._mask_cfg is not None and self._vocab_path is not None
        prefix = self.info.megatron_prefix or ""
        reader = IndexedDatasetReader(Path(self.info.path) / prefix)
        name = os.path.basename(prefix).removesuffix("_text_sentence")
        n_docs = reader.num_documents
        perm = hashing.rng_for(self.seed, "train-doc-order", epoch).permutation(n_docs)
        lo, hi = stream_blocks(n_docs, self.world_size, self.rank, workers, stream)
        mine = perm[lo:hi].tolist()
        # A fresh mask each epoch: the static stage's code, its seed mixed with the epoch.
        mix = hashing.stable_hash(self.seed, "dynamic-mask", epoch) & 0x7FFF_FFFF_FFFF_FFFF
        cfg = replace(self._mask_cfg, seed=mix, dupe_factor=1)
        vocab = MaskVocab.from_vocab_file(self._vocab_path)

        def count(name: str, n: int = 1) -> None:
            del name, n

        docs = (
            EncodedDocument(
                id=f"{name}:{d}", sentences=[s.astype(np.int32) for s in reader.document(d)]
            )
            for d in mine
        )
        # The static stage's buckets; its character cap becomes a token cap here.
        tokens = max(1, int(cfg.bucket_chars / CHARS_PER_TOKEN))
        for bucket in iter_buckets(docs, cfg.bucket_size, tokens):
            for inst in create_instances(bucket, cfg, vocab, count=count):
                yield _copy_instance(inst)

    # --- batches ------------------------------------------------------------------------

    def stream_batches(self, epoch: int, stream: int, workers: int) -> Iterator[dict[str, Any]]:
        """All batches of one stream in ``epoch`` (numpy arrays plus ``stream``/``rows``)."""
        records: Iterable[Any]
        if self.dynamic:
            records = self.dynamic_records(epoch, stream, workers)
        else:
            records = self.static_records(epoch, stream, workers)
        rng = hashing.rng_for(self.seed, "train-shuffle", epoch, self.rank, workers, stream)
        it = _shuffled(records, self.shuffle_buffer, rng)
        while True:
            chunk = list(itertools.islice(it, self.batch_size))
            if not chunk:
                return
            batch: dict[str, Any] = collate(chunk, self.info)
            batch["stream"] = stream
            batch["rows"] = len(chunk)
            batch["tokens"] = int(np.count_nonzero(batch["sequence_ids"]))
            yield batch

    def batches(self, physical: int, workers: int) -> Iterator[dict[str, Any]]:
        """Batches of this rank for DataLoader worker ``physical`` of ``workers``.

        Physical worker p serves logical stream ``(p + state.next_stream) % workers`` and skips
        the batches the state says were already taken from it.
        """
        st = self.state
        if len(st.per_stream) != workers:
            st, _ = LoaderState.from_dict(st.to_dict(), workers)
        stream = (physical + st.next_stream) % workers
        skip = st.per_stream[stream]
        it = self.stream_batches(st.epoch, stream, workers)
        if skip:
            # Deterministic replay: skipping whole batches skips exactly skip*B shuffled records.
            it = itertools.islice(it, skip, None)
        yield from it
