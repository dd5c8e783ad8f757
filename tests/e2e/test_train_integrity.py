"""The trainer keeps what it trained: the final model by default, a checkpoint on SIGTERM or
Ctrl-C, refuses a resume that would train nothing, and logs every step once across kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from corpus_pipeline.testing.datasets import build_dataset  # noqa: E402
from corpus_pipeline.train import main  # noqa: E402
from corpus_pipeline.train.config import TrainConfig, TrainingInterrupted  # noqa: E402
from corpus_pipeline.train.loop import train  # noqa: E402
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)

S, P = 64, 10
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("data")
    build_dataset(out, formats=("hdf5",), max_seq_length=S, max_predictions=P, num_shards=2)
    return str(out)


def _argv(data: str, out: Path, *extra: str) -> list[str]:
    return [
        "--data",
        data,
        "--batch-size",
        "4",
        "--log-every",
        "1",
        "--threads",
        "1",
        "--seed",
        "7",
        "--no-progress",
        "--output-dir",
        str(out),
        "--metrics",
        str(out / "metrics.jsonl"),
        *extra,
    ]


def _start(data: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "corpus_pipeline.train", *_argv(data, out, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=out.parent,
    )


def _wait_for_steps(proc: subprocess.Popen[str], metrics: Path, n: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no progress")


def _steps(metrics: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines()]


def test_the_final_model_is_saved_without_any_flag(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_argv(data, out, "--steps", "2")) == 0
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["step"] == 2 and saved["preset"] == "tiny" and "model" in saved
    assert saved["data"]["vocab_size"] == 30522
    # ... and the end-of-run checkpoint, so --resume can continue it.
    assert (out / "checkpoints" / "step_00000002.pt").is_file()
    assert f"model {out / 'model.pt'}" in capsys.readouterr().out


def test_sigterm_checkpoints_and_resume_continues(data, tmp_path):
    out = tmp_path / "out"
    metrics = out / "metrics.jsonl"
    proc = _start(data, out, "--steps", "100000")
    _wait_for_steps(proc, metrics, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted by SIGTERM after step "), err
    step = int(lines[0].split("after step ")[1].split(":")[0])
    ckpt = out / "checkpoints" / f"step_{step:08d}.pt"
    assert step >= 2 and ckpt.is_file() and str(ckpt) in lines[0]
    assert torch.load(ckpt, weights_only=True)["step"] == step
    # Resume (in-process: no second torch start-up) and train two more steps.
    result = train(
        TrainConfig(
            data=data,
            steps=100000,
            batch_size=4,
            log_every=1,
            seed=7,
            progress=False,
            output_dir=str(out),
            metrics=str(metrics),
            resume="latest",
            stop_at=step + 2,
        )
    )
    assert (result.first_step, result.last_step) == (step + 1, step + 2)
    assert _steps(metrics) == list(range(1, step + 3))


def test_ctrl_c_checkpoints_and_raises_130(data, tmp_path):
    out = tmp_path / "out"
    metrics = out / "metrics.jsonl"

    def interrupt() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if metrics.is_file() and metrics.read_text().count("\n") >= 1:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    poker = threading.Thread(target=interrupt, daemon=True)
    poker.start()
    cfg = TrainConfig(
        data=data,
        steps=100000,
        batch_size=4,
        log_every=1,
        seed=7,
        progress=False,
        output_dir=str(out),
        metrics=str(metrics),
    )
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg)
    poker.join()
    assert info.value.exit_code == 130 and "SIGINT" in str(info.value)
    assert any((out / "checkpoints").glob("step_*.pt"))
    # The handler is gone again: the test process keeps its own Ctrl-C behaviour.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_with_steps_below_the_checkpoint_is_one_line_exit_2(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_argv(data, out, "--steps", "3")) == 0
    capsys.readouterr()
    assert main(_argv(data, out, "--steps", "2", "--resume")) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --steps 2 is below the step"), err
    assert "step" not in captured.out  # nothing trained, no "steps 4..2" header
    # At exactly --steps the run is complete: nothing to do, exit 0.
    assert main(_argv(data, out, "--steps", "3", "--resume")) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert _steps(out / "metrics.jsonl") == [1, 2, 3]


def test_metrics_have_no_repeated_steps_after_kill_9_and_resume(data, tmp_path):
    out = tmp_path / "out"
    metrics = out / "metrics.jsonl"
    proc = _start(data, out, "--steps", "100000", "--checkpoint-every", "2")
    _wait_for_steps(proc, metrics, 5)
    proc.kill()  # SIGKILL: no handler runs, steps after the last checkpoint were logged
    proc.communicate(timeout=60)
    logged = _steps(metrics)
    ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
    last = int(ckpts[-1].stem.split("_")[1])
    assert max(logged) > last  # the file holds steps the checkpoint does not
    result = train(
        TrainConfig(
            data=data,
            steps=100000,
            batch_size=4,
            log_every=1,
            seed=7,
            progress=False,
            output_dir=str(out),
            metrics=str(metrics),
            resume="latest",
            checkpoint_every=2,
            stop_at=max(logged) + 1,
        )
    )
    assert result.first_step == last + 1
    assert _steps(metrics) == list(range(1, max(logged) + 2))
