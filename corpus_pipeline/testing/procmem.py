"""Peak memory of a process tree, read from ``/proc`` (Linux).

Why not ``getrusage().ru_maxrss``: Linux carries a process's RSS high-water mark across
``exec``, and a child started with ``vfork``/``fork`` + ``exec`` begins with its parent's. A
command started from a large process (a pytest session that has run hundreds of tests, a
benchmark holding its inputs) therefore reports the parent's peak as its own, and so do its
children. ``VmHWM`` in ``/proc/PID/status`` belongs to the process's own address space, which
``exec`` replaces, so it measures the command alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from corpus_pipeline.beam.runner import descendants_of


def _status_kib(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # exited meanwhile, or a kernel thread without the field
    return 0


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    return [root, *descendants_of(root)]


@dataclass
class TreePeak:
    """What :func:`watch_tree` saw. ``max_proc_mib``: the largest ``VmHWM`` of any one process
    of the tree; ``tree_mib``: the largest sum of ``VmRSS`` over the tree at one sample."""

    max_proc_mib: float = 0.0
    tree_mib: float = 0.0
    samples: int = 0
    per_pid: dict[int, float] = field(default_factory=dict)

    def sample(self, root: int) -> None:
        total = 0
        for pid in descendants(root):
            hwm = _status_kib(pid, b"VmHWM:") / 1024
            if hwm > self.per_pid.get(pid, 0.0):
                self.per_pid[pid] = hwm
            total += _status_kib(pid, b"VmRSS:")
        self.max_proc_mib = max([self.max_proc_mib, *self.per_pid.values()])
        self.tree_mib = max(self.tree_mib, total / 1024)
        self.samples += 1


@contextmanager
def watch_tree(root: int, interval: float = 0.05) -> Iterator[TreePeak]:
    """Sample the tree under ``root`` every ``interval`` seconds while the block runs.

    A process's ``VmHWM`` is a high-water mark, so a late sample still sees its peak; only
    what a process allocates in its last ``interval`` before exiting can be missed.
    """
    peak = TreePeak()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            peak.sample(root)
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="procmem", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
