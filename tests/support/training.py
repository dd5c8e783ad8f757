"""Trainer tests' shared datasets (built once per session) and the one way they run the trainer.

Load it in a test module with ``pytest_plugins = ("tests.support.training",)``: fixtures of a
plugin are registered once for the session, so every trainer test file shares the same dataset
folders (fixtures imported by name into several modules would be built once per module).

Every dataset is the bundled text at S=64, P=10 (``corpus_pipeline.testing.datasets``):

- ``train_unpacked``: instances, every format, 3 shards, and the sentence-level dataset
  (dynamic masking); 607 records.
- ``train_packed``: packs of up to K=3 instances, every format, 2 shards.
- ``train_heldout``: like ``train_packed`` with another masking seed (held-out data).
- ``train_cased``: the cased vocabulary, mmap only.
- ``train_s128_p12``: S=128 and P=12, mmap only (lengths no S=64/P=10 model or dataset
  accepts).

Runs: :func:`train_run` (in-process ``train(TrainConfig)``, returns the ``TrainResult``),
:func:`cli` (in-process ``main(argv)``, returns the exit code and what it printed),
:func:`cli_process` (``python -m corpus_pipeline.train`` in a fresh interpreter, for what
only a process shows: signals, exit codes, file-descriptor output) and :func:`cli_fork` (a
forked child running ``main(argv)``: a real process without a second torch start-up). All take
the same options: :data:`DEFAULTS` overridden by keyword (``TrainConfig`` field names).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corpus_pipeline.testing.datasets import build_dataset

S, P = 64, 10
REPO = Path(__file__).resolve().parents[2]

#: Options of every test run unless overridden: small batches, a log line per step, a fixed
#: seed, no progress bar, one CPU thread (the tests share a couple of cores).
DEFAULTS: dict[str, Any] = {
    "steps": 3,
    "batch_size": 8,
    "log_every": 1,
    "seed": 7,
    "progress": False,
    "threads": 1,
}


# ------------------------------------------------------------------------------------------
# Datasets


def _build(tmp_path_factory: pytest.TempPathFactory, name: str, **kw: Any) -> str:
    out = tmp_path_factory.mktemp(name)
    build_dataset(out, **{"max_seq_length": S, "max_predictions": P, **kw})
    return str(out)


@pytest.fixture(scope="session")
def train_unpacked(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(tmp_path_factory, "unpacked", num_shards=3, megatron=True)


@pytest.fixture(scope="session")
def train_packed(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(tmp_path_factory, "packed", packed=True, num_shards=2)


@pytest.fixture(scope="session")
def train_heldout(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(tmp_path_factory, "heldout", packed=True, num_shards=2, seed=2)


@pytest.fixture(scope="session")
def train_cased(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(tmp_path_factory, "cased", formats=("mmap",), cased=True)


@pytest.fixture(scope="session")
def train_s128_p12(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(
        tmp_path_factory, "s128_p12", formats=("mmap",), max_seq_length=128, max_predictions=12
    )


# ------------------------------------------------------------------------------------------
# Runs


def options(data: str | os.PathLike[str], **overrides: Any) -> dict[str, Any]:
    """:data:`DEFAULTS` with ``overrides`` (None drops an option) for the dataset ``data``."""
    merged = {"data": str(data), **DEFAULTS, **overrides}
    return {k: v for k, v in merged.items() if v is not None}


def train_run(data: str | os.PathLike[str], **overrides: Any) -> Any:
    """``train(TrainConfig(...))`` in this process; returns its ``TrainResult``."""
    from corpus_pipeline.train.config import TrainConfig
    from corpus_pipeline.train.loop import train

    return train(TrainConfig(**options(data, **overrides)))


def argv(data: str | os.PathLike[str], *extra: str, **overrides: Any) -> list[str]:
    """The command line of :func:`options` (``batch_size=4`` -> ``--batch-size 4``; True ->
    the bare flag; ``progress`` -> ``--progress``/``--no-progress``), then ``extra``."""
    out: list[str] = []
    for key, value in options(data, **overrides).items():
        flag = "--" + key.replace("_", "-")
        if key == "progress":
            out.append("--progress" if value else "--no-progress")
        elif value is True:
            out.append(flag)
        elif value is not False:
            out += [flag, str(value)]
    return [*out, *extra]


@dataclass
class Cli:
    """An in-process command-line run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


def cli(data: str | os.PathLike[str], *extra: str, **overrides: Any) -> Cli:
    """``main(argv(...))`` in this process, its stdout and stderr captured."""
    from corpus_pipeline.train import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv(data, *extra, **overrides))
    return Cli(code, out.getvalue(), err.getvalue())


def cli_process(
    data: str | os.PathLike[str], *extra: str, cwd: str | os.PathLike[str], **overrides: Any
) -> subprocess.Popen[str]:
    """``python -m corpus_pipeline.train`` in a fresh interpreter (stdout/stderr piped)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "corpus_pipeline.train", *argv(data, *extra, **overrides)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def _forked_main(args: list[str], env: dict[str, str]) -> None:
    from corpus_pipeline.train import main

    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process ends below)
    os._exit(main(args))


def cli_fork(args: list[str], env: dict[str, str] | None = None) -> multiprocessing.Process:
    """A forked child that runs ``main(args)`` and exits with its code (output discarded):
    a real process for kill and multi-process tests, with this process's torch already
    imported. ``env`` is added to the child's environment."""
    proc = multiprocessing.get_context("fork").Process(target=_forked_main, args=(args, env or {}))
    proc.start()
    return proc
