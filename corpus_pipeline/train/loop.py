"""The training loop: one run from its set-up to the final model.

One process per device; several under ``torchrun`` (``distributed.py``). CUDA runs train under
autocast (``optim.Precision``); CPU runs train in float32 with deterministic algorithms, so the
same seed gives the same loss curve.

Ranks may hold a batch more or less at the end of an epoch (the work split only requires
nothing to divide anything). Before each step the ranks agree (an all-reduce of one flag) that
every one of them has a batch; when one has run out the epoch ends for all, and the few
leftover batches of the others are skipped, so DDP never waits on a rank that stopped.

What a run leaves behind (``output_dir``, ``train-out`` on the command line): ``model.pt``,
the final weights with the model config and the data signature, and, without an explicit
``checkpoint_dir``, the checkpoints under ``checkpoints/`` (``checkpoint.py``). SIGTERM and
SIGINT (Ctrl-C) end the run after the current step with a checkpoint (exit 143 / 130,
``signals.py``); a resumed run first cuts the ``--metrics`` file back to the checkpoint's step,
so a step killed after it was logged is not logged twice (``metrics.py``). With ``export_hf``
the final model is also written as a Hugging Face ``BertForPreTraining`` folder
(``hf_export.py``).

Held-out evaluation (``eval_data``, ``evaluate.py``): every ``eval_every`` steps and at the
end, masked-LM and NSP loss and accuracy on the first ``eval_batches`` batches of another
dataset folder in file order, in eval mode without gradients; a log line ``eval step ...``
and a ``--metrics`` row with ``"split": "eval"`` (training rows have no ``split``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import torch
from torch import nn

from corpus_pipeline.errors import UserError
from corpus_pipeline.train.checkpoint import (
    Checkpoints,
    dropout_seed,
    restore_loader,
    restore_training,
)
from corpus_pipeline.train.config import (
    DEFAULT_EVAL_BATCHES,
    TrainConfig,
    TrainingInterrupted,
    TrainResult,
)
from corpus_pipeline.train.data import (
    MODEL_KEYS,
    TENSOR_KEYS,
    LoaderState,
    PretrainingStream,
    ordered_batches,
)
from corpus_pipeline.train.distributed import all_max, all_min, all_sum, process_group, setup_device
from corpus_pipeline.train.evaluate import EvalTotals, evaluate
from corpus_pipeline.train.loader import make_loader
from corpus_pipeline.train.metrics import RunLog, log, trim_metrics, warn
from corpus_pipeline.train.model import BertForPreTraining, num_parameters, pretraining_losses
from corpus_pipeline.train.optim import Precision, make_optimizer, warmup_linear
from corpus_pipeline.train.plan import check_counts, plan_run
from corpus_pipeline.train.signals import StopSignals


class Trainer:
    """One training run (construct, then :meth:`run`)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        check_counts(cfg)
        self.device, self.dist = setup_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        self.plan = plan_run(cfg, self.cuda)
        self.info = self.plan.info
        self.signals = StopSignals()
        p = self.plan
        self.checkpoints = Checkpoints(
            p.ckpt_dir,
            cfg.keep_checkpoints,
            self.dist,
            self.cuda,
            header={
                "model_config": p.model_cfg.to_dict(),
                "preset": p.preset,
                "data": p.info.signature(),
            },
            run={
                "steps": cfg.steps,
                "batch_size": cfg.batch_size,
                "seed": cfg.seed,
                "world_size": self.dist.world,
                "workers": p.workers,
                "dynamic_masking": cfg.dynamic_masking,
                "format": p.info.fmt,
                "lr": p.lr,
            },
        )

    def _log(self, line: str) -> None:
        log(line, self.dist.main)

    def _warn(self, line: str) -> None:
        warn(line, self.dist.main)

    @contextlib.contextmanager
    def _torch_settings(self) -> Iterator[None]:
        """Determinism and thread settings for the run, restored afterwards (in-process
        callers such as tests and benchmarks keep theirs)."""
        cfg = self.cfg
        det = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
        threads = torch.get_num_threads()
        try:
            if self.cuda:
                if cfg.deterministic:
                    # Read when cuBLAS creates its handle, at the first matmul (after this).
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
            torch.use_deterministic_algorithms(det, warn_only=warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
            torch.set_num_threads(threads)

    def run(self) -> TrainResult:
        """Train from the start or the resumed checkpoint to ``steps`` (or ``stop_at``).

        Raises:
            TrainingInterrupted: SIGTERM or SIGINT (after a checkpoint, when possible).
            UserError: A rank without a single batch in an epoch.
        """
        with self._torch_settings(), self.signals:
            return self._run()

    def _run(self) -> TrainResult:
        cfg, d, device, plan = self.cfg, self.dist, self.device, self.plan
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        model = BertForPreTraining(plan.model_cfg).to(device)
        optimizer = make_optimizer(model, plan.lr, cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_linear(cfg.steps, plan.warmup)
        )
        precision = Precision(device)
        step = 0
        state = LoaderState.fresh(plan.workers)
        if plan.ckpt is not None:
            step = restore_training(
                plan.ckpt,
                model,
                optimizer,
                scheduler,
                precision,
                steps=cfg.steps,
                seed=cfg.seed,
                dist=d,
                cuda=self.cuda,
                warn=self._warn,
            )
            state = restore_loader(
                plan.ckpt,
                dist=d,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                dynamic_masking=cfg.dynamic_masking,
                workers=plan.workers,
                warn=self._warn,
            )
            if cfg.metrics and d.main:
                trim_metrics(cfg.metrics, step)
        else:
            torch.manual_seed(dropout_seed(cfg.seed, d.rank))  # differs per rank
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
        loader = make_loader(stream, plan.workers, pin_memory=self.cuda)
        end = min(cfg.steps, cfg.stop_at) if cfg.stop_at is not None else cfg.steps
        result = TrainResult(first_step=step + 1)
        if step >= end:  # resumed from a checkpoint at --steps: the run is complete
            result.last_step = step
            self._log(
                f"train: nothing to train: checkpoint {plan.ckpt_path} is at step {step} "
                f"of {cfg.steps}"
            )
            result.hf_export = self._export(model)
            return result
        runlog = RunLog(cfg.steps, d.main, cfg.metrics, cfg.tensorboard)
        try:
            self._log_start(model, step, end)
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
                            self._interrupt(
                                signum, result, model, optimizer, scheduler, precision, step, state
                            )
                        try:
                            batch = self._next(it)
                        except Exception:
                            # Ctrl-C reaches DataLoader workers too: a dead worker is the
                            # signal's doing, not a data error.
                            if self.signals.received is None:
                                raise
                            self._interrupt(
                                self.signals.received,
                                result,
                                model,
                                optimizer,
                                scheduler,
                                precision,
                                step,
                                state,
                            )
                        if batch is None:
                            exhausted = True
                            break
                        state.advance(int(batch["stream"]))
                        tensors = {k: batch[k].to(device, non_blocking=True) for k in TENSOR_KEYS}
                        with precision.autocast():
                            mlm_logits, nsp_logits = net(*(tensors[k] for k in MODEL_KEYS))
                            mlm, nsp = pretraining_losses(mlm_logits, nsp_logits, tensors)
                        precision.step(mlm + nsp, optimizer, model.parameters(), cfg.max_grad_norm)
                        scheduler.step()
                        step += 1
                        bar.update(1)
                        window.append((mlm.detach(), nsp.detach()))
                        counts[0] += batch["tokens"]
                        counts[1] += batch["input_ids"].numel()
                        counts[2] += batch["rows"]
                        if step % cfg.log_every == 0 or step == end:
                            self._flush(result, window, counts, t0, step, state, scheduler, runlog)
                            window, counts, t0 = [], [0.0, 0.0, 0.0], time.perf_counter()
                        if plan.eval_info is not None and (
                            (cfg.eval_every and step % cfg.eval_every == 0) or step == end
                        ):
                            e0 = time.perf_counter()
                            self._evaluate(model, step, precision, result, runlog)
                            t0 += time.perf_counter() - e0  # not training time (tokens/s)
                        if plan.ckpt_dir and (
                            (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
                            or step == end
                        ):
                            result.checkpoint = self.checkpoints.save(
                                step, model, optimizer, scheduler, precision, state
                            )
                    del it
                    if exhausted:
                        if state.batches == 0:
                            raise UserError(
                                f"{self.info.path}: no batch for rank {d.rank} in epoch "
                                f"{state.epoch} ({self.info.num_records} records, batch size "
                                f"{cfg.batch_size}, {d.world} ranks): use a smaller "
                                "--batch-size or more data"
                            )
                        state.next_epoch()
            finally:
                bar.close()
        finally:
            runlog.close()
        result.last_step = step
        if cfg.output_dir:
            result.model = self.checkpoints.save_model(cfg.output_dir, step, model)
        result.hf_export = self._export(model)
        self._log_done(result, step)
        return result

    def _log_start(self, model: nn.Module, step: int, end: int) -> None:
        cfg, info = self.cfg, self.info
        if cfg.dynamic_masking:
            layout = "dynamic masking"
        elif info.packed:
            layout = f"packed K={info.max_per_pack}"
        else:
            layout = "unpacked from packed shards" if info.source_packed else "unpacked"
        self._log(
            f"train: {info.path} ({info.fmt}, {layout}, S={info.max_seq_length}, "
            f"{info.num_records} records) preset={self.plan.preset} "
            f"params={num_parameters(model) / 1e6:.1f}M device={self.device} "
            f"world={self.dist.world} batch={cfg.batch_size} lr={self.plan.lr:g} "
            f"steps {step + 1}..{end} of {cfg.steps}"
        )

    def _log_done(self, result: TrainResult, step: int) -> None:
        if not (self.dist.main and result.mlm_losses):
            return
        k = min(self.cfg.log_every, len(result.mlm_losses))
        tail = sum(result.mlm_losses[-k:]) / k
        self._log(
            f"done: steps {result.first_step}..{step}: mlm_loss start={result.mlm_losses[0]:.4f} "
            f"end={tail:.4f} (mean of the last {k} steps), nsp_loss "
            f"end={sum(result.nsp_losses[-k:]) / k:.4f}"
            + (f"; checkpoint {result.checkpoint}" if result.checkpoint else "")
            + (f"; model {result.model}" if result.model else "")
            + (f"; Hugging Face model {result.hf_export}" if result.hf_export else "")
        )

    def _evaluate(
        self,
        model: BertForPreTraining,
        step: int,
        precision: Precision,
        result: TrainResult,
        runlog: RunLog,
    ) -> None:
        """Held-out MLM/NSP loss and accuracy on the eval dataset's first batches (file order),
        split over the ranks and summed; reported through ``runlog``."""
        info = self.plan.eval_info
        assert info is not None
        d, cfg = self.dist, self.cfg
        t0 = time.perf_counter()
        limit = DEFAULT_EVAL_BATCHES if cfg.eval_batches is None else cfg.eval_batches
        totals = evaluate(
            model,
            ordered_batches(info, cfg.batch_size, limit or None),
            self.device,
            autocast=precision.autocast(),
            rank=d.rank,
            world=d.world,
        )
        summed = EvalTotals.from_list(all_sum(totals.as_list(), d, self.device))
        values = summed.metrics()
        result.evals.append({"step": step, **values})
        runlog.evaluation(step, values, info.path, time.perf_counter() - t0)

    def _export(self, model: BertForPreTraining) -> str | None:
        """``--export-hf``: the model as a Hugging Face BertForPreTraining folder (rank 0)."""
        directory = self.cfg.export_hf
        if not directory:
            return None
        if self.dist.main:
            from corpus_pipeline.train.hf_export import export_hf

            assert self.plan.export_vocab is not None
            export_hf(model, directory, self.plan.export_vocab, self.info.vocab_cased)
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
        precision: Precision,
        step: int,
        state: LoaderState,
    ) -> NoReturn:
        """Checkpoint the last finished step (when there is a checkpoint folder), then raise."""
        name = signal.Signals(signum).name
        path: str | None = None
        if self.plan.ckpt_dir and step >= result.first_step:  # a step was trained since the start
            path = self.checkpoints.save(step, model, optimizer, scheduler, precision, state)
        elif self.plan.ckpt_path and step == result.first_step - 1:
            path = self.plan.ckpt_path
        where = f"checkpoint {path}; continue with --resume" if path else "no checkpoint written"
        raise TrainingInterrupted(f"interrupted by {name} after step {step}: {where}", signum)

    def _stop_requested(self) -> int | None:
        """The signal that asked this run to stop (on any rank), or None."""
        return all_max(self.signals.received or 0, self.dist, self.device) or None

    def _next(self, it: Iterator[Any]) -> Any:
        """The next batch, or None when this rank or any other has run out (lockstep)."""
        batch = next(it, None)
        if all_min(0 if batch is None else 1, self.dist, self.device) == 0:
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
        runlog: RunLog,
    ) -> None:
        """Report the log interval ending at ``step`` (one device sync for its losses)."""
        losses = torch.stack([torch.stack(w) for w in window]).float().cpu().tolist()
        secs = time.perf_counter() - t0
        totals = all_sum(counts, self.dist, self.device)
        lr = float(scheduler.get_last_lr()[0])
        runlog.interval(result, losses, secs, totals, step, state.epoch, lr)


def train(cfg: TrainConfig) -> TrainResult:
    """Run training; see :class:`TrainConfig`. A process group it creates is destroyed after."""
    with process_group():
        return Trainer(cfg).run()
