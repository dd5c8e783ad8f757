"""The lock of an output folder: one run writes a folder at a time (``outdir.py``, step 1).

``.corpus-pipeline.lock`` holds the pid, host and start time of its holder. Locally it is
created with ``O_CREAT|O_EXCL``; a lock whose holder is alive, or on another host, stops the
run with one line, and a lock of a dead process of this host (a run killed with SIGKILL) is
taken over. On object stores (``s3://``...) the lock is written after a check that none
exists, which leaves a small window for two runs started at the same instant.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from typing import Any

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.tmpdirs import _alive, _host

LOCK = ".corpus-pipeline.lock"
# Where a run taking over a dead lock holds its guard (see _take_over).
TAKEOVER = LOCK + ".takeover"
# A lock file that is still empty this long after it was created was left by a process killed
# between creating and writing it.
_EMPTY_LOCK_SECONDS = 10.0


def now() -> str:
    """The current UTC time as the lock and the state file write it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def acquire(out: str) -> str:
    """Take ``out``'s lock (the folder exists) and return the text it holds (for :func:`release`).

    Raises:
        UserError: Another run holds it, or it cannot be created.
    """
    text = json.dumps({"pid": os.getpid(), "host": _host(), "started": now()}, sort_keys=True)
    if fsio.is_remote(out):
        _acquire_remote(out, text)
        return text
    try:
        _acquire_local(out, text)
    except OSError as e:
        raise UserError(
            f"{out}: cannot create the lock {LOCK} ({e.strerror}): choose a writable --output"
        ) from None
    return text


def _busy(out: str, holder: dict[str, Any]) -> UserError:
    host = holder.get("host", "?")
    hint = "" if host == _host() else f" (if that run is gone, delete {fsio.join(out, LOCK)})"
    return UserError(
        f"{out} is being written by pid {holder.get('pid', '?')} on {host} since "
        f"{holder.get('started', '?')}: wait for it or choose another --output{hint}"
    )


def _holder(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _dead(holder: dict[str, Any]) -> bool:
    """A lock holder that is gone: a process of this host that no longer runs."""
    pid = holder.get("pid")
    return holder.get("host") == _host() and isinstance(pid, int) and not _alive(pid)


def _acquire_local(out: str, text: str) -> None:
    path = os.path.join(out, LOCK)
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    old = f.read()
                age = time.time() - os.path.getmtime(path)
            except FileNotFoundError:
                continue  # released meanwhile: try again
            holder = _holder(old)
            if holder is None and age < _EMPTY_LOCK_SECONDS:
                raise _busy(out, {"pid": "?", "host": _host(), "started": "a moment ago"}) from None
            if holder is not None and not _dead(holder):
                raise _busy(out, holder) from None
            _take_over(out, old)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return
    raise UserError(f"{out}: cannot take the lock {LOCK} (other runs keep taking it)")


def _take_over(out: str, dead: str) -> None:
    """Remove a dead holder's lock, unless another run took it over first.

    A guard file (``O_EXCL`` too) makes the read-compare-remove a critical section: without it
    two reruns could both see the dead lock, and the slower one would remove the lock the
    faster one had just created.
    """
    guard = os.path.join(out, TAKEOVER)
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - os.path.getmtime(guard) > _EMPTY_LOCK_SECONDS:
                os.remove(guard)  # left by a run killed while taking over
        except FileNotFoundError:
            pass
        return
    os.close(fd)
    try:
        path = os.path.join(out, LOCK)
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == dead:
                    os.remove(path)
        except FileNotFoundError:
            pass
    finally:
        os.remove(guard)


def _acquire_remote(out: str, text: str) -> None:
    path = fsio.join(out, LOCK)
    if fsio.exists(path):
        holder = _holder(fsio.read_text(path)) or {}
        if not _dead(holder):
            raise _busy(out, holder)
    fsio.write_text(path, text)


def release(out: str, text: str) -> None:
    """Remove ``out``'s lock if it is still the one ``text`` wrote."""
    path = fsio.join(out, LOCK)
    try:
        current = fsio.read_text(path)
    except (OSError, ValueError, UserError):
        return
    if current == text:  # never remove a lock another run took over
        fsio.delete([path])
