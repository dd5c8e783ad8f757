"""Optimisation: AdamW with BERT's weight-decay groups, the warmup/decay schedule, precision.

CPU runs train in float32. CUDA runs train under autocast: bfloat16 where the GPU computes it
natively (Ampere and later), which needs no loss scaling; float16 with a ``GradScaler`` on older
GPUs, where bfloat16 is emulated (slow) and float16 gradients underflow without scaling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm weights (BERT's choice)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6)


def warmup_linear(total: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warmup to 1 over ``warmup`` steps, then linear decay to 0."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


class Precision:
    """The arithmetic of a run on ``device``: autocast dtype and loss scaling.

    Attributes:
        dtype: The autocast dtype (None: float32, no autocast).
        scaler: The float16 loss scaler (None unless ``dtype`` is float16).
    """

    def __init__(self, device: torch.device) -> None:
        self.device_type = device.type
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported(including_emulation=False):
                self.dtype = torch.bfloat16
            else:
                self.dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """A fresh context to run a forward pass in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        params: Iterable[nn.Parameter],
        max_grad_norm: float,
    ) -> None:
        """Backward, clip (``max_grad_norm`` > 0) and step; with a scaler the gradients are
        unscaled before clipping, and a step whose gradients overflowed is skipped."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if max_grad_norm > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state for a checkpoint (None without a scaler)."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict` (ignored without a scaler, or from a run without one)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
