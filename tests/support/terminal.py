"""Run the CLI with stderr on a pseudo-terminal, where progress bars are drawn."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios

CLI = [sys.executable, "-m", "corpus_pipeline"]


def on_a_terminal(*args: object, timeout: float = 300) -> tuple[int, str, str]:
    """(exit code, stdout, everything written to the terminal) of ``corpus-pipeline ARGS``,
    its stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    # 100 columns: tqdm draws nothing on a terminal of width 0, a new pty's size.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    # stdout to a file, not a pipe nobody reads while the terminal is drained.
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen([*CLI, *[str(a) for a in args]], stdout=stdout, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=timeout)
        os.close(leader)
        stdout.seek(0)
        out = stdout.read().decode("utf-8", "replace")
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


def bar_frames(text: str, desc: str) -> list[str]:
    """Every frame tqdm drew of the bar named ``desc`` (frames are separated by ``\\r``)."""
    return [f.strip() for f in re.split(r"[\r\n]", text) if f.strip().startswith(f"{desc}:")]


def percentages(frames: list[str]) -> list[int]:
    """The percentage each frame shows (a bar without a total shows none)."""
    return [int(m.group(1)) for f in frames if (m := re.match(r"\S+:\s*(\d+)%", f))]
