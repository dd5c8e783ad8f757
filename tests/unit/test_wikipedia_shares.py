"""A single-stream dump read in shares (``wikipedia_pages.iter_share_chunks``).

Each of N workers decompresses the whole stream but parses only the ``<page>`` elements of its
own chunks (chunk ``c`` belongs to share ``c % N``). Whatever N, the shares together must give
exactly the pages of one plain read, each once, and counters that add up to one read's, damage
included (a malformed page inside another share's chunk, a stream cut off mid-page).
"""

from __future__ import annotations

import bz2
import collections
import dataclasses
from pathlib import Path

import pytest

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources import wikipedia_pages, wikipedia_plan, wikipedia_records
from corpus_pipeline.testing.multistream import read_dump_bytes, split_dump

CFG = dataclasses.replace(ExtractConfig(), pages_per_chunk=7)
HEADER, PAGES, FOOTER = split_dump(read_dump_bytes(SAMPLE_WIKI_DUMP))


class Counts(collections.Counter[str]):
    """A Counter that is also the ``count(name, n=1)`` callback."""

    def __call__(self, name: str, n: int = 1) -> None:
        self[name] += n


def plain(unit: wikipedia_records.WorkUnit) -> tuple[list, Counts]:
    counts = Counts()
    pages = list(wikipedia_pages.read_pages(unit, CFG, count=counts, tally=counts))
    return pages, counts


def shared(unit: wikipedia_records.WorkUnit, shares: int) -> tuple[list, Counts, list[set[int]]]:
    """Every share's chunks, merged by chunk index; summed counters; chunk indexes per share."""
    counts = Counts()
    chunks: dict[int, list] = {}
    owned: list[set[int]] = []
    for share in range(shares):
        got = list(
            wikipedia_pages.iter_share_chunks(
                unit, CFG, share=share, shares=shares, count=counts, tally=counts
            )
        )
        owned.append({c for c, _ in got})
        for c, pages in got:
            assert c not in chunks, f"chunk {c} read twice"
            assert pages
            chunks[c] = pages
    return [p for c in sorted(chunks) for p in chunks[c]], counts, owned


def dump(tmp_path: Path, body: bytes, name: str = "enwiki-x.xml.bz2") -> wikipedia_records.WorkUnit:
    path = tmp_path / name
    path.write_bytes(bz2.compress(body))
    (unit,) = wikipedia_plan.plan_units(str(path), CFG)
    assert wikipedia_plan.needs_chunking(unit)
    return unit


@pytest.mark.parametrize("shares", [1, 2, 3])
def test_shares_of_the_excerpt_give_its_pages_once(shares: int) -> None:
    (unit,) = wikipedia_plan.plan_units(SAMPLE_WIKI_DUMP, CFG)
    want, want_counts = plain(unit)
    got, counts, owned = shared(unit, shares)
    assert got == want and len(want) == 206
    assert counts == want_counts
    # 206 elements in chunks of 7: 30 chunks, dealt round-robin.
    assert owned == [set(range(s, 30, shares)) for s in range(shares)]


@pytest.mark.parametrize("shares", [2, 3])
def test_damage_is_counted_once_by_the_share_that_owns_it(tmp_path: Path, shares: int) -> None:
    """Two malformed pages (one in chunk 1, one in chunk 2) and a stream cut inside a page:
    the pages and every counter equal one plain read's."""
    pages = list(PAGES)
    pages[9] = pages[9].replace(b"</title>", b"</titel>")
    pages[15] = pages[15].replace(b"<text", b"<text \x01", 1)
    body = HEADER + b"".join(pages)
    unit = dump(tmp_path, body[: len(body) - len(pages[-1]) // 2])
    want, want_counts = plain(unit)
    got, counts, _ = shared(unit, shares)
    assert got == want
    assert counts == want_counts
    assert want_counts["extract/dropped:malformed_page"] == 2
    assert want_counts["extract/dropped:truncated_stream"] == 1
    assert want_counts["extract/lost_pages:truncated_stream"] == 1
    assert want_counts["extract/read:units"] == 1


def test_a_chunk_of_only_malformed_pages_is_not_yielded(tmp_path: Path) -> None:
    pages = [p.replace(b"</title>", b"</titel>") if i < 7 else p for i, p in enumerate(PAGES)]
    unit = dump(tmp_path, HEADER + b"".join(pages[:21]) + FOOTER)
    got = list(wikipedia_pages.iter_share_chunks(unit, CFG, share=0, shares=2, count=Counts()))
    assert [c for c, _ in got] == [2]
    assert [p.id for p in got[0][1]] == [p.id for p in plain(unit)[0][7:]]
