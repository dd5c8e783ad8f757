"""A run's set-up, checked before anything trains: the data, the checkpoint to resume from,
the model, the held-out data and the export folder.

Every user mistake found here is a one-line ``UserError`` raised before the first step (not
after hours of training): a dataset whose vocabulary, S or P differ from the checkpoint's or the
training data's, a resume that would train nothing, a preset other than the checkpoint's, a
missing ``transformers`` for ``--export-hf``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus_pipeline.errors import UserError
from corpus_pipeline.train.checkpoint import latest_checkpoint, load_checkpoint
from corpus_pipeline.train.config import DEFAULT_LR, TrainConfig
from corpus_pipeline.train.dataset import DatasetInfo, check_signature, open_dataset, resolve_vocab
from corpus_pipeline.train.model import PRESETS, BertConfig, preset_config


@dataclass
class RunPlan:
    """What a run will do, resolved from its :class:`TrainConfig`.

    Attributes:
        info: The training data.
        ckpt_dir: Where checkpoints go (None: none are written).
        ckpt: The checkpoint resumed from (loaded on CPU), or None.
        ckpt_path: Its path.
        preset: The model size (the checkpoint's when resuming).
        model_cfg: The model configuration (the checkpoint's when resuming).
        workers: DataLoader workers.
        lr: Peak learning rate.
        warmup: Warmup steps.
        eval_info: The held-out data, or None.
        export_vocab: The vocabulary copied into the ``--export-hf`` folder, or None.
    """

    info: DatasetInfo
    ckpt_dir: str | None
    ckpt: dict[str, Any] | None
    ckpt_path: str | None
    preset: str
    model_cfg: BertConfig
    workers: int
    lr: float
    warmup: int
    eval_info: DatasetInfo | None
    export_vocab: Path | None


def check_counts(cfg: TrainConfig) -> None:
    """The checks that need nothing but the flags (made before the device is set up).

    Raises:
        UserError: ``--steps`` or ``--log-every`` below 1.
    """
    if cfg.steps < 1:
        raise UserError("--steps must be >= 1")
    if cfg.log_every < 1:
        raise UserError("--log-every must be >= 1")


def plan_run(cfg: TrainConfig, cuda: bool) -> RunPlan:
    """Resolve and check ``cfg`` (``cuda``: the run is on a GPU, which sets the default
    worker count).

    Raises:
        UserError: A flag or a dataset the run cannot use (one line naming the fix).
    """
    info = open_dataset(cfg.data, cfg.format, unpack=cfg.unpack)
    if cfg.vocab is not None:
        resolve_vocab(info, cfg.vocab)  # refuses a vocab.txt that is not the data's
    ckpt_dir = cfg.checkpoint_dir or (
        os.path.join(cfg.output_dir, "checkpoints") if cfg.output_dir else None
    )
    ckpt_path = _resume_path(cfg, ckpt_dir)
    ckpt = None
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(cfg, info, ckpt, ckpt_path)
    preset = _preset(cfg, ckpt, ckpt_path)
    model_cfg = _model_config(cfg, ckpt, preset, info)
    check_signature(info, {"vocab_size": model_cfg.vocab_size}, "model")
    if info.max_seq_length > model_cfg.max_position_embeddings:
        raise UserError(
            f"{info.path}: S={info.max_seq_length} exceeds the model's "
            f"{model_cfg.max_position_embeddings} positions"
        )
    workers = cfg.workers if cfg.workers is not None else (4 if cuda else 0)
    if workers < 0:
        raise UserError("--workers must be >= 0")
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[preset]
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 10)
    eval_info = _open_eval(cfg, info, model_cfg)
    export_vocab: Path | None = None
    if cfg.export_hf:
        from corpus_pipeline.train.hf_export import check_export_dir, require_transformers

        require_transformers()
        check_export_dir(cfg.export_hf)
        # Found and checked now, not after hours of training.
        export_vocab = resolve_vocab(info, cfg.vocab)
    return RunPlan(
        info=info,
        ckpt_dir=ckpt_dir,
        ckpt=ckpt,
        ckpt_path=ckpt_path,
        preset=preset,
        model_cfg=model_cfg,
        workers=workers,
        lr=lr,
        warmup=warmup,
        eval_info=eval_info,
        export_vocab=export_vocab,
    )


def _resume_path(cfg: TrainConfig, ckpt_dir: str | None) -> str | None:
    """The checkpoint ``--resume`` names (``latest``: the newest in the checkpoint folder)."""
    path = cfg.resume
    if path in ("", "latest"):
        if not ckpt_dir:
            raise UserError("--resume needs --checkpoint-dir (or a checkpoint path)")
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            raise UserError(f"{ckpt_dir}: no step_*.pt checkpoint to resume from")
    return path


def _check_resume(cfg: TrainConfig, info: DatasetInfo, ckpt: dict[str, Any], path: str) -> None:
    check_signature(info, ckpt["data"], f"checkpoint {path}")
    step = int(ckpt.get("step", 0))
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


def _preset(cfg: TrainConfig, ckpt: dict[str, Any] | None, ckpt_path: str | None) -> str:
    if ckpt is not None:
        saved = str(ckpt.get("preset", ""))
        if cfg.preset is not None and cfg.preset != saved:
            raise UserError(f"--preset {cfg.preset}: checkpoint {ckpt_path} is a {saved} model")
        return saved
    name = cfg.preset or "tiny"
    if name not in PRESETS:
        raise UserError(f"--preset {name!r}: choose from {', '.join(PRESETS)}")
    return name


def _model_config(
    cfg: TrainConfig, ckpt: dict[str, Any] | None, preset: str, info: DatasetInfo
) -> BertConfig:
    if ckpt is not None:
        return BertConfig.from_dict(ckpt["model_config"])
    over: dict[str, Any] = {}
    if cfg.dropout is not None:
        over = {"dropout": cfg.dropout, "attention_dropout": cfg.dropout}
    return preset_config(preset, info.vocab_size, **over)


def _open_eval(cfg: TrainConfig, info: DatasetInfo, model_cfg: BertConfig) -> DatasetInfo | None:
    """The held-out dataset (read like the training data: the same format when it has it,
    packed or unpacked alike), checked against the training data's vocabulary and P."""
    if cfg.eval_every < 0:
        raise UserError("--eval-every must be >= 0 (0: evaluate at the end only)")
    if cfg.eval_batches is not None and cfg.eval_batches < 0:
        raise UserError("--eval-batches must be >= 0 (0: every batch)")
    if not cfg.eval_data:
        if cfg.eval_every or cfg.eval_batches is not None:
            raise UserError("--eval-every/--eval-batches need --eval-data DIR")
        return None
    try:
        held = open_dataset(cfg.eval_data, info.fmt, unpack=cfg.unpack)
    except UserError:
        held = open_dataset(cfg.eval_data, None, unpack=cfg.unpack)
    sig = info.signature()
    check_signature(
        held,
        {k: sig[k] for k in ("vocab_sha256", "vocab_size", "max_predictions")},
        f"training data {info.path}",
    )
    if held.max_seq_length > model_cfg.max_position_embeddings:
        raise UserError(
            f"{held.path}: S={held.max_seq_length} exceeds the model's "
            f"{model_cfg.max_position_embeddings} positions"
        )
    if held.num_records == 0:
        raise UserError(f"{held.path}: --eval-data has no records: use a non-empty dataset")
    return held
