"""Packs for format tests: real sequence lengths grouped without the packing stage."""

from __future__ import annotations

from corpus_pipeline.records import Instance, Pack


def first_fit_packs(insts: list[Instance], s: int, k: int) -> list[Pack]:
    """``insts`` in order, a new pack whenever the next one would exceed ``k`` members or ``s``
    tokens (every instance must fit ``s`` alone)."""
    packs: list[Pack] = []
    cur: list[Instance] = []
    for inst in insts:
        if cur and (len(cur) == k or sum(map(len, cur)) + len(inst) > s):
            packs.append(Pack(cur))
            cur = []
        cur.append(inst)
    packs.append(Pack(cur))
    return packs
