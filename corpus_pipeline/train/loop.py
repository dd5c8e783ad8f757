"""The training loop: devices, DDP, AdamW with linear warmup/decay, logging, checkpoints.

One process per device; several under ``torchrun`` (DDP initialised from the environment when
``WORLD_SIZE > 1``: gloo on CPU, nccl on CUDA). CUDA runs under bf16 autocast (no loss scaling
is needed for bf16); CPU runs in float32 with deterministic algorithms, so the same seed gives
the same loss curve.

Ranks may hold a batch more or less at the end of an epoch (the work split only requires
nothing to divide anything). Before each step the ranks agree (an all-reduce of one flag) that
every one of them has a batch; when one has run out the epoch ends for all, and the few
leftover batches of the others are skipped, so DDP never waits on a rank that stopped.

A checkpoint holds the model, optimizer, scheduler, step, every rank's loader state and RNG
states, the model config and the data signature (vocabulary sha256/size, S, P); resuming
refuses data whose signature differs, and a checkpoint already at or past ``--steps``.

What a run leaves behind (``output_dir``, ``train-out`` on the command line): ``model.pt``,
the final weights with the model config and the data signature, and, without an explicit
``checkpoint_dir``, the checkpoints under ``checkpoints/``. SIGTERM and SIGINT (Ctrl-C) end the
run after the current step with a checkpoint (exit 143 / 130); a resumed run first cuts the
``--metrics`` file back to the checkpoint's step, so a step killed after it was logged is not
logged twice. With ``export_hf`` the final model is also written as a Hugging Face
``BertForPreTraining`` folder (``hf_export.py``).

Held-out evaluation (``eval_data``, ``evaluate.py``): every ``eval_every`` steps and at the
end, masked-LM and NSP loss and accuracy on the first ``eval_batches`` batches of another
dataset folder in file order, in eval mode without gradients; a log line ``eval step ...``
and a ``--metrics`` row with ``"split": "eval"`` (training rows have no ``split``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from corpus_pipeline import hashing
from corpus_pipeline.errors import UserError
from corpus_pipeline.train.data import (
    DEFAULT_SHUFFLE_BUFFER,
    MODEL_KEYS,
    TENSOR_KEYS,
    DatasetInfo,
    LoaderState,
    PretrainingStream,
    check_signature,
    open_dataset,
    ordered_batches,
    resolve_vocab,
)
from corpus_pipeline.train.evaluate import EvalTotals, evaluate
from corpus_pipeline.train.loader import make_loader
from corpus_pipeline.train.model import (
    PRESETS,
    BertConfig,
    BertForPreTraining,
    num_parameters,
    preset_config,
    pretraining_losses,
)

#: Default peak learning rate per preset (AdamW, batch 32..256).
DEFAULT_LR = {
    "tiny": 1e-3,
    "mini": 5e-4,
    "small": 3e-4,
    "medium": 3e-4,
    "base": 1e-4,
    "large": 5e-5,
}
CHECKPOINT_RE = re.compile(r"^step_(\d{8})\.pt$")
MODEL_FILE = "model.pt"
#: Held-out batches evaluated by default (the first ones of the eval dataset, file order).
DEFAULT_EVAL_BATCHES = 100
_SEED_MASK = 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class TrainConfig:
    """Everything a run needs (the CLI flags, see ``corpus_pipeline.train``)."""

    data: str
    steps: int = 200
    preset: str | None = None
    batch_size: int = 32
    lr: float | None = None
    warmup_steps: int | None = None
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    format: str | None = None
    seed: int = 12345
    output_dir: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    resume: str | None = None
    stop_at: int | None = None
    log_every: int = 10
    tensorboard: str | None = None
    metrics: str | None = None
    dynamic_masking: bool = False
    vocab: str | None = None
    device: str = "auto"
    workers: int | None = None
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    dropout: float | None = None
    deterministic: bool = False
    progress: bool | None = None
    unpack: bool = False
    threads: int | None = None
    eval_data: str | None = None
    eval_every: int = 0
    eval_batches: int | None = None
    export_hf: str | None = None


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT ended the run after a step (a checkpoint was written if possible).

    Attributes:
        exit_code: 128 + the signal number (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


@dataclass
class TrainResult:
    """What a run did (rank 0's view; losses are this rank's, one per step of this run).

    Attributes:
        first_step: Global step of the first step of this run (1-based).
        last_step: Global step reached.
        mlm_losses: Masked-LM loss of every step of this run.
        nsp_losses: NSP loss of every step of this run.
        intervals: Per log interval: ``{"step", "seconds", "tokens", "slots", "rows"}`` summed
            over ranks (tokens = real tokens, slots = B*S).
        checkpoint: Last checkpoint written, if any.
        model: The final model file written (``output_dir/model.pt``), if any.
        evals: Every held-out evaluation: ``{"step", "mlm_loss", "mlm_accuracy", "nsp_loss",
            "nsp_accuracy", "batches", "masked", "sequences"}`` (summed over ranks).
        hf_export: The Hugging Face folder written by ``--export-hf``, if any.
    """

    first_step: int
    last_step: int = 0
    mlm_losses: list[float] = field(default_factory=list)
    nsp_losses: list[float] = field(default_factory=list)
    intervals: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None
    model: str | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    hf_export: str | None = None

    def throughput(self, skip_first: bool = True) -> tuple[float, float]:
        """(real tokens/s, real-token fraction) over the logged intervals (the first one,
        which includes start-up, left out when there are others)."""
        iv = self.intervals[1:] if skip_first and len(self.intervals) > 1 else self.intervals
        secs = sum(i["seconds"] for i in iv)
        tokens = sum(i["tokens"] for i in iv)
        slots = sum(i["slots"] for i in iv)
        return (tokens / secs if secs else 0.0, tokens / slots if slots else 0.0)


# ------------------------------------------------------------------------------------------
# Environment


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise UserError(
            f"environment variable {name}={os.environ[name]!r} is not an integer"
        ) from None


def setup_device(choice: str) -> tuple[torch.device, Dist]:
    """Pick the device and, under torchrun (``WORLD_SIZE > 1``), join the process group."""
    if choice not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {choice!r}: choose auto, cpu or cuda")
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise UserError("--device cuda: no CUDA device is available (this torch is CPU-only?)")
    use_cuda = cuda and choice != "cpu"
    d = Dist(_env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
        device = torch.device("cuda", d.local_rank)
    else:
        device = torch.device("cpu")
    if d.world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        d.world, d.rank = dist.get_world_size(), dist.get_rank()
    return device, d


def _gather(obj: Any, d: Dist) -> list[Any]:
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def _all_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(x) for x in t.tolist()]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------------------------------
# Optimisation


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


def warmup_linear(total: int, warmup: int) -> Any:
    """LR multiplier: linear warmup to 1 over ``warmup`` steps, then linear decay to 0."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


