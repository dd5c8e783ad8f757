"""Ctrl-C in a run in this process (``--workers 1``): ``interrupted``, exit 130, and the same
command again finishes (what was done is kept).

In one process Beam wraps the KeyboardInterrupt raised in a step as a failed step
(``RuntimeError: KeyboardInterrupt [while running ...]``); it must read as an interruption,
not as a pipeline failure with a log of tracebacks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from corpus_pipeline import resources

# SIGINT's default handler: a background child of a non-interactive shell starts with SIGINT
# ignored, and Python keeps that.
CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from corpus_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_in_a_one_worker_run_is_an_interruption_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    args = ["run", "--input", str(resources.SAMPLE_WIKI_DUMP), "--output", str(out)]
    args += ["--workers", "1", "--format", "hdf5", "--dupe-factor", "1", "-q"]
    cmd = [sys.executable, "-c", CHILD, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "docs").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "tracebacks in" not in err
    assert not (out / "run.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = json.loads((out / "unpacked" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["totals"]["instances"] > 0
