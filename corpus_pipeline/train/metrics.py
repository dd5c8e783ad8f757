"""What a run reports while it trains: log lines, ``--metrics`` JSON lines, TensorBoard.

Only rank 0 reports. Log lines go to stdout (through tqdm, so a progress bar on a terminal is
redrawn under them), warnings to stderr. The ``--metrics`` file gets one row per training step
(``{"step", "mlm_loss", "nsp_loss", "epoch"}``) and one per held-out evaluation (``"split":
"eval"`` and the evaluation's numbers; training rows have no ``split``); it is appended to, and a
resumed run first cuts it back to its checkpoint's step (:func:`trim_metrics`) so that no step
appears twice.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import IO, Any

from corpus_pipeline.formats.common import atomic_output
from corpus_pipeline.train.config import TrainResult


def log(line: str, main: bool = True) -> None:
    """A log line on stdout (rank 0 only)."""
    if main:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def warn(line: str, main: bool = True) -> None:
    """A ``warning:`` line on stderr (rank 0 only)."""
    if main:
        print(f"warning: {line}", file=sys.stderr, flush=True)


def trim_metrics(path: str, step: int) -> None:
    """Cut the metrics file back to ``step``: the steps after the checkpoint are trained
    again (and logged again) by the resumed run. A torn last line (a killed run) goes too."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                if int(row["step"]) > step:
                    continue
            except (ValueError, KeyError, TypeError):
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    with atomic_output(path) as tmp:
        tmp.write_text("".join(kept), encoding="utf-8")


class RunLog:
    """Rank 0's reports of one run (a no-op object on the other ranks); :meth:`close` it.

    Args:
        steps: The run's ``--steps`` (shown as ``step N/steps``).
        main: This is rank 0.
        metrics: The ``--metrics`` file, or None.
        tensorboard: The ``--tensorboard`` folder, or None.
    """

    def __init__(
        self, steps: int, main: bool, metrics: str | None, tensorboard: str | None
    ) -> None:
        self.steps = steps
        self.main = main
        self.metrics: IO[str] | None = None
        self.tb: Any = None
        if not main:
            return
        if metrics:
            os.makedirs(os.path.dirname(os.path.abspath(metrics)), exist_ok=True)
        if tensorboard:
            self.tb = _summary_writer(tensorboard)
        if metrics:
            self.metrics = open(metrics, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def close(self) -> None:
        """Close the metrics file and the TensorBoard writer."""
        if self.metrics is not None:
            self.metrics.close()
        if self.tb is not None:
            self.tb.close()

    def interval(
        self,
        result: TrainResult,
        losses: list[list[float]],
        seconds: float,
        totals: list[float],
        step: int,
        epoch: int,
        lr: float,
    ) -> None:
        """Report a log interval ending at ``step``: its per-step ``[mlm, nsp]`` losses, its
        wall time and its (real tokens, slots, rows) summed over the ranks; the losses and the
        interval are appended to ``result``."""
        tokens, slots, rows = totals
        first = step - len(losses) + 1
        for i, (m, n) in enumerate(losses):
            result.mlm_losses.append(m)
            result.nsp_losses.append(n)
            self._row({"step": first + i, "mlm_loss": m, "nsp_loss": n, "epoch": epoch}, False)
        if self.metrics is not None:
            self.metrics.flush()
        result.intervals.append(
            {"step": step, "seconds": seconds, "tokens": tokens, "slots": slots, "rows": rows}
        )
        mlm = sum(x[0] for x in losses) / len(losses)
        nsp = sum(x[1] for x in losses) / len(losses)
        tps = tokens / seconds if seconds > 0 else math.inf
        real = tokens / slots if slots else 0.0
        log(
            f"step {step}/{self.steps} mlm_loss={mlm:.4f} nsp_loss={nsp:.4f} lr={lr:.3e} "
            f"tokens/s={tps:,.0f} real_tokens={real:.3f} epoch={epoch}",
            self.main,
        )
        self._scalars(
            step,
            {
                "train/mlm_loss": mlm,
                "train/nsp_loss": nsp,
                "train/lr": lr,
                "train/tokens_per_s": tps,
                "train/real_token_fraction": real,
            },
        )

    def evaluation(self, step: int, values: dict[str, Any], data: str, seconds: float) -> None:
        """Report a held-out evaluation at ``step`` of the dataset folder ``data``."""
        row = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()
        }
        self._row({"step": step, "split": "eval", **row}, True)
        log(
            f"eval step {step}/{self.steps} mlm_loss={values['mlm_loss']:.4f} "
            f"mlm_acc={values['mlm_accuracy']:.4f} nsp_loss={values['nsp_loss']:.4f} "
            f"nsp_acc={values['nsp_accuracy']:.4f} ({values['batches']} batches, "
            f"{values['masked']} masked tokens, {values['sequences']} sequences of "
            f"{data}; {seconds:.1f}s)",
            self.main,
        )
        self._scalars(
            step,
            {
                f"eval/{k}": values[k]
                for k in ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy")
            },
        )

    def _row(self, row: dict[str, Any], flush: bool) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(row) + "\n")
            if flush:
                self.metrics.flush()

    def _scalars(self, step: int, values: dict[str, float]) -> None:
        if self.tb is not None:
            for tag, v in values.items():
                self.tb.add_scalar(tag, v, step)


def _summary_writer(directory: str) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warn(
            f"--tensorboard {directory}: tensorboard is not installed "
            "(pip install tensorboard); no event files are written"
        )
        return None
    return SummaryWriter(directory)
