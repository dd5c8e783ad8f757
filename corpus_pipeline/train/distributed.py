"""Where a run computes and how its ranks agree: the device, the process group, collectives.

One process per device; several under ``torchrun`` (the process group is initialised from the
environment when ``WORLD_SIZE > 1``: gloo on CPU, nccl on CUDA, each rank on the GPU of its
``LOCAL_RANK``). Every helper here is a no-op for a single process, so the loop calls them
unconditionally.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from corpus_pipeline.errors import UserError


@dataclass
class Dist:
    """This process's place in the run.

    Attributes:
        world: Number of ranks.
        rank: This rank (0 logs and writes files).
        local_rank: This rank's index on its machine (its GPU).
    """

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs and writes the run's files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise UserError(
            f"environment variable {name}={os.environ[name]!r} is not an integer"
        ) from None


def setup_device(choice: str) -> tuple[torch.device, Dist]:
    """Pick the device and, under torchrun (``WORLD_SIZE > 1``), join the process group.

    Args:
        choice: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Raises:
        UserError: An unknown choice, ``cuda`` without a CUDA device, or a ``LOCAL_RANK``
            with no GPU of its own (more processes per machine than GPUs).
    """
    if choice not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {choice!r}: choose auto, cpu or cuda")
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise UserError("--device cuda: no CUDA device is available (this torch is CPU-only?)")
    use_cuda = cuda and choice != "cpu"
    d = Dist(_env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0))
    if use_cuda:
        count = torch.cuda.device_count()
        if not 0 <= d.local_rank < count:
            raise UserError(
                f"LOCAL_RANK={d.local_rank} but this machine has {count} visible GPU(s): start "
                "at most one process per GPU (torchrun --nproc-per-node), or --device cpu"
            )
        torch.cuda.set_device(d.local_rank)
        device = torch.device("cuda", d.local_rank)
    else:
        device = torch.device("cpu")
    if d.world > 1 and not dist.is_initialized():
        # NCCL binds its communicator to this rank's GPU (else barrier() guesses a device).
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            init_method="env://",
            device_id=device if use_cuda else None,
        )
        d.world, d.rank = dist.get_world_size(), dist.get_rank()
    return device, d


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Destroy, on the way out, a process group that did not exist on the way in."""
    owned = not (dist.is_available() and dist.is_initialized())
    try:
        yield
    finally:
        if owned and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def gather(obj: Any, d: Dist) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    """Element-wise sum over the ranks (float64)."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(x) for x in t.tolist()]


def _reduce_int(value: int, d: Dist, device: torch.device, op: dist.ReduceOp.RedOpType) -> int:
    """``value`` reduced over the ranks by ``op`` (``value`` itself on one rank)."""
    if d.world == 1:
        return value
    flag = torch.tensor([value], device=device)
    dist.all_reduce(flag, op=op)
    return int(flag.item())


def all_max(value: int, d: Dist, device: torch.device) -> int:
    """The largest ``value`` over the ranks."""
    return _reduce_int(value, d, device, dist.ReduceOp.MAX)


def all_min(value: int, d: Dist, device: torch.device) -> int:
    """The smallest ``value`` over the ranks."""
    return _reduce_int(value, d, device, dist.ReduceOp.MIN)


def barrier(d: Dist) -> None:
    """Wait for every rank."""
    if d.world > 1:
        dist.barrier()


def rng_state(cuda: bool) -> dict[str, Any]:
    """This process's random number generator states (CPU, and its GPU's on a CUDA run)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], cuda: bool) -> None:
    """Restore :func:`rng_state`; a GPU state is restored only on a CUDA run (a CPU run never
    initialises CUDA for it), and a CUDA run resuming a CPU checkpoint keeps its seeded one."""
    torch.set_rng_state(state["torch"])
    if cuda and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
