"""The torch side of the data path: an ``IterableDataset`` and ``DataLoader`` over
:class:`~corpus_pipeline.train.data.PretrainingStream` batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from corpus_pipeline.train.data import TENSOR_KEYS, PretrainingStream

#: Per-batch facts that travel with the tensors (plain ints).
META_KEYS = ("stream", "rows", "tokens")


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy batch -> torch tensors (zero-copy)."""
    return {k: torch.from_numpy(v) for k, v in batch.items()}


class PretrainingDataset(IterableDataset):  # type: ignore[type-arg]
    """Yields ready batches (dicts of tensors plus ``stream``, ``rows``, ``tokens``).

    Each DataLoader worker serves one stream of the rank (see ``train/data.py``).
    """

    def __init__(self, stream: PretrainingStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[dict[str, Any]]:
        wi = get_worker_info()
        p, w = (0, 1) if wi is None else (wi.id, wi.num_workers)
        for batch in self.stream.batches(p, w):
            out: dict[str, Any] = to_tensors({k: batch[k] for k in TENSOR_KEYS})
            out.update({k: batch[k] for k in META_KEYS})
            yield out


def _worker_init(_: int) -> None:
    # Workers decode and pad; one thread each keeps them off the trainer's cores.
    torch.set_num_threads(1)


def make_loader(stream: PretrainingStream, workers: int, *, pin_memory: bool = False) -> DataLoader:  # type: ignore[type-arg]
    """A ``DataLoader`` over the stream's batches (``batch_size=None``: they come ready).

    Workers are not persistent, so each epoch's iterator sees the stream's current state. A
    private generator keeps the DataLoader from drawing its base seed from the global torch RNG
    (which would shift dropout between an uninterrupted and a resumed run).
    """
    return DataLoader(
        PretrainingDataset(stream),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        generator=torch.Generator().manual_seed(stream.seed),
        persistent_workers=False,
    )
