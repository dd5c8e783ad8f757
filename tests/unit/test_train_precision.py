"""The trainer's optimisation step (``train/optim.py``): float32 on CPU, and float16 loss scaling
that clips the real gradients, not the scaled ones.

The scaler of a CUDA run without native bfloat16 is ``torch.amp.GradScaler("cuda")``; the
same class on the CPU device runs the same unscale/clip/step sequence here.
"""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")

from corpus_pipeline.train.checkpoint import to_cpu  # noqa: E402
from corpus_pipeline.train.optim import Precision  # noqa: E402
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)


def _model_and_loss() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    x = torch.randn(16, 8)
    return model, (model(x) ** 2).sum() * 100  # large gradients: clipping at 0.5 acts


def _stepped(precision: Precision) -> list[torch.Tensor]:
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    precision.step(loss, opt, model.parameters(), max_grad_norm=0.5)
    return [p.detach().clone() for p in model.parameters()]


def test_cpu_runs_in_float32_without_scaler():
    p = Precision(torch.device("cpu"))
    assert p.dtype is None and p.scaler is None and p.state_dict() is None
    assert isinstance(p.autocast(), contextlib.nullcontext)
    # The step is backward, clip, step: the clipped update of plain SGD.
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
    for got, want in zip(_stepped(p), model.parameters(), strict=True):
        assert torch.equal(got, want)


def test_loss_scaling_clips_the_unscaled_gradients_and_keeps_its_state():
    plain = _stepped(Precision(torch.device("cpu")))
    scaled = Precision(torch.device("cpu"))
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    got = _stepped(scaled)
    # Clipping the scaled gradients would shrink the update 65536-fold.
    for g, w in zip(got, plain, strict=True):
        torch.testing.assert_close(g, w)
    state = scaled.state_dict()
    assert state is not None and state["scale"] == 2.0**16
    again = Precision(torch.device("cpu"))
    again.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    again.load_state_dict(state)
    assert again.scaler is not None and again.scaler.get_scale() == 2.0**16


def test_cpu_state_dicts_are_written_as_they_are():
    model = torch.nn.Linear(3, 2)
    sd = model.state_dict()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    osd = opt.state_dict()
    # No copy on a CPU run: the checkpoint holds exactly the state dict (with its _metadata).
    assert to_cpu(sd) is sd and to_cpu(osd) is osd