# ------------------------------------------------------------------------------------------
# Checkpoints


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


def _save_atomic(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ------------------------------------------------------------------------------------------
# The run


class Trainer:
    """One training run (construct, then :meth:`run`)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        if cfg.steps < 1:
            raise UserError("--steps must be >= 1")
        if cfg.log_every < 1:
            raise UserError("--log-every must be >= 1")
        self.device, self.dist = setup_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        self.info: DatasetInfo = open_dataset(cfg.data, cfg.format, unpack=cfg.unpack)
        if cfg.vocab is not None:
            resolve_vocab(self.info, cfg.vocab)  # refuses a vocab.txt that is not the data's
        self.ckpt: dict[str, Any] | None = None
        self.ckpt_path: str | None = None
        self.ckpt_dir: str | None = cfg.checkpoint_dir or (
            os.path.join(cfg.output_dir, "checkpoints") if cfg.output_dir else None
        )
        self._signal: int | None = None
        if cfg.resume is not None:
            self._load_resume()
        self.preset = self._preset()
        self.model_cfg = self._model_config()
        check_signature(self.info, {"vocab_size": self.model_cfg.vocab_size}, "model")
        if self.info.max_seq_length > self.model_cfg.max_position_embeddings:
            raise UserError(
                f"{self.info.path}: S={self.info.max_seq_length} exceeds the model's "
                f"{self.model_cfg.max_position_embeddings} positions"
            )
        self.workers = cfg.workers if cfg.workers is not None else (4 if self.cuda else 0)
        if self.workers < 0:
            raise UserError("--workers must be >= 0")
        self.lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[self.preset]
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 10)
        self.eval_info = self._open_eval()
        self.export_vocab: Path | None = None
        if cfg.export_hf:
            from corpus_pipeline.train.hf_export import check_export_dir, require_transformers

            require_transformers()
            check_export_dir(cfg.export_hf)
            # Found and checked now, not after hours of training.
            self.export_vocab = resolve_vocab(self.info, cfg.vocab)

    # --- setup -------------------------------------------------------------------------

    def _open_eval(self) -> DatasetInfo | None:
        """The held-out dataset (read like the training data: the same format when it has
        it, packed or unpacked alike), checked against the training data's vocabulary and P."""
        cfg = self.cfg
        if cfg.eval_every < 0:
            raise UserError("--eval-every must be >= 0 (0: evaluate at the end only)")
        if cfg.eval_batches is not None and cfg.eval_batches < 0:
            raise UserError("--eval-batches must be >= 0 (0: every batch)")
        if not cfg.eval_data:
            if cfg.eval_every or cfg.eval_batches is not None:
                raise UserError("--eval-every/--eval-batches need --eval-data DIR")
            return None
        try:
            info = open_dataset(cfg.eval_data, self.info.fmt, unpack=cfg.unpack)
        except UserError:
            info = open_dataset(cfg.eval_data, None, unpack=cfg.unpack)
        sig = self.info.signature()
        check_signature(
            info,
            {k: sig[k] for k in ("vocab_sha256", "vocab_size", "max_predictions")},
            f"training data {self.info.path}",
        )
        if info.max_seq_length > self.model_cfg.max_position_embeddings:
            raise UserError(
                f"{info.path}: S={info.max_seq_length} exceeds the model's "
                f"{self.model_cfg.max_position_embeddings} positions"
            )
        if info.num_records == 0:
            raise UserError(f"{info.path}: --eval-data has no records: use a non-empty dataset")
        return info

    def _load_resume(self) -> None:
        cfg = self.cfg
        path = cfg.resume
        if path in ("", "latest"):
            if not self.ckpt_dir:
                raise UserError("--resume needs --checkpoint-dir (or a checkpoint path)")
            path = latest_checkpoint(self.ckpt_dir)
            if path is None:
                raise UserError(f"{self.ckpt_dir}: no step_*.pt checkpoint to resume from")
        assert path is not None
        self.ckpt = load_checkpoint(path)
        self.ckpt_path = path
        check_signature(self.info, self.ckpt["data"], f"checkpoint {path}")
        step = int(self.ckpt.get("step", 0))
        if step > cfg.steps:
            raise UserError(
                f"--steps {cfg.steps} is below the step of checkpoint {path} ({step}): nothing "
                f"to train; pass --steps above {step} to train further"
            )
        if cfg.stop_at is not None and cfg.stop_at <= step:
            raise UserError(
                f"--stop-at {cfg.stop_at} is not after the step of checkpoint {path} ({step}): "
                "nothing to train"
            )

    def _preset(self) -> str:
        if self.ckpt is not None:
            saved = str(self.ckpt.get("preset", ""))
            if self.cfg.preset is not None and self.cfg.preset != saved:
                raise UserError(
                    f"--preset {self.cfg.preset}: checkpoint {self.ckpt_path} is a {saved} model"
                )
            return saved
        name = self.cfg.preset or "tiny"
        if name not in PRESETS:
            raise UserError(f"--preset {name!r}: choose from {', '.join(PRESETS)}")
        return name

    def _model_config(self) -> BertConfig:
        if self.ckpt is not None:
            return BertConfig.from_dict(self.ckpt["model_config"])
        over: dict[str, Any] = {}
        if self.cfg.dropout is not None:
            over = {"dropout": self.cfg.dropout, "attention_dropout": self.cfg.dropout}
        return preset_config(self.preset, self.info.vocab_size, **over)

    def _log(self, line: str) -> None:
        if self.dist.main:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    def _warn(self, line: str) -> None:
        if self.dist.main:
            print(f"warning: {line}", file=sys.stderr, flush=True)

    # --- the loop ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _torch_settings(self) -> Iterator[None]:
        """Determinism and thread settings for the run, restored afterwards (in-process
        callers such as tests and benchmarks keep theirs)."""
        cfg = self.cfg
        det = torch.are_deterministic_algorithms_enabled()
        warn = torch.is_deterministic_algorithms_warn_only_enabled()
        fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
        threads = torch.get_num_threads()
        try:
            if self.cuda:
                if cfg.deterministic:
                    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                    torch.use_deterministic_algorithms(True)
            else:
                torch.use_deterministic_algorithms(True, warn_only=True)
                # Deterministic mode also NaN-fills every new tensor; that costs ~15% of a CPU
                # step and adds nothing to reproducibility (every buffer we read is written).
                torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
            if cfg.threads is not None:
                torch.set_num_threads(max(1, cfg.threads))
            yield
        finally:
            torch.use_deterministic_algorithms(det, warn_only=warn)
            torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
            torch.set_num_threads(threads)

    def run(self) -> TrainResult:
        with self._torch_settings(), self._signals():
            return self._run()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT set a flag the loop checks after each step (checkpoint, then exit);
        a second one interrupts at once. Only the main thread can install handlers: elsewhere
        (a trainer run from a worker thread) signals keep their behaviour."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            del frame
            if self._signal is not None:  # a second signal: stop now
                signal.signal(signum, previous.get(signum, signal.SIG_DFL))
                raise KeyboardInterrupt
            self._signal = signum

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for num, old in previous.items():
                signal.signal(num, old)

    def _stop_requested(self) -> int | None:
        """The signal that asked this run to stop (on any rank), or None."""
        if self.dist.world > 1:
            flag = torch.tensor([self._signal or 0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return int(flag.item()) or None
        return self._signal

    def _trim_metrics(self, step: int) -> None:
        """Cut the metrics file back to ``step``: the steps after the checkpoint are trained
        again (and logged again) by the resumed run."""
        path = self.cfg.metrics
        if not path or not self.dist.main or not os.path.isfile(path):
            return
        kept = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    if int(row["step"]) > step:
                        continue
                except (ValueError, KeyError, TypeError):
                    continue  # the torn last line of a killed run
                kept.append(line if line.endswith("\n") else line + "\n")
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, path)

    def _run(self) -> TrainResult:
        cfg, d, device = self.cfg, self.dist, self.device
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        model = BertForPreTraining(self.model_cfg).to(device)
        optimizer = make_optimizer(model, self.lr, cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_linear(cfg.steps, self.warmup)
        )
        step = 0
        state = LoaderState.fresh(self.workers)
        if self.ckpt is not None:
            step = self._restore(model, optimizer, scheduler)
            state = self._restore_loader()
            self._trim_metrics(step)
        else:
            # Dropout differs per rank, deterministically.
            torch.manual_seed(hashing.stable_hash(cfg.seed, "dropout", d.rank) & _SEED_MASK)
        net: nn.Module = model
        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[d.local_rank] if self.cuda else None)
        stream = PretrainingStream(
            self.info,
            cfg.batch_size,
            cfg.seed,
            world_size=d.world,
            rank=d.rank,
            shuffle_buffer=cfg.shuffle_buffer,
            dynamic=cfg.dynamic_masking,
            vocab_path=cfg.vocab,
        )
        loader = make_loader(stream, self.workers, pin_memory=self.cuda)
        end = min(cfg.steps, cfg.stop_at) if cfg.stop_at is not None else cfg.steps
        result = TrainResult(first_step=step + 1)
        if step >= end:  # resumed from a checkpoint at --steps: the run is complete
            result.last_step = step
            self._log(
                f"train: nothing to train: checkpoint {self.ckpt_path} is at step {step} "
                f"of {cfg.steps}"
            )
            result.hf_export = self._export(model)
            return result
        if cfg.metrics and d.main:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.metrics)), exist_ok=True)
        tb = self._tensorboard()
        # Closed in the finally below, with the progress bar and the TensorBoard writer.
        metrics = open(cfg.metrics, "a", encoding="utf-8") if cfg.metrics and d.main else None  # noqa: SIM115
        if cfg.dynamic_masking:
            layout = "dynamic masking"
        elif self.info.packed:
            layout = f"packed K={self.info.max_per_pack}"
        else:
            layout = "unpacked from packed shards" if self.info.source_packed else "unpacked"
        self._log(
            f"train: {self.info.path} ({self.info.fmt}, {layout}, S={self.info.max_seq_length}, "
            f"{self.info.num_records} records) preset={self.preset} "
            f"params={num_parameters(model) / 1e6:.1f}M device={device} world={d.world} "
            f"batch={cfg.batch_size} lr={self.lr:g} steps {step + 1}..{end} of {cfg.steps}"
        )
        from tqdm import tqdm

        # progress None: tqdm decides (a bar on a terminal, none in logs and tests).
        show = {None: None, True: False, False: True}[cfg.progress]
        bar = tqdm(
            total=end,
            initial=step,
            unit="step",
            disable=True if not d.main else show,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if self.cuda
            else contextlib.nullcontext()
        )
        window: list[tuple[torch.Tensor, torch.Tensor]] = []
        counts = [0.0, 0.0, 0.0]  # real tokens, slots, rows in this interval
        t0 = time.perf_counter()
        net.train()
        try:
            while step < end:
                stream.set_state(state)
                it = iter(loader)
                exhausted = False
                while step < end:
                    signum = self._stop_requested()
                    if signum is not None:
                        self._interrupt(signum, result, model, optimizer, scheduler, step, state)
                    try:
                        batch = self._next(it)
                    except Exception:
                        # Ctrl-C reaches DataLoader workers too: a dead worker is the signal's
                        # doing, not a data error.
                        if self._signal is None:
                            raise
                        self._interrupt(
                            self._signal, result, model, optimizer, scheduler, step, state
                        )
                    if batch is None:
                        exhausted = True
                        break
                    state.advance(int(batch["stream"]))
                    tensors = {k: batch[k].to(device, non_blocking=True) for k in TENSOR_KEYS}
                    with autocast:
                        mlm_logits, nsp_logits = net(*(tensors[k] for k in MODEL_KEYS))
                        mlm, nsp = pretraining_losses(mlm_logits, nsp_logits, tensors)
                    optimizer.zero_grad(set_to_none=True)
                    (mlm + nsp).backward()
                    if cfg.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    bar.update(1)
                    window.append((mlm.detach(), nsp.detach()))
                    counts[0] += batch["tokens"]
                    counts[1] += batch["input_ids"].numel()
                    counts[2] += batch["rows"]
                    if step % cfg.log_every == 0 or step == end:
                        self._flush(result, window, counts, t0, step, state, scheduler, tb, metrics)
                        window, counts, t0 = [], [0.0, 0.0, 0.0], time.perf_counter()
                    if self.eval_info is not None and (
                        (cfg.eval_every and step % cfg.eval_every == 0) or step == end
                    ):
                        e0 = time.perf_counter()
                        self._evaluate(model, step, autocast, result, tb, metrics)
                        t0 += time.perf_counter() - e0  # not training time (tokens/s)
                    if self.ckpt_dir and (
                        (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == end
                    ):
                        result.checkpoint = self._save(model, optimizer, scheduler, step, state)
                del it
                if exhausted:
                    if state.batches == 0:
                        raise UserError(
                            f"{self.info.path}: no batch for rank {d.rank} in epoch {state.epoch} "
                            f"({self.info.num_records} records, batch size {cfg.batch_size}, "
                            f"{d.world} ranks): use a smaller --batch-size or more data"
                        )
                    state.next_epoch()
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
            if tb is not None:
                tb.close()
        result.last_step = step
        if cfg.output_dir:
            result.model = self._save_model(model, step)
        result.hf_export = self._export(model)
        if d.main and result.mlm_losses:
            k = min(cfg.log_every, len(result.mlm_losses))
            tail = sum(result.mlm_losses[-k:]) / k
            self._log(
                f"done: steps {result.first_step}..{step}: mlm_loss start={result.mlm_losses[0]:.4f} "
                f"end={tail:.4f} (mean of the last {k} steps), nsp_loss "
                f"end={sum(result.nsp_losses[-k:]) / k:.4f}"
                + (f"; checkpoint {result.checkpoint}" if result.checkpoint else "")
                + (f"; model {result.model}" if result.model else "")
                + (f"; Hugging Face model {result.hf_export}" if result.hf_export else "")
            )
        return result

    def _evaluate(
        self,
        model: BertForPreTraining,
        step: int,
        autocast: Any,
        result: TrainResult,
        tb: Any,
        metrics: Any,
    ) -> None:
        """Held-out MLM/NSP loss and accuracy on the eval dataset's first batches (file order),
        split over the ranks and summed; logged, appended to ``--metrics`` (``"split":
        "eval"``) and to TensorBoard under ``eval/``."""
        info = self.eval_info
        assert info is not None
        d, cfg = self.dist, self.cfg
        t0 = time.perf_counter()
        limit = DEFAULT_EVAL_BATCHES if cfg.eval_batches is None else cfg.eval_batches
        totals = evaluate(
            model,
            ordered_batches(info, cfg.batch_size, limit or None),
            self.device,
            autocast=autocast,
            rank=d.rank,
            world=d.world,
        )
        summed = EvalTotals.from_list(_all_sum(totals.as_list(), d, self.device))
        values = summed.metrics()
        result.evals.append({"step": step, **values})
        if metrics is not None:
            row = {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in values.items()
            }
            metrics.write(json.dumps({"step": step, "split": "eval", **row}) + "\n")
            metrics.flush()
        self._log(
            f"eval step {step}/{cfg.steps} mlm_loss={values['mlm_loss']:.4f} "
            f"mlm_acc={values['mlm_accuracy']:.4f} nsp_loss={values['nsp_loss']:.4f} "
            f"nsp_acc={values['nsp_accuracy']:.4f} ({values['batches']} batches, "
            f"{values['masked']} masked tokens, {values['sequences']} sequences of "
            f"{info.path}; {time.perf_counter() - t0:.1f}s)"
        )
        if tb is not None:
            for key in ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"):
                tb.add_scalar(f"eval/{key}", values[key], step)

    def _export(self, model: BertForPreTraining) -> str | None:
        """``--export-hf``: the model as a Hugging Face BertForPreTraining folder (rank 0)."""
        directory = self.cfg.export_hf
        if not directory:
            return None
        if self.dist.main:
            from corpus_pipeline.train.hf_export import export_hf

            assert self.export_vocab is not None
            export_hf(model, directory, self.export_vocab, self.info.vocab_cased)
            self._log(
                f"export: Hugging Face BertForPreTraining in {directory} (config.json, "
                f"model.safetensors, vocab.txt, tokenizer_config.json do_lower_case="
                f"{not self.info.vocab_cased})"
            )
        return directory

    def _interrupt(
        self,
        signum: int,
        result: TrainResult,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        step: int,
        state: LoaderState,
    ) -> NoReturn:
        """Checkpoint the last finished step (when there is a checkpoint folder), then raise."""
        name = signal.Signals(signum).name
        path: str | None = None
        if self.ckpt_dir and step >= result.first_step:  # a step was trained since the start
            path = self._save(model, optimizer, scheduler, step, state)
        elif self.ckpt_path and step == result.first_step - 1:
            path = self.ckpt_path
        where = f"checkpoint {path}; continue with --resume" if path else "no checkpoint written"
        raise TrainingInterrupted(f"interrupted by {name} after step {step}: {where}", signum)

    def _save_model(self, model: nn.Module, step: int) -> str | None:
        """The final model (weights, config, data signature) as ``output_dir/model.pt``."""
        directory = self.cfg.output_dir
        assert directory is not None
        path = os.path.join(directory, MODEL_FILE)
        if self.dist.main:
            os.makedirs(directory, exist_ok=True)
            _save_atomic(
                {
                    "step": step,
                    "model": model.state_dict(),
                    "model_config": self.model_cfg.to_dict(),
                    "preset": self.preset,
                    "data": self.info.signature(),
                },
                path,
            )
        return path

    def _next(self, it: Iterator[Any]) -> Any:
        """The next batch, or None when this rank or any other has run out (lockstep)."""
        batch = next(it, None)
        if self.dist.world > 1:
            flag = torch.tensor([0 if batch is None else 1], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if int(flag.item()) == 0:
                return None
        return batch

    def _flush(
        self,
        result: TrainResult,
        window: list[tuple[torch.Tensor, torch.Tensor]],
        counts: list[float],
        t0: float,
        step: int,
        state: LoaderState,
        scheduler: Any,
        tb: Any,
        metrics: Any,
    ) -> None:
        losses = torch.stack([torch.stack(w) for w in window]).float().cpu().tolist()
        secs = time.perf_counter() - t0
        tokens, slots, rows = _all_sum(counts, self.dist, self.device)
        first = step - len(losses) + 1
        lr = float(scheduler.get_last_lr()[0])
        for i, (m, n) in enumerate(losses):
            result.mlm_losses.append(m)
            result.nsp_losses.append(n)
            if metrics is not None:
                metrics.write(
                    json.dumps(
                        {"step": first + i, "mlm_loss": m, "nsp_loss": n, "epoch": state.epoch}
                    )
                    + "\n"
                )
        if metrics is not None:
            metrics.flush()
        result.intervals.append(
            {"step": step, "seconds": secs, "tokens": tokens, "slots": slots, "rows": rows}
        )
        mlm = sum(x[0] for x in losses) / len(losses)
        nsp = sum(x[1] for x in losses) / len(losses)
        tps = tokens / secs if secs > 0 else math.inf
        real = tokens / slots if slots else 0.0
        self._log(
            f"step {step}/{self.cfg.steps} mlm_loss={mlm:.4f} nsp_loss={nsp:.4f} lr={lr:.3e} "
            f"tokens/s={tps:,.0f} real_tokens={real:.3f} epoch={state.epoch}"
        )
        if tb is not None:
            for tag, v in (
                ("train/mlm_loss", mlm),
                ("train/nsp_loss", nsp),
                ("train/lr", lr),
                ("train/tokens_per_s", tps),
                ("train/real_token_fraction", real),
            ):
                tb.add_scalar(tag, v, step)

    def _tensorboard(self) -> Any:
        if not self.cfg.tensorboard or not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._warn(
                f"--tensorboard {self.cfg.tensorboard}: tensorboard is not installed "
                "(pip install tensorboard); no event files are written"
            )
            return None
        return SummaryWriter(self.cfg.tensorboard)

    # --- checkpoints -------------------------------------------------------------------

    def _save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        step: int,
        state: LoaderState,
    ) -> str | None:
        d = self.dist
        loaders = _gather(state.to_dict(), d)
        rngs = _gather(_rng_state(), d)
        directory = self.ckpt_dir
        assert directory is not None
        path = os.path.join(directory, f"step_{step:08d}.pt")
        if d.main:
            os.makedirs(directory, exist_ok=True)
            cfg = self.cfg
            _save_atomic(
                {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "loader": loaders,
                    "rng": rngs,
                    "model_config": self.model_cfg.to_dict(),
                    "preset": self.preset,
                    "data": self.info.signature(),
                    "run": {
                        "steps": cfg.steps,
                        "batch_size": cfg.batch_size,
                        "seed": cfg.seed,
                        "world_size": d.world,
                        "workers": self.workers,
                        "dynamic_masking": cfg.dynamic_masking,
                        "format": self.info.fmt,
                        "lr": self.lr,
                        "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    },
                },
                path,
            )
            self._prune(directory)
        if d.world > 1:
            dist.barrier()
        return path

    def _prune(self, directory: str) -> None:
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        found = sorted(n for n in os.listdir(directory) if CHECKPOINT_RE.match(n))
        for name in found[:-keep]:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))

    def _restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
        ckpt = self.ckpt
        assert ckpt is not None
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        run = ckpt.get("run", {})
        if run.get("steps") not in (None, self.cfg.steps):
            self._warn(
                f"--steps {self.cfg.steps} differs from the checkpoint's {run.get('steps')}: the "
                "learning-rate schedule changes from here on"
            )
        rngs = ckpt.get("rng") or []
        if self.dist.rank < len(rngs):
            _set_rng_state(rngs[self.dist.rank])
        else:
            torch.manual_seed(
                hashing.stable_hash(self.cfg.seed, "dropout", self.dist.rank) & _SEED_MASK
            )
        return int(ckpt["step"])

    def _restore_loader(self) -> LoaderState:
        ckpt = self.ckpt
        assert ckpt is not None
        run = ckpt.get("run", {})
        loaders = ckpt.get("loader") or []
        same = (
            run.get("world_size") == self.dist.world
            and run.get("batch_size") == self.cfg.batch_size
            and run.get("seed") == self.cfg.seed
            and bool(run.get("dynamic_masking")) == self.cfg.dynamic_masking
            and len(loaders) == self.dist.world
        )
        saved = loaders[min(self.dist.rank, len(loaders) - 1)] if loaders else {"epoch": 0}
        state, exact = LoaderState.from_dict(saved, self.workers)
        if not (same and exact):
            self._warn(
                "resuming with a different world size, worker count, batch size, seed or "
                "masking mode than the checkpoint: the data order differs from an "
                "uninterrupted run (same epoch, same number of batches skipped)"
            )
        return state


def train(cfg: TrainConfig) -> TrainResult:
    """Run training; see :class:`TrainConfig`. A process group it creates is destroyed after."""
    owned = not (dist.is_available() and dist.is_initialized())
    try:
        return Trainer(cfg).run()
    finally:
        if owned and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """Where the checkpoint of ``step`` is written."""
    return Path(directory) / f"step_{step:08d}.pt"
