"""A Beam worker process killed (what the OOM killer does), before it connects or mid-run:
one error line and exit 1, never a hang or a traceback, then a rerun finishes.

FnApiRunner alone waits forever for a worker that dies before connecting, and reports one
that dies mid-run as a closed data channel deep in a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.testing.procmem import descendants
from tests.e2e.conftest import IN_PROCESS, run_cli


def _workers(root: int) -> list[int]:
    found = []
    for pid in descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"corpus_pipeline.beam.worker" in argv:  # the python process, not its shell
            found.append(pid)
    return found


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "after",
    [pytest.param(0.0, marks=pytest.mark.soak), 1.5],  # make test: the mid-run kill
    ids=["before-connecting", "mid-run"],
)
def test_a_killed_worker_gives_one_line_and_the_rerun_finishes(
    tmp_path: Path, after: float
) -> None:
    out = tmp_path / "out"
    args = ["run", "--input", str(resources.SAMPLE_WIKI_DUMP), "--output", str(out)]
    args += ["--preset", "phase1", "--format", "hdf5"]
    cmd = [sys.executable, "-m", "corpus_pipeline", *args, "--workers", "2"]
    pipe = subprocess.PIPE
    with subprocess.Popen(cmd, stdout=pipe, stderr=pipe, text=True, start_new_session=True) as p:
        try:
            deadline = time.monotonic() + 120
            victims: list[int] = []
            while not victims and time.monotonic() < deadline and p.poll() is None:
                victims = _workers(p.pid)
                time.sleep(0.02)
            assert victims, "no worker process appeared"
            time.sleep(after)
            os.kill(victims[0], signal.SIGKILL)
            _, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 1, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a Beam worker process died"), lines[-9:]
    assert not (out / "unpacked" / "manifest.json").exists()

    # The rerun is about what the dead run left in the folder, not about worker processes:
    # the same configuration in this process's runner.
    assert run_cli(*args, *IN_PROCESS) == 0
    assert (out / "unpacked" / "manifest.json").exists()
