"""How much disk a run will write, and a refusal before it starts when that does not fit.

A full English dump is ~100 GB of XML; with every format, packed and unpacked, that is ~2 TB of
output. A run that fills the disk after a day is the worst way to learn it, so ``mask`` and
``run`` estimate their output from the input size before the pipeline starts, print it, and
refuse in one line when the output's file system has less free space (``--no-space-check``
to go ahead anyway).

Figures (bytes per instance at S=128, scaled by S/128 for other lengths) are from the 1 GB scale
run in the README (``bench/scale.py``: 5,037,128 instances, unpacked 7.9 GB, packed 10.7 GB,
23.5 GB peak on disk for 19.1 GB written) and the per-format sizes of ``bench/formats.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError

#: Bytes per unpacked instance at S=128, by format (mmap includes the Megatron sentence data).
BYTES_PER_INSTANCE_128 = {"hdf5": 232, "tfrecord": 834, "mmap": 495}
#: Packed shards per instance relative to unpacked (10.7 / 7.9 GB in the scale run).
PACKED_FACTOR = 1.36
#: Peak disk use over what stays (spill files of the shuffle, temp names): 23.5 / 19.1 GB.
PEAK_FACTOR = 1.23


def estimate_bytes(
    instances: float,
    max_seq_length: int,
    formats: Sequence[str],
    *,
    unpacked: bool = True,
    packed: bool = False,
    docs_bytes: float = 0.0,
) -> int:
    """Peak bytes on disk for ``instances`` instances written in ``formats``."""
    per = sum(BYTES_PER_INSTANCE_128[f] for f in formats) * max_seq_length / 128
    total = docs_bytes
    if unpacked:
        total += instances * per
    if packed:
        total += instances * per * PACKED_FACTOR
    return int(total * PEAK_FACTOR)


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def free_bytes(out: str) -> int | None:
    """Free bytes of the file system that will hold ``out`` (None for remote outputs)."""
    return fsio.filesystem(out).free_bytes(out)


def check_space(out: str, need: int, *, skip: bool) -> str:
    """Refuse (one line, exit 2) when ``out``'s disk has less than ``need`` bytes free.

    Returns the line to print before the run (the estimate and what is free).
    """
    free = free_bytes(out)
    if free is None:
        return f"estimated output  {human(need)}"
    line = f"estimated output  {human(need)} ({human(free)} free on the output's disk)"
    if need > free and not skip:
        raise UserError(
            f"--output {out}: the run needs about {human(need)} but its disk has {human(free)} "
            "free: free space, choose another --output, write fewer formats (--format hdf5), or "
            "pass --no-space-check to try anyway"
        )
    return line
