"""What a training run is asked to do and what it reports back (torch-free).

:class:`TrainConfig` mirrors the command line (``corpus_pipeline.train.build_parser``);
:class:`TrainResult` is what :func:`corpus_pipeline.train.loop.train` returns;
:class:`TrainingInterrupted` is how a run stopped by SIGTERM or Ctrl-C ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corpus_pipeline.train.data import DEFAULT_SHUFFLE_BUFFER

#: Default peak learning rate per preset (AdamW, batch 32..256).
DEFAULT_LR = {
    "tiny": 1e-3,
    "mini": 5e-4,
    "small": 3e-4,
    "medium": 3e-4,
    "base": 1e-4,
    "large": 5e-5,
}
#: Held-out batches evaluated by default (the first ones of the eval dataset, file order).
DEFAULT_EVAL_BATCHES = 100


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
