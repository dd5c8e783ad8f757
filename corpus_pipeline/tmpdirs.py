"""One private temp folder per verb, and removal of those that killed runs left behind.

A verb runs with ``TMPDIR`` (and :data:`tempfile.tempdir`) pointing at a fresh folder
``corpus-pipeline-run-<host>-<pid>-*`` in the system temp folder, so everything it and its Beam
workers put there (the progress file, Beam's ``beam-pipeline-temp*``) is in one place, removed
when the verb ends. A run killed with SIGKILL cannot remove it; the next verb removes every such
folder of this host whose process is gone. The host name keeps a machine that shares its temp
folder with containers (other PID namespaces, other host names) from touching theirs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator

from corpus_pipeline.errors import UserError

PREFIX = "corpus-pipeline-run-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def sweep(base: str) -> list[str]:
    """Remove the private folders of dead runs of this host under ``base``; returns them."""
    pattern = re.compile(re.escape(f"{PREFIX}{_host()}-") + r"(\d+)-")
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in sorted(names):
        m = pattern.match(name)
        path = os.path.join(base, name)
        if not m or _alive(int(m.group(1))):
            continue
        try:
            if os.stat(path).st_uid != os.getuid() or not os.path.isdir(path):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def private_tmp() -> Iterator[str]:
    """Run the block with TMPDIR set to a fresh private folder (removed afterwards)."""
    base = tempfile.gettempdir()
    sweep(base)
    try:
        path = tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-", dir=base)
    except OSError as e:
        raise UserError(
            f"{base}: cannot create a temp folder ({e.strerror}): set TMPDIR to a writable folder"
        ) from None
    old_env, old_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        shutil.rmtree(path, ignore_errors=True)
