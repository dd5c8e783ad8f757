"""Stable hashes and seeded generators: never Python's ``hash()``, worker ids or order."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same on every machine, process and run."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode("utf-8")
        h.update(len(b).to_bytes(4, "little"))
        h.update(b)
    return int.from_bytes(h.digest(), "little")


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded by a stable hash of ``parts`` (seed, doc id, dupe, stage...)."""
    return np.random.Generator(np.random.PCG64(stable_hash(*parts)))
