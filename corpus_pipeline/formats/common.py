"""Shared helpers for the shard format writers and readers.

* :class:`FormatError`: a shard is truncated, corrupt or not in the expected schema.
* :func:`atomic_output`: write to a temp name beside the final path, fsync, ``os.replace``; a
  failed write leaves nothing that looks like a finished shard.
* Padding helpers that turn unpadded :class:`~corpus_pipeline.records.Instance` batches into
  fixed-width numpy matrices with one vectorised scatter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline import fsio
from corpus_pipeline.errors import InputFormatError
from corpus_pipeline.fsio import atomic_output, fsync_dir, is_temp_name

# atomic_output, fsync_dir and is_temp_name are re-exported: the formats write through them
# (they live in the base layer, fsio).
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
    "RecordStream",
]


class FormatError(InputFormatError):
    """A shard file is truncated, corrupt or of a foreign/wrong schema.

    The message is one line that names the file.
    """


class RecordStream:
    """A shard reader's ``for x in r``, ``len(r)`` and ``next(r)``.

    A subclass sets ``_len`` (its record count) and implements ``_generate`` (a fresh pass over
    the records); ``iter(r)`` starts a new pass each time, ``next(r)`` continues one shared pass.
    """

    _len: int
    _it: Iterator[Any] | None = None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return self._generate()

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._generate()
        return next(self._it)

    def _generate(self) -> Iterator[Any]:
        raise NotImplementedError


def named_os_error(e: OSError, path: str | Path) -> OSError:
    """``e`` with ``path`` as its file name, when it has none (a failed ``write`` names no file).

    The errno is kept, so the CLI can still tell a full disk (``ENOSPC``) from other errors.
    """
    if e.filename is not None or e.errno is None:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Deletes the ``.<name>.tmp-<random>*`` files a killed writer left in ``directory``.

    Only call it when no writer is running on that folder.

    Returns:
        The paths removed, sorted.
    """
    return [Path(p) for p in fsio.remove_stale_temps(str(directory))]


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


def lengths_of(arrays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Returns the int64 lengths of a list (or object array) of 1-D arrays."""
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
