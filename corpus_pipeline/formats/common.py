"""Shared helpers for the shard format writers and readers.

* :class:`FormatError`: a shard is truncated, corrupt or not in the expected schema.
* :func:`atomic_output`: write to a temp name beside the final path, fsync, ``os.replace``; a
  failed write leaves nothing that looks like a finished shard.
* Padding helpers that turn unpadded :class:`~corpus_pipeline.records.Instance` batches into
  fixed-width numpy matrices with one vectorised scatter.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from corpus_pipeline.errors import InputFormatError, UserError

__all__ = [
    "FormatError",
    "atomic_output",
    "fsync_dir",
    "remove_stale_temps",
    "is_temp_name",
    "sha256_file",
    "pad_rows",
    "lengths_of",
    "check_instance_fits",
    "named_os_error",
]


_TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{12}.*")


class FormatError(InputFormatError):
    """A shard file is truncated, corrupt or of a foreign/wrong schema.

    The message is one line that names the file.
    """


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


@contextlib.contextmanager
def atomic_output(final_path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temp path beside ``final_path``; on success it becomes ``final_path``.

    The temp file is named ``.<final name>.tmp-<random><suffix>`` in the destination folder, so
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


def named_os_error(e: OSError, path: str | Path) -> OSError:
    """``e`` with ``path`` as its file name, when it has none (a failed ``write`` names no file).

    The errno is kept, so the CLI can still tell a full disk (``ENOSPC``) from other errors.
    """
    if e.filename is not None or e.errno is None:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def is_temp_name(name: str) -> bool:
    """True for the ``.<name>.tmp-<random>*`` names :func:`atomic_output` writes to."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Deletes the ``.<name>.tmp-<random>*`` files a killed writer left in ``directory``.

    Only call it when no writer is running on that folder.

    Returns:
        The paths removed, sorted.
    """
    removed = []
    for p in sorted(Path(directory).glob(".*.tmp-*")):
        if p.is_file() and _TEMP_NAME.fullmatch(p.name):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Returns the hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def lengths_of(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Returns the int64 lengths of a list of 1-D arrays."""
    return np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))


def pad_rows(arrays: Sequence[np.ndarray], width: int, dtype: np.dtype | type) -> np.ndarray:
    """Left-aligns 1-D arrays into a zero-padded ``(len(arrays), width)`` matrix.

    One concatenation plus one fancy-index scatter, no Python loop over tokens.

    Args:
        arrays: Rows, each of length <= ``width``.
        width: Number of columns.
        dtype: Dtype of the result.

    Returns:
        The padded matrix.

    Raises:
        ValueError: A row is longer than ``width``.
    """
    n = len(arrays)
    out = np.zeros((n, width), dtype=dtype)
    if n == 0:
        return out
    lens = lengths_of(arrays)
    if lens.max(initial=0) > width:
        raise ValueError(f"row of length {int(lens.max())} does not fit width {width}")
    total = int(lens.sum())
    if total == 0:
        return out
    flat = np.concatenate([np.asarray(a).ravel() for a in arrays]).astype(dtype, copy=False)
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    starts = np.cumsum(lens) - lens
    cols = np.arange(total, dtype=np.int64) - np.repeat(starts, lens)
    out[rows, cols] = flat
    return out


def check_instance_fits(
    input_len: int, num_predictions: int, max_seq_length: int, max_predictions: int, where: str
) -> None:
    """Raises ``ValueError`` when an instance exceeds the shard's fixed widths.

    This is a programming error upstream (the instance builder respects the config), so it is
    not a :class:`UserError`.
    """
    if input_len > max_seq_length:
        raise ValueError(
            f"{where}: instance of {input_len} tokens > max_seq_length {max_seq_length}"
        )
    if num_predictions > max_predictions:
        raise ValueError(
            f"{where}: instance with {num_predictions} predictions > max_predictions "
            f"{max_predictions}"
        )
