"""The trainer keeps what it trained: the final model by default, a checkpoint on SIGTERM or
Ctrl-C, refuses a resume that would train nothing, and logs every step once across kills."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.register_assert_rewrite("tests.support.training")

from corpus_pipeline.train.config import TrainingInterrupted  # noqa: E402
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)
from tests.support.training import argv as _argv  # noqa: E402
from tests.support.training import cli, cli_fork, cli_process, train_run  # noqa: E402

pytest_plugins = ("tests.support.training",)


@pytest.fixture
def data(train_unpacked: str) -> str:
    return train_unpacked


def _opts(out: Path, **kw: Any) -> dict[str, Any]:
    """A run writing to ``out`` (model, checkpoints, metrics), batches of 4."""
    return {
        "batch_size": 4,
        "output_dir": str(out),
        "metrics": str(out / "metrics.jsonl"),
        **kw,
    }


def _wait_for_steps(alive: Any, metrics: Path, n: int) -> None:
    """Until ``metrics`` holds ``n`` rows; ``alive()`` false first is a failure."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= n:
            return
        if not alive():
            raise AssertionError("trainer ended early")
        time.sleep(0.05)
    raise AssertionError("no progress")


def _steps(metrics: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines()]


def test_the_final_model_is_saved_without_any_flag(data, tmp_path):
    out = tmp_path / "out"
    run = cli(data, steps=2, output_dir=str(out))
    assert run.code == 0, run.err
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["step"] == 2 and saved["preset"] == "tiny" and "model" in saved
    assert saved["data"]["vocab_size"] == 30522
    # ... and the end-of-run checkpoint, so --resume can continue it.
    assert (out / "checkpoints" / "step_00000002.pt").is_file()
    assert f"model {out / 'model.pt'}" in run.out


def test_sigterm_checkpoints_and_resume_continues(data, tmp_path):
    """A real ``python -m corpus_pipeline.train`` process: the exit code and its stderr."""
    out = tmp_path / "out"
    metrics = out / "metrics.jsonl"
    proc = cli_process(data, cwd=tmp_path, **_opts(out, steps=100000))
    try:
        _wait_for_steps(lambda: proc.poll() is None, metrics, 1)
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate()[1][-2000:]) from None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted by SIGTERM after step "), err
    step = int(lines[0].split("after step ")[1].split(":")[0])
    ckpt = out / "checkpoints" / f"step_{step:08d}.pt"
    assert step >= 1 and ckpt.is_file() and str(ckpt) in lines[0]
    assert torch.load(ckpt, weights_only=True)["step"] == step
    # Resume (in-process: no second torch start-up) and train one more step.
    result = train_run(data, **_opts(out, steps=100000, resume="latest", stop_at=step + 1))
    assert (result.first_step, result.last_step) == (step + 1, step + 1)
    assert _steps(metrics) == list(range(1, step + 2))


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
    with pytest.raises(TrainingInterrupted) as info:
        train_run(data, **_opts(out, steps=100000))
    poker.join()
    assert info.value.exit_code == 130 and "SIGINT" in str(info.value)
    assert any((out / "checkpoints").glob("step_*.pt"))
    # The handler is gone again: the test process keeps its own Ctrl-C behaviour.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_with_steps_below_the_checkpoint_is_one_line_exit_2(data, tmp_path):
    out = tmp_path / "out"
    assert cli(data, **_opts(out, steps=2)).code == 0
    below = cli(data, "--resume", **_opts(out, steps=1))
    assert below.code == 2
    assert len(below.err_lines) == 1
    assert below.err_lines[0].startswith("error: --steps 1 is below the step"), below.err
    assert "step" not in below.out  # nothing trained, no "steps 3..1" header
    # At exactly --steps the run is complete: nothing to do, exit 0.
    done = cli(data, "--resume", **_opts(out, steps=2))
    assert done.code == 0 and "nothing to train" in done.out
    assert _steps(out / "metrics.jsonl") == [1, 2]


def test_metrics_have_no_repeated_steps_after_kill_9_and_resume(data, tmp_path):
    out = tmp_path / "out"
    metrics = out / "metrics.jsonl"
    # A forked process: SIGKILL needs one, a fresh interpreter does not.
    proc = cli_fork(_argv(data, **_opts(out, steps=100000, checkpoint_every=2)))
    _wait_for_steps(proc.is_alive, metrics, 3)
    proc.kill()  # SIGKILL: no handler runs, steps after the last checkpoint were logged
    proc.join(timeout=60)
    logged = _steps(metrics)
    ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
    last = int(ckpts[-1].stem.split("_")[1])
    assert max(logged) > last  # the file holds steps the checkpoint does not
    result = train_run(
        data,
        **_opts(out, steps=100000, resume="latest", checkpoint_every=2, stop_at=max(logged) + 1),
    )
    assert result.first_step == last + 1
    assert _steps(metrics) == list(range(1, max(logged) + 2))
