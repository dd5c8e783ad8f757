"""The local disk as a :class:`FileSystem`, and atomic local files.

:class:`FileSystem` is the interface every path goes through (:func:`corpus_pipeline.fsio.filesystem`
picks it or :class:`corpus_pipeline.fsio_remote.RemoteFileSystem`); its methods are the plain
``open``/``os`` code for local paths. Files appear under their final name only once complete:
written under a temp name beside it (``.<name>.tmp-<random>``), fsynced, renamed, and the
folder fsynced.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from corpus_pipeline.errors import UserError

__all__ = ["LOCAL", "FileSystem", "fsync_dir", "is_temp_name"]


class FileSystem:
    """One place that knows how to reach a path: a local disk, or a ``scheme://`` store.

    Get one with :func:`filesystem`; both kinds answer the same calls, so code that writes or
    reads shards says what it does once, whatever the destination. Writes go through
    :meth:`atomic_output`: the file is built at a local temp path and appears under its final
    name only once complete (renamed beside it on a local disk, published to a remote store).
    """

    remote = False

    def join(self, base: str, *parts: str) -> str:
        """Join path parts with this filesystem's separator."""
        return os.path.join(base, *parts)

    def abspath(self, path: str) -> str:
        return os.path.abspath(path)

    def basename(self, path: str) -> str:
        return os.path.basename(path)

    def open_read(self, path: str) -> IO[bytes]:
        """A seekable binary file; compressed files are *not* decompressed."""
        return open(path, "rb")

    def open_text(self, path: str) -> IO[str]:
        """A UTF-8 text file (undecodable bytes replaced), universal newlines."""
        return open(path, encoding="utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def stat_files(self, path: str) -> list[tuple[str, int, float]]:
        """Every file at or below ``path``: ``[(path, size, mtime in nanoseconds)]`` sorted."""
        if os.path.isfile(path):
            names = [path]
        else:
            names = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        stats = [(p, os.stat(p)) for p in names]
        return sorted((p, st.st_size, float(st.st_mtime_ns)) for p, st in stats)

    def list_files(self, folder: str) -> list[tuple[str, int]]:
        """Every file under ``folder`` (recursive): ``[(path, size)]`` sorted by path."""
        return [(p, size) for p, size, _ in self.stat_files(folder) if p != folder]

    def free_bytes(self, path: str) -> int | None:
        """Free bytes of the disk that holds (or will hold) ``path``; None when unknown."""
        where = os.path.abspath(path)
        while not os.path.exists(where):
            parent = os.path.dirname(where)
            if parent == where:
                return None
            where = parent
        try:
            return shutil.disk_usage(where).free
        except OSError:
            return None

    def makedirs(self, folder: str) -> None:
        """Create a folder and its parents (object stores have no folders: nothing to do)."""
        os.makedirs(folder, exist_ok=True)

    def delete(self, paths: Sequence[str]) -> None:
        """Delete files; missing ones are fine."""
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)

    def rmtree(self, folder: str) -> None:
        """Delete a folder and everything under it."""
        shutil.rmtree(folder, ignore_errors=True)

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` onto ``dst`` (replacing it)."""
        os.replace(src, dst)

    def remove_stale_temps(self, folder: str) -> list[str]:
        """Delete the ``.<name>.tmp-<random>*`` files a killed writer left in ``folder``
        (a local folder's own files; below a remote prefix, every object).

        Only call it when no writer is running on that folder.
        """
        removed = []
        for p in sorted(Path(folder).glob(".*.tmp-*")):
            if p.is_file() and is_temp_name(p.name):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(str(p))
        return removed

    @contextlib.contextmanager
    def local_dir_for(self, folder: str) -> Iterator[str]:
        """A local folder in which to build files that :meth:`publish` then puts in ``folder``:
        the folder itself on a local disk."""
        yield folder

    def publish(self, local_dir: str, rels: Sequence[str], folder: str) -> None:
        """Make ``local_dir/rel`` appear as ``folder/rel`` (nothing to do: same folder here)."""

    @contextlib.contextmanager
    def atomic_output(self, final_path: str | Path, suffix: str = "") -> Iterator[Path]:
        """A temp path beside ``final_path``; fsynced and renamed onto it on success, removed
        on an exception (see :func:`corpus_pipeline.fsio.atomic_output`)."""
        final = Path(final_path)
        parent = final.parent
        if not parent.is_dir():
            raise UserError(f"output folder {str(parent)!r} does not exist: create it first")
        tmp = parent / f".{final.name}.tmp-{secrets.token_hex(6)}{suffix}"
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"atomic_output: nothing was written to {tmp}")
            _fsync_path(tmp)
            os.replace(tmp, final)
            fsync_dir(parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file; it appears only once complete."""
        with self.atomic_output(path) as tmp:
            tmp.write_bytes(data)

    def local_copy(self, path: str) -> str:
        """A local path with the file's content (the path itself here)."""
        return path


LOCAL = FileSystem()
"""The local disk."""

_TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{12}.*")


def fsync_dir(directory: str | Path) -> None:
    """Fsyncs a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems (and all of Windows) refuse fsync on a directory: best effort only.
        pass
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def is_temp_name(name: str) -> bool:
    """True for the ``.<name>.tmp-<random>*`` names :meth:`FileSystem.atomic_output` writes to."""
    return _TEMP_NAME.fullmatch(name) is not None
