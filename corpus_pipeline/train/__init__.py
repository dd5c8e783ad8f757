"""``python -m corpus_pipeline.train``: a compact BERT trained on our shards, to prove they train.

    python -m corpus_pipeline.train --data OUT --steps 200 --preset tiny
    torchrun --nproc-per-node 2 -m corpus_pipeline.train --data OUT --steps 1000 --preset base

Reads HDF5, TFRecord and mmap shards, packed or not, through ``corpus_pipeline.formats``
(``dataset.py``), batched, split over ranks and workers and resumable (``data.py``); the model
is ``model.py``, the loop ``loop.py`` (set-up checks in ``plan.py``, devices and DDP in
``distributed.py``, AdamW and CUDA autocast in ``optim.py``, checkpoints in ``checkpoint.py``,
SIGTERM/Ctrl-C in ``signals.py``, logs and ``--metrics`` in ``metrics.py``). Importing this package does not import torch: the CLI imports it when it runs and says how to
install it when it is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from corpus_pipeline.errors import UserError

PRESET_NAMES = ("tiny", "mini", "small", "medium", "base", "large")


def build_parser() -> argparse.ArgumentParser:
    """The trainer's flags (mirrored by ``config.TrainConfig``)."""
    p = argparse.ArgumentParser(
        prog="python -m corpus_pipeline.train",
        description="Pretrain a compact BERT (MLM + NSP) on a corpus-pipeline dataset folder.",
    )
    p.add_argument("--data", required=True, help="dataset folder (with manifest.json)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (schedule length)")
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=None,
        help="model size (default tiny; a resumed run keeps its checkpoint's)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="rows per batch per process")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default by preset)")
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="linear warmup steps (default steps/10)"
    )
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping")
    p.add_argument(
        "--format",
        choices=("hdf5", "tfrecord", "mmap"),
        default=None,
        help="shards to read (default: the manifest's first format)",
    )
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument(
        "--output-dir",
        default="train-out",
        metavar="DIR",
        help="where the run saves its results (default: ./train-out): the final model "
        "(DIR/model.pt: weights, model config, data signature) and, without --checkpoint-dir, "
        "the checkpoints (DIR/checkpoints/); on SIGTERM or Ctrl-C a checkpoint is written there "
        "before exiting (143 / 130), and --resume continues from it",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="write step_XXXXXXXX.pt checkpoints here (default: OUTPUT_DIR/checkpoints)",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="steps between checkpoints (0: end only)"
    )
    p.add_argument("--keep-checkpoints", type=int, default=3, help="newest kept (0: all)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="resume from CHECKPOINT (default: the latest in the checkpoint folder); the "
        "--metrics file is cut back to the checkpoint's step so no step appears twice",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="stop (and checkpoint) at this step; the schedule still spans --steps",
    )
    p.add_argument("--log-every", type=int, default=10, help="steps per log line")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="write scalars to DIR")
    p.add_argument("--metrics", default=None, metavar="FILE", help="append per-step JSON lines")
    p.add_argument(
        "--dynamic-masking",
        action="store_true",
        help="mask on the fly from the sentence-level dataset, a fresh mask each epoch",
    )
    p.add_argument(
        "--unpack",
        action="store_true",
        help="read a packed dataset one instance per row (to measure what packing buys)",
    )
    p.add_argument(
        "--eval-data",
        default=None,
        metavar="DIR",
        help="held-out dataset folder (same vocabulary and P as --data): masked-LM and NSP "
        "loss and accuracy every --eval-every steps and at the end, logged and written to "
        '--metrics with "split": "eval"',
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=0,
        metavar="K",
        help="steps between held-out evaluations (default 0: at the end only)",
    )
    p.add_argument(
        "--eval-batches",
        type=int,
        default=None,
        metavar="N",
        help="evaluate the first N batches of --eval-data in file order, the same ones "
        "each time (default 100; 0: all)",
    )
    p.add_argument(
        "--export-hf",
        default=None,
        metavar="DIR",
        help="also write the final model as a Hugging Face BertForPreTraining folder "
        "(config.json, model.safetensors, vocab.txt, tokenizer_config.json); needs "
        "pip install 'corpus-pipeline[hf]'",
    )
    p.add_argument("--vocab", default=None, help="vocab.txt to check the data against")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default 0 on CPU, 4 on CUDA)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's; 1 is faster on a busy shared machine)",
    )
    p.add_argument("--shuffle-buffer", type=int, default=10_000, help="records per shuffle buffer")
    p.add_argument("--dropout", type=float, default=None, help="override the preset's 0.1")
    p.add_argument(
        "--deterministic", action="store_true", help="deterministic CUDA kernels (slower)"
    )
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 with one ``error:`` line for user mistakes)."""
    args = build_parser().parse_args(argv)
    try:
        try:
            from corpus_pipeline.train import loop
        except ImportError as e:
            if getattr(e, "name", None) == "torch" or "torch" in str(e):
                raise UserError(
                    "the trainer needs PyTorch: pip install 'corpus-pipeline[train]' "
                    "(or a CUDA build of torch first)"
                ) from None
            raise
        from corpus_pipeline.train.config import TrainConfig, TrainingInterrupted

        cfg = TrainConfig(**vars(args))
        try:
            loop.train(cfg)
        except TrainingInterrupted as e:
            print(str(e), file=sys.stderr)
            return e.exit_code
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
