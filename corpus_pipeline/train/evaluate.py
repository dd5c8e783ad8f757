"""Held-out evaluation: masked-LM and NSP loss and accuracy on a fixed set of batches.

The batches are the first N of the evaluation dataset in file order
(:func:`~corpus_pipeline.train.data.ordered_batches`), so every evaluation of a run, and of any
run, sees the same rows. The model runs in eval mode (no dropout) without gradients; it is put
back in its previous mode afterwards, and no random number is drawn, so a run with evaluation
trains exactly as one without.

Losses and accuracies are totals over every real masked position (every real sequence for
NSP) divided by their count, not means of per-batch means: packed and unpacked readings of the
same instances give the same numbers, and so do any batch size and any number of ranks (rank r
evaluates batches r, r + world, ...; the sums are added over the ranks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corpus_pipeline.train.data import MODEL_KEYS, TENSOR_KEYS

#: Order of :meth:`EvalTotals.as_list` (summed over ranks as one vector).
_FIELDS = (
    "mlm_loss_sum",
    "mlm_correct",
    "mlm_count",
    "nsp_loss_sum",
    "nsp_correct",
    "nsp_count",
    "batches",
)


@dataclass
class EvalTotals:
    """Sums over the evaluated batches (add them over ranks, then read the means)."""

    mlm_loss_sum: float = 0.0
    mlm_correct: float = 0.0
    mlm_count: float = 0.0
    nsp_loss_sum: float = 0.0
    nsp_correct: float = 0.0
    nsp_count: float = 0.0
    batches: float = 0.0

    def as_list(self) -> list[float]:
        return [float(getattr(self, k)) for k in _FIELDS]

    @classmethod
    def from_list(cls, values: list[float]) -> EvalTotals:
        return cls(**dict(zip(_FIELDS, values, strict=True)))

    def metrics(self) -> dict[str, float | int]:
        """``mlm_loss``, ``mlm_accuracy``, ``nsp_loss``, ``nsp_accuracy`` (means; NaN when
        nothing was counted) and the counts ``batches``, ``masked``, ``sequences``."""
        m, q = self.mlm_count, self.nsp_count
        nan = float("nan")
        return {
            "mlm_loss": self.mlm_loss_sum / m if m else nan,
            "mlm_accuracy": self.mlm_correct / m if m else nan,
            "nsp_loss": self.nsp_loss_sum / q if q else nan,
            "nsp_accuracy": self.nsp_correct / q if q else nan,
            "batches": int(self.batches),
            "masked": int(m),
            "sequences": int(q),
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, np.ndarray]],
    device: torch.device,
    *,
    autocast: Any = None,
    rank: int = 0,
    world: int = 1,
) -> EvalTotals:
    """This rank's sums over its share of ``batches`` (batch i goes to rank ``i % world``).

    Args:
        model: A :class:`~corpus_pipeline.train.model.BertForPreTraining` (not DDP-wrapped:
            evaluation needs no gradient synchronisation).
        batches: numpy batches (:func:`~corpus_pipeline.train.data.collate` layout).
        device: Where the model is.
        autocast: A context manager to run the forward pass in (bf16 on CUDA), or None.
        rank: This rank.
        world: Number of ranks.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(_FIELDS), dtype=torch.float64, device=device)
    try:
        for i, batch in enumerate(batches):
            if i % world != rank:
                continue
            t = {k: torch.from_numpy(batch[k]).to(device) for k in TENSOR_KEYS}
            with autocast if autocast is not None else contextlib.nullcontext():
                mlm_logits, nsp_logits = model(*(t[k] for k in MODEL_KEYS))
            mlm_labels = t["masked_lm_ids"][t["masked_lm_weights"] > 0]
            nsp_labels = t["next_sentence_labels"][t["nsp_weights"] > 0]
            mlm_logits, nsp_logits = mlm_logits.float(), nsp_logits.float()
            sums += torch.stack(
                [
                    F.cross_entropy(mlm_logits, mlm_labels, reduction="sum").double(),
                    (mlm_logits.argmax(-1) == mlm_labels).sum().double(),
                    torch.tensor(float(mlm_labels.numel()), dtype=torch.float64, device=device),
                    F.cross_entropy(nsp_logits, nsp_labels, reduction="sum").double(),
                    (nsp_logits.argmax(-1) == nsp_labels).sum().double(),
                    torch.tensor(float(nsp_labels.numel()), dtype=torch.float64, device=device),
                    torch.tensor(1.0, dtype=torch.float64, device=device),
                ]
            )
    finally:
        model.train(was_training)
    return EvalTotals.from_list([float(x) for x in sums.cpu().tolist()])
