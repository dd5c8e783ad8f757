"""What every shard writer does besides encoding: files that appear complete or not at all.

A :class:`ShardWriter` owns the files of one shard. Each file is created under a temp name
(``fsio.atomic_output``: beside its final name on a local disk, in a private local folder when
the destination is remote), written by the subclass, and on :meth:`ShardWriter.close`

1. the subclass finishes its encoding (:meth:`ShardWriter._finish`: trailing bytes, indexes,
   library handles closed);
2. every file gets its SHA-256 (kept while streaming when the subclass wrote through a
   :class:`HashingFile`, else read back from the temp file);
3. the files are fsynced and renamed (or uploaded) in the order they were created, so the
   file created last is the completion marker of the shard: when it exists, the others do.

On an exception (``with`` block, or a failed close) :meth:`ShardWriter.abort` closes the
handles and removes every temp file: nothing that looks like a finished shard is left. Only a
process killed outright leaves temp names, which ``fsio.remove_stale_temps`` removes.

A subclass implements ``write(batch)``, :meth:`ShardWriter._finish` and, when it holds library
handles, :meth:`ShardWriter._release`; it creates its files with :meth:`ShardWriter._create`.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from corpus_pipeline import fsio
from corpus_pipeline.formats.common import named_os_error, sha256_file

__all__ = ["HashingFile", "ShardWriter"]


class HashingFile:
    """A binary file written sequentially, hashed as it goes; IO errors name the final path."""

    def __init__(self, f: IO[bytes], final: str | Path) -> None:
        self.f = f
        self.final = final
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> None:
        """Appends ``data`` (bytes or any buffer, such as a numpy array)."""
        self.h.update(data)
        try:
            self.f.write(data)
        except OSError as e:
            raise named_os_error(e, self.final) from e
        self.size += memoryview(data).nbytes

    def close(self) -> None:
        try:
            self.f.close()
        except OSError as e:  # the last buffer is flushed here
            raise named_os_error(e, self.final) from e


class ShardWriter:
    """Base of the shard writers: temp names, fsync, rename or upload, per-file SHA-256.

    Use as a context manager (``close`` on success, ``abort`` on an exception).

    Attributes:
        path: The shard's main file (its final path).
        num_records: Records written so far.
    """

    path: Path
    num_records: int = 0

    def __init__(self) -> None:
        self._files: list[tuple[str, Path, contextlib.AbstractContextManager[Path]]] = []
        self._streams: dict[str, HashingFile] = {}
        self._hashes: dict[str, str] = {}
        self._done = False  # closed or aborted
        self._committed = False  # every file under its final name

    # -- for subclasses ------------------------------------------------------------------

    def _create(self, final: str | Path, suffix: str = "") -> Path:
        """A new file of the shard: returns the local temp path to write it at.

        Files are committed in the order they are created (the last one marks completion).
        """
        if self._done:
            raise RuntimeError(f"{final}: writer is closed")
        cm = fsio.atomic_output(final, suffix)
        tmp = cm.__enter__()
        self._files.append((str(final), tmp, cm))
        return tmp

    def _hashing(self, f: IO[bytes], final: str | Path) -> HashingFile:
        """Wraps a file opened on a :meth:`_create` temp path: its hash is kept as it is
        written (no read-back at close), and the base closes it."""
        stream = HashingFile(f, final)
        self._streams[str(final)] = stream
        return stream

    def _finish(self) -> None:
        """Completes the encoding: buffered rows, trailers, indexes; closes library handles."""

    def _release(self) -> None:
        """Best-effort close of library handles after a failure (must not raise)."""

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError(f"{self.path}: writer is closed")

    # -- public --------------------------------------------------------------------------

    def close(self) -> None:
        """Finishes the shard: encode the tail, hash, fsync and rename (or upload) every file
        in creation order. Idempotent."""
        if self._done:
            return
        try:
            self._finish()
            for final, stream in self._streams.items():
                stream.close()
                self._hashes[final] = stream.h.hexdigest()
            for final, tmp, _ in self._files:
                if final not in self._hashes:
                    self._hashes[final] = sha256_file(tmp)
            self._done = True
            files, self._files = self._files, []
            for i, (_, _, cm) in enumerate(files):
                try:
                    cm.__exit__(None, None, None)
                except BaseException as e:
                    self._discard(files[i + 1 :], e)
                    raise
            self._committed = True
        except BaseException as e:
            self.abort(e)
            if isinstance(e, OSError):
                raise named_os_error(e, self.path) from e
            raise

    def abort(self, exc: BaseException | None = None) -> None:
        """Discards the shard: closes the handles, removes the temp files."""
        self._done = True
        err = exc if exc is not None else RuntimeError(f"{self.path}: writer aborted")
        with contextlib.suppress(BaseException):
            self._release()
        for stream in self._streams.values():
            with contextlib.suppress(BaseException):
                stream.f.close()
        files, self._files = self._files, []
        self._discard(files, err)

    @staticmethod
    def _discard(
        files: list[tuple[str, Path, contextlib.AbstractContextManager[Path]]], err: BaseException
    ) -> None:
        for _, _, cm in files:
            with contextlib.suppress(BaseException):
                cm.__exit__(type(err), err, err.__traceback__)

    @property
    def file_sha256(self) -> dict[str, str]:
        """``{file name: hex sha256}`` of every file of the shard (after :meth:`close`)."""
        if not self._committed:
            raise RuntimeError(f"{self.path}: sha256 is known only after close()")
        return {fsio.basename(final): digest for final, digest in self._hashes.items()}

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the main file (after :meth:`close`)."""
        if not self._committed:
            raise RuntimeError(f"{self.path}: sha256 is known only after close()")
        return self._hashes[self._main]

    @property
    def _main(self) -> str:
        return next(f for f in self._hashes if fsio.basename(f) == self.path.name)

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)
