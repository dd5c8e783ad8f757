"""File access by path, local or ``scheme://`` (``s3://``, ``gs://``, ...): one function per
operation, dispatched on the path to the filesystem that holds it.

A path is *remote* when it starts with ``<scheme>://``: it is then reached through Beam's
``FileSystems`` (:mod:`corpus_pipeline.fsio_remote`, which also states how remote outputs are
published); local paths keep the plain ``open``/``os`` code (:mod:`corpus_pipeline.fsio_local`,
which also makes files appear atomically). The checks of user-given paths are
:mod:`corpus_pipeline.fsio_checks`. Callers import this module only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from corpus_pipeline.fsio_checks import check_input_file, check_output_path, make_output_dir
from corpus_pipeline.fsio_local import LOCAL, FileSystem, fsync_dir, is_temp_name
from corpus_pipeline.fsio_remote import (
    REMOTE,
    RemoteFileSystem,
    check_writable,
    configure,
    download,
    is_remote,
    upload,
)

# The one import for file access: the path-dispatching functions below, and the names of the
# modules that do the work (local disk, remote stores, user path checks).
__all__ = [
    "FileSystem",
    "RemoteFileSystem",
    "abspath",
    "atomic_output",
    "basename",
    "check_input_file",
    "check_output_path",
    "check_writable",
    "configure",
    "delete",
    "download",
    "exists",
    "filesystem",
    "fsync_dir",
    "is_remote",
    "is_temp_name",
    "isfile",
    "join",
    "list_files",
    "local_copy",
    "local_dir_for",
    "make_output_dir",
    "open_read",
    "open_text",
    "publish",
    "read_bytes",
    "read_text",
    "remove_stale_temps",
    "rmtree",
    "sha256",
    "stat_files",
    "upload",
    "write_bytes",
    "write_text",
]


def filesystem(path: str | os.PathLike[str]) -> FileSystem:
    """The filesystem ``path`` lives on: the local disk, or the ``scheme://`` store."""
    return REMOTE if is_remote(path) else LOCAL


def abspath(path: str) -> str:
    """``os.path.abspath`` for local paths; remote paths unchanged."""
    return filesystem(path).abspath(path)


def basename(path: str) -> str:
    """The last path component (a remote folder's trailing ``/`` ignored)."""
    return filesystem(path).basename(path)


def join(base: str, *parts: str) -> str:
    """Join path parts (``/`` for remote paths, whatever the local OS)."""
    return filesystem(base).join(base, *parts)


def open_read(path: str) -> IO[bytes]:
    """A seekable binary file; compressed files are *not* decompressed (``.bz2`` stays bz2)."""
    return filesystem(path).open_read(path)


def open_text(path: str) -> IO[str]:
    """A UTF-8 text file (undecodable bytes replaced), universal newlines, like ``open``."""
    return filesystem(path).open_text(path)


def exists(path: str) -> bool:
    """A local file or folder, or a remote object, exists."""
    return filesystem(path).exists(path)


def isfile(path: str) -> bool:
    """A local regular file, or a remote object."""
    return filesystem(path).isfile(path)


def list_files(folder: str) -> list[tuple[str, int]]:
    """Every file under ``folder`` (recursive): ``[(path, size)]`` sorted by path."""
    return filesystem(folder).list_files(folder)


def stat_files(path: str) -> list[tuple[str, int, float]]:
    """Every file at or below ``path``, local or remote: ``[(path, size, mtime)]`` sorted.

    A local mtime is in nanoseconds, a remote one is the object's last-update time (seconds).
    """
    return filesystem(path).stat_files(path)


def read_bytes(path: str) -> bytes:
    """A whole local or remote file."""
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    """A whole local or remote UTF-8 file."""
    return read_bytes(path).decode("utf-8")


def publish(local_dir: str, rels: Sequence[str], remote_dir: str) -> None:
    """Upload ``local_dir/rel`` to ``remote_dir/rel`` (see :meth:`RemoteFileSystem.publish`)."""
    REMOTE.publish(local_dir, rels, remote_dir)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file: atomically beside a local path, or published to a remote one."""
    filesystem(path).write_bytes(path, data)


def write_text(path: str, text: str) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(path, text.encode("utf-8"))


def delete(paths: Sequence[str]) -> None:
    """Delete remote objects or local files; missing ones are fine."""
    LOCAL.delete([p for p in paths if not is_remote(p)])
    REMOTE.delete([p for p in paths if is_remote(p)])


def rmtree(folder: str) -> None:
    """Delete a folder and everything under it (a remote prefix: every object below it)."""
    filesystem(folder).rmtree(folder)


def remove_stale_temps(folder: str) -> list[str]:
    """Delete the ``.<name>.tmp-<random>`` files a killed writer left in a local folder, or
    anywhere below a remote prefix."""
    return filesystem(folder).remove_stale_temps(folder)


def sha256(path: str) -> str:
    """Hex SHA-256 of a local or remote file."""
    h = hashlib.sha256()
    with open_read(path) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def local_copy(path: str) -> str:
    """A local path with the file's content: the path itself, or a downloaded copy (cached
    per process, for files every worker needs, such as the vocabulary)."""
    return filesystem(path).local_copy(path)


def local_dir_for(folder: str) -> contextlib.AbstractContextManager[str]:
    """The folder itself when local; else a fresh local temp folder (removed afterwards) in
    which to build files that are then published to ``folder``."""
    return filesystem(folder).local_dir_for(folder)


def atomic_output(
    final_path: str | Path, suffix: str = ""
) -> contextlib.AbstractContextManager[Path]:
    """Yields a temp path for ``final_path``; on success it becomes ``final_path``.

    A remote ``final_path`` is built in a private local temp folder and published on success
    (see the module doc). Locally, the temp file is named ``.<final name>.tmp-<random><suffix>`` in the destination folder, so
    the final rename is atomic (same filesystem). On normal exit the temp file is fsynced and
    ``os.replace``-d onto the final path; on an exception it is removed and the exception
    propagates. A process killed outright (SIGKILL, power loss) leaves the dot-file behind, and
    DLE's loader keeps every name that contains ``training`` -- hidden files included -- so a
    job that rewrites an output folder should call :func:`remove_stale_temps` on it first.

    The caller creates the file at the yielded path (it does not exist yet).

    Args:
        final_path: Where the finished file must appear.
        suffix: Appended to the temp name (some libraries look at the extension).

    Yields:
        The temp path to write.

    Raises:
        UserError: The destination folder does not exist.
    """
    return filesystem(final_path).atomic_output(final_path, suffix)
