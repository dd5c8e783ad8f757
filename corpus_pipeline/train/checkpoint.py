"""Checkpoints and the final model file: writing, finding, loading and resuming from them.

A checkpoint (``step_XXXXXXXX.pt``) holds the model, optimizer, scheduler (and float16 loss
scaler) states, the step, every rank's loader state and RNG states, the model config, the
preset and the data signature (vocabulary sha256/size, S, P); resuming refuses data whose
signature differs (``loop.Trainer``). The final model (``model.pt``) holds the weights, model
config, preset and data signature. Tensors are written from CPU copies, so a file written on a
GPU loads on a machine without one; loading maps everything to the CPU and the optimizer moves
its state onto the parameters' device.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from corpus_pipeline import hashing
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import atomic_output
from corpus_pipeline.train.data import LoaderState
from corpus_pipeline.train.distributed import Dist, barrier, gather, rng_state, set_rng_state
from corpus_pipeline.train.optim import Precision

CHECKPOINT_RE = re.compile(r"^step_(\d{8})\.pt$")
MODEL_FILE = "model.pt"
_SEED_MASK = 0x7FFF_FFFF_FFFF_FFFF


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """Where the checkpoint of ``step`` is written."""
    return Path(directory) / f"step_{step:08d}.pt"


def latest_checkpoint(directory: str) -> str | None:
    """The highest-step ``step_XXXXXXXX.pt`` in ``directory``, or None."""
    if not os.path.isdir(directory):
        return None
    found = sorted(n for n in os.listdir(directory) if CHECKPOINT_RE.match(n))
    return os.path.join(directory, found[-1]) if found else None


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint on CPU (tensors and plain values only).

    Raises:
        UserError: Missing or unreadable file.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such checkpoint")
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: unreadable checkpoint ({first}): use another one") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "data" not in ckpt:
        raise UserError(f"{path}: not a corpus_pipeline.train checkpoint")
    return ckpt


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) on the CPU.

    ``obj`` itself when nothing in it is elsewhere, so a CPU run writes exactly what it holds.
    Copied dicts keep their class and a state dict's ``_metadata`` (module versions that
    ``load_state_dict`` reads).
    """
    if not _off_cpu(obj):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return tuple(to_cpu(v) for v in obj)


def _off_cpu(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.device.type != "cpu"
    if isinstance(obj, dict):
        return any(_off_cpu(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_off_cpu(v) for v in obj)
    return False


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`atomic_output`: a kill leaves the old file or the new
    one, never half of one."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def prune_checkpoints(directory: str, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``keep`` <= 0: keep all)."""
    if keep <= 0:
        return
    found = sorted(n for n in os.listdir(directory) if CHECKPOINT_RE.match(n))
    for name in found[:-keep]:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))


class Checkpoints:
    """Writes a run's checkpoints and final model (every rank calls; rank 0 writes).

    Args:
        directory: The checkpoint folder (None: checkpoints are not written).
        keep: Newest checkpoints kept (0: all).
        dist: This process's place in the run.
        cuda: The run is on a GPU (its RNG state is saved too).
        header: What every file holds besides weights: ``model_config``, ``preset``, ``data``.
        run: The run's settings recorded in checkpoints (``steps``, ``batch_size``, ``seed``,
            ``world_size``, ``workers``, ``dynamic_masking``, ``format``, ``lr``).
    """

    def __init__(
        self,
        directory: str | None,
        keep: int,
        dist: Dist,
        cuda: bool,
        header: dict[str, Any],
        run: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.keep = keep
        self.dist = dist
        self.cuda = cuda
        self.header = header
        self.run = run

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        precision: Precision,
        state: LoaderState,
    ) -> str:
        """Write ``step_XXXXXXXX.pt`` (collective: every rank must call it)."""
        d = self.dist
        loaders = gather(state.to_dict(), d)
        rngs = gather(rng_state(self.cuda), d)
        directory = self.directory
        assert directory is not None
        path = str(checkpoint_path(directory, step))
        if d.main:
            os.makedirs(directory, exist_ok=True)
            ckpt: dict[str, Any] = {
                "step": step,
                "model": to_cpu(model.state_dict()),
                "optimizer": to_cpu(optimizer.state_dict()),
                "scheduler": scheduler.state_dict(),
                "loader": loaders,
                "rng": rngs,
                "model_config": self.header["model_config"],
                "preset": self.header["preset"],
                "data": self.header["data"],
                "run": {
                    **self.run,
                    "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                },
            }
            scaler = precision.state_dict()
            if scaler is not None:
                ckpt["scaler"] = scaler
            save_atomic(ckpt, path)
            prune_checkpoints(directory, self.keep)
        barrier(d)
        return path

    def save_model(self, directory: str, step: int, model: nn.Module) -> str:
        """The final model (weights, config, data signature) as ``directory/model.pt``."""
        path = os.path.join(directory, MODEL_FILE)
        if self.dist.main:
            os.makedirs(directory, exist_ok=True)
            save_atomic(
                {
                    "step": step,
                    "model": to_cpu(model.state_dict()),
                    "model_config": self.header["model_config"],
                    "preset": self.header["preset"],
                    "data": self.header["data"],
                },
                path,
            )
        return path


def restore_training(
    ckpt: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    precision: Precision,
    *,
    steps: int,
    seed: int,
    dist: Dist,
    cuda: bool,
    warn: Callable[[str], None],
) -> int:
    """Load the model, optimizer, scheduler, loss scaler and this rank's RNG states from a
    checkpoint; returns its step. A rank the checkpoint has no RNG state for (more ranks
    than when it was written) is seeded from ``seed`` and its rank."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    precision.load_state_dict(ckpt.get("scaler"))
    run = ckpt.get("run", {})
    if run.get("steps") not in (None, steps):
        warn(
            f"--steps {steps} differs from the checkpoint's {run.get('steps')}: the "
            "learning-rate schedule changes from here on"
        )
    rngs = ckpt.get("rng") or []
    if dist.rank < len(rngs):
        set_rng_state(rngs[dist.rank], cuda)
    else:
        torch.manual_seed(dropout_seed(seed, dist.rank))
    return int(ckpt["step"])


def dropout_seed(seed: int, rank: int) -> int:
    """The seed of a rank's dropout masks (they differ per rank, deterministically)."""
    return hashing.stable_hash(seed, "dropout", rank) & _SEED_MASK


def restore_loader(
    ckpt: dict[str, Any],
    *,
    dist: Dist,
    batch_size: int,
    seed: int,
    dynamic_masking: bool,
    workers: int,
    warn: Callable[[str], None],
) -> LoaderState:
    """This rank's loader position from a checkpoint; warns when the run's data order cannot
    be the uninterrupted run's (other world size, workers, batch size, seed or masking)."""
    run = ckpt.get("run", {})
    loaders = ckpt.get("loader") or []
    same = (
        run.get("world_size") == dist.world
        and run.get("batch_size") == batch_size
        and run.get("seed") == seed
        and bool(run.get("dynamic_masking")) == dynamic_masking
        and len(loaders) == dist.world
    )
    saved = loaders[min(dist.rank, len(loaders) - 1)] if loaders else {"epoch": 0}
    state, exact = LoaderState.from_dict(saved, workers)
    if not (same and exact):
        warn(
            "resuming with a different world size, worker count, batch size, seed or "
            "masking mode than the checkpoint: the data order differs from an "
            "uninterrupted run (same epoch, same number of batches skipped)"
        )
    return state
