"""Per-format checks of ``verify``: each format checks its own shards against its schema.

``SHARD_CHECKS[fmt](spec, index, layout, res)`` checks one shard of one format (``layout``:
its files as ``formats.registry.shard_files`` names them) and returns what it found the shard
to hold, ``((records, instances), where)``, or None when it could not tell; the problems go
into ``res``, one line each naming the file. ``corpus_pipeline/verify.py`` decides what to
check (manifest, signature, file listing, sha256) and calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from corpus_pipeline.formats.checks import hdf5, mmap, tfrecord
from corpus_pipeline.formats.checks.common import CheckResult, CheckSpec, Counts

ShardCheck = Callable[[CheckSpec, int, Sequence[str], CheckResult], "tuple[Counts, str] | None"]

SHARD_CHECKS: dict[str, ShardCheck] = {
    "hdf5": hdf5.check_shard,
    "tfrecord": tfrecord.check_shard,
    "mmap": mmap.check_shard,
}
