"""Checks of what libhdf5 trusts blindly, run before any row of a shard is read.

On damaged metadata libhdf5 does not always raise: a chunk index entry of size 0 crashes the
process (its fletcher32 filter reads before its buffer), a damaged global heap (the rows of a
packed shard) makes it loop forever. :func:`check_hdf5_structure` finds both first and raises
:class:`~corpus_pipeline.formats.common.FormatError`; the readers of :mod:`.hdf5` call it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np

from corpus_pipeline.formats.common import FormatError

__all__ = ["H5_ERRORS", "check_hdf5_structure", "one_line"]

#: What h5py raises on a damaged file (it has no common base class).
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (h5py messages span several lines)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


# A variable-length element as stored in a dataset: element count, then the global heap
# object holding the elements (collection address, object index). HDF5 file format spec,
# "Disk Format: Level 1E - Global Heap" and the vlen datatype encoding.
_VLEN_REF = np.dtype([("len", "<u4"), ("addr", "<u8"), ("idx", "<u4")])
_GCOL_HEADER = struct.Struct("<4sB3xQ")  # "GCOL", version 1, reserved, collection size
_GCOL_OBJECT = struct.Struct("<HH4xQ")  # object index (0 = free space), references, size


def _vlen_references(f: h5py.File, path: Path) -> dict[int, list[tuple[np.ndarray, int]]]:
    """Collection address -> [(references into it, element size)] over the vlen datasets.

    Read from the raw chunks, so libhdf5 never follows a reference here.
    """
    heaps: dict[int, list[tuple[np.ndarray, int]]] = {}
    try:
        for key in f:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.chunks is None:
                continue  # not this writer's layout: the schema check reports it
            base = h5py.check_vlen_dtype(ds.dtype)
            if base is None:
                continue  # fixed-width (unpacked) data: no heap
            base = np.dtype(base)
            dsid = ds.id
            for i in range(dsid.get_num_chunks()):
                info = dsid.get_chunk_info(i)
                if info.filter_mask or info.size % _VLEN_REF.itemsize:
                    continue  # filtered (a foreign writer's compression): cannot be checked here
                _, raw = dsid.read_direct_chunk(info.chunk_offset)
                refs = np.frombuffer(raw, dtype=_VLEN_REF)
                refs = refs[refs["len"] > 0]
                for addr in np.unique(refs["addr"]).tolist():
                    heaps.setdefault(addr, []).append((refs[refs["addr"] == addr], base.itemsize))
    except H5_ERRORS as e:
        raise FormatError(
            f"{path}: corrupt HDF5 chunk index ({one_line(e)}); regenerate the shard"
        ) from None
    return heaps


def _check_global_heaps(path: Path, heaps: dict[int, list[tuple[np.ndarray, int]]]) -> None:
    """Walk every global heap collection the packed rows point to, as libhdf5 will read it.

    A damaged collection whose free-space object has size 0 (a zeroed block, say) makes
    libhdf5 2.0 loop forever when it loads it, so a damaged shard would hang its reader
    instead of failing; a reference to a missing object or one of the wrong size would give
    garbage rows. Both are found here first and raised as :class:`FormatError`.
    """

    def corrupt(addr: int, what: str) -> FormatError:
        return FormatError(
            f"{path}: global heap at byte {addr} {what}: corrupt packed shard; regenerate it"
        )

    size = path.stat().st_size
    with open(path, "rb") as raw:
        for addr in sorted(heaps):
            if addr + _GCOL_HEADER.size > size:
                raise corrupt(addr, "is past the end of the file")
            raw.seek(addr)
            head = raw.read(_GCOL_HEADER.size)
            sig, version, csize = _GCOL_HEADER.unpack(head)
            if sig != b"GCOL" or version != 1 or csize < 4096 or addr + csize > size:
                raise corrupt(addr, "has a bad header")
            buf = head + raw.read(csize - _GCOL_HEADER.size)
            sizes = np.full(1 << 16, -1, dtype=np.int64)  # object index (u16) -> size
            p = _GCOL_HEADER.size
            while p + _GCOL_OBJECT.size <= csize:
                idx, _, nbytes = _GCOL_OBJECT.unpack_from(buf, p)
                need = _GCOL_OBJECT.size + (nbytes + 7) // 8 * 8 if idx else nbytes
                if need == 0 or p + need > csize:
                    raise corrupt(addr, f"has an object of impossible size at offset {p}")
                if idx:
                    sizes[idx] = nbytes
                p += need
            for refs, itemsize in heaps[addr]:
                idx = refs["idx"].astype(np.int64)
                have = sizes[np.minimum(idx, sizes.shape[0] - 1)]
                want = refs["len"].astype(np.int64) * itemsize
                if (idx >= sizes.shape[0]).any() or (have != want).any():
                    raise corrupt(addr, "lacks an object a row points to, or its size is wrong")


def _check_chunk_index(f: h5py.File, path: Path) -> None:
    """Every chunk the index lists must lie inside the file and hold at least a checksum.

    libhdf5 trusts the chunk B-tree: a damaged entry (address 0, size 0) makes its fletcher32
    filter read before its buffer and the process dies with a segmentation fault.
    """
    size = path.stat().st_size
    try:
        for key in f:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.chunks is None:
                continue
            dsid = ds.id
            least = 4 if ds.fletcher32 else 1  # the checksum alone is 4 bytes
            for i in range(dsid.get_num_chunks()):
                info = dsid.get_chunk_info(i)
                at, n = info.byte_offset, info.size
                if at is None or at < 1 or n < least or at + n > size:
                    raise FormatError(
                        f"{path}: chunk {i} of dataset {key!r} lies outside the file "
                        f"(byte {at}, {n} bytes): corrupt shard; regenerate it"
                    )
    except FormatError:
        raise
    except H5_ERRORS as e:
        raise FormatError(
            f"{path}: corrupt HDF5 chunk index ({one_line(e)}); regenerate the shard"
        ) from None


def check_hdf5_structure(path: str | Path) -> None:
    """Check what libhdf5 trusts blindly, before it reads the rows of a shard.

    On damaged metadata libhdf5 does not always raise: a chunk index entry of size 0 crashes
    the process, a damaged global heap (the rows of a packed shard) makes it loop forever. So
    both readers call this first, and so should any code reading our shards with h5py (each
    chunk's address and size; the heap objects packed rows point to).

    Raises:
        FormatError: The file is not readable HDF5, or its chunk index or heaps are damaged.
    """
    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except H5_ERRORS as e:
        raise FormatError(f"{p}: not a readable HDF5 file ({one_line(e)})") from None
    with f:
        _check_chunk_index(f, p)
        heaps = _vlen_references(f, p)
    _check_global_heaps(p, heaps)
