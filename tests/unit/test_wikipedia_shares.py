"""A single-stream dump read in shares (``wikipedia_shares.iter_share_chunks``).

A bz2 dump is split by blocks: each of N workers decompresses only the blocks whose magic lies
in its byte range, and keeps the pages whose ``<page>`` starts in them. Any other dump is read
whole by every share, which parses only its own chunks (chunk ``c`` belongs to share ``c % N``).
Whatever N, the shares together must give exactly the pages of one plain read, each once, in
file order, and counters that add up to one read's, damage included.
"""

from __future__ import annotations

import bz2
import collections
import dataclasses
import functools
import gzip
import os
import re
from pathlib import Path

import pytest

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources import (
    bz2_blocks,
    wikipedia_pages,
    wikipedia_plan,
    wikipedia_records,
    wikipedia_shares,
)
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
    """Every share's chunks, merged by chunk index; summed counters; chunk indexes per share.

    ``extract/read:blocks`` (a plain read has no blocks) is checked here and left out: each
    block of a bz2 dump counts once, in the share that owns it; a block the file's end cuts
    short is not one.
    """
    counts = Counts()
    chunks: dict[int, list] = {}
    owned: list[set[int]] = []
    for share in range(shares):
        got = list(
            wikipedia_shares.iter_share_chunks(
                unit, CFG, share=share, shares=shares, count=counts, tally=counts
            )
        )
        owned.append({c for c, _ in got})
        for c, pages in got:
            assert c not in chunks, f"chunk {c} read twice"
            assert pages
            chunks[c] = pages
    whole = _whole_blocks(unit.path) if unit.compression == "bz2" else 0
    assert counts.pop("extract/read:blocks", 0) == whole
    return [p for c in sorted(chunks) for p in chunks[c]], counts, owned


def dump(
    tmp_path: Path, body: bytes, name: str = "enwiki-x.xml.bz2", level: int = 9
) -> wikipedia_records.WorkUnit:
    path = tmp_path / name
    data = gzip.compress(body) if name.endswith(".gz") else bz2.compress(body, level)
    path.write_bytes(data)
    (unit,) = wikipedia_plan.plan_units(str(path), CFG)
    assert wikipedia_plan.needs_chunking(unit)
    return unit


@functools.cache
def _whole_blocks_of(path: str, size: int, mtime_ns: int) -> int:
    return sum(not b.tail for b in blocks_of(path))


def _whole_blocks(path: str) -> int:
    """The blocks of a bz2 file that a reader can count (not one the file's end cuts short);
    decoded once per file version."""
    st = os.stat(path)
    return _whole_blocks_of(path, st.st_size, st.st_mtime_ns)


def blocks_of(path: str) -> list[bz2_blocks.Block]:
    with open(path, "rb") as f:
        return list(bz2_blocks.BlockReader(f, 0))


def xml(pages: list[bytes]) -> bytes:
    return HEADER + b"".join(p + b"\n" for p in pages) + FOOTER


# ------------------------------------------------------------------------------- bz2 blocks


def test_a_rebuilt_one_block_stream_decodes_to_that_block_of_the_full_decode(
    tmp_path: Path,
) -> None:
    body = xml(PAGES)
    unit = dump(tmp_path, body, level=1)
    data = Path(unit.path).read_bytes()
    blocks = blocks_of(unit.path)
    assert len(blocks) >= 6
    assert {b.offset % 8 for b in blocks} != {0}  # magics at other bit offsets than 0
    # Concatenated, the blocks decoded alone are the full decode; a reader starting mid-file
    # finds the same blocks, with the same bytes.
    assert all(b.data for b in blocks)
    assert b"".join(b.data or b"" for b in blocks) == bz2.decompress(data) == body
    with open(unit.path, "rb") as f:
        later = list(bz2_blocks.BlockReader(f, len(data) // 2))
    assert later == [b for b in blocks if b.offset >= 8 * (len(data) // 2)]
    ends = [b.offset for b in blocks[1:]] + [None]
    for block, end in zip(blocks[:3], ends, strict=False):
        assert end is not None
        assert bz2_blocks.decode_block(data, block.offset, end) == block.data


@pytest.mark.parametrize("shift", range(8))
def test_a_magic_is_found_at_any_bit_offset(shift: int) -> None:
    noise = bytes(range(7, 250, 3)) * 4
    value = (int.from_bytes(noise, "big") << 48 | bz2_blocks.BLOCK_MAGIC) << 40
    value |= int.from_bytes(noise[:5], "big")
    value <<= shift
    buf = value.to_bytes((len(noise) * 8 + 88 + shift + 7) // 8 + 1, "big")
    found = bz2_blocks.find_magics(buf, 0, len(buf))
    at = 8 * len(buf) - (88 + shift)
    assert (at, bz2_blocks.BLOCK_MAGIC) in found


@pytest.mark.parametrize("level", [1, 9])
def test_block_shares_of_the_excerpt_give_its_pages_once(tmp_path: Path, level: int) -> None:
    unit = dump(tmp_path, xml(PAGES), level=level)
    want, want_counts = plain(unit)
    assert len(want) == 206
    for shares in (1, 2, 3, 5):
        got, counts, owned = shared(unit, shares)
        assert [p.id for p in got] == [p.id for p in want]
        assert got == want
        assert counts == want_counts
        if level == 1:  # 61 blocks: every share owns some
            assert all(owned)


def _first_share_at(unit: wikipedia_records.WorkUnit, block: int) -> int:
    """A number of shares for which some share's first block is ``block``."""
    size = Path(unit.path).stat().st_size
    offsets = [b.offset for b in blocks_of(unit.path)]
    for n in range(2, 200):
        for i in range(1, n):
            start = 8 * (size * i // n)
            if offsets[block - 1] < start <= offsets[block]:
                return n
    raise AssertionError("no share starts at that block")


@pytest.mark.parametrize("into_page", [0, 3, 200], ids=["at-page", "in-page-tag", "mid-page"])
def test_a_block_boundary_at_or_inside_a_page(tmp_path: Path, into_page: int) -> None:
    """Block 1 starts exactly at a ``<page>``, inside its tag, or in a page's text; a share
    starts at that block: the pages are still those of a plain read."""
    pages = [p.strip() for p in PAGES[:40]]
    probe = dump(tmp_path, xml(pages), name="probe.xml.bz2", level=1)
    cut = len(blocks_of(probe.path)[0].data or b"")
    starts = [len(HEADER)]
    for p in pages:
        starts.append(starts[-1] + len(p) + 1)
    k = max(i for i in range(len(pages)) if starts[i] <= cut - into_page - 20)
    # Whitespace without runs (bzip2 folds runs of 4+ bytes) before page k moves the page
    # towards the cut; the cut moves a little with it, so until both agree.
    for _ in range(8):
        pad = (b" \n" * cut)[: cut - into_page - starts[k]]
        body = (
            HEADER
            + b"".join(p + b"\n" for p in pages[:k])
            + pad
            + b"".join(p + b"\n" for p in pages[k:])
            + FOOTER
        )
        unit = dump(tmp_path, body, level=1)
        blocks = blocks_of(unit.path)
        if len(blocks[0].data or b"") == cut:
            break
        cut = len(blocks[0].data or b"")
    assert body[cut - into_page :].startswith(b"<page>")
    assert len(blocks[0].data or b"") == cut and len(blocks) >= 3
    want, want_counts = plain(unit)
    assert len(want) == 40
    for shares in (1, 2, 3, _first_share_at(unit, 1)):
        got, counts, _ = shared(unit, shares)
        assert got == want
        assert counts == want_counts


def test_a_corrupt_block_loses_only_its_pages(tmp_path: Path) -> None:
    body = xml(PAGES)
    unit = dump(tmp_path, body, level=1)
    intact, _ = plain(unit)
    blocks = blocks_of(unit.path)
    k = 4
    lo, hi = blocks[k].offset // 8, blocks[k + 1].offset // 8
    data = bytearray(Path(unit.path).read_bytes())
    mid = (lo + hi) // 2
    data[mid : mid + 16] = bytes(b ^ 0x5A for b in data[mid : mid + 16])
    Path(unit.path).write_bytes(data)
    # The decoded range of block k; a page is lost when its segment (its <page> to the next
    # one) reaches into it.
    start = sum(len(b.data or b"") for b in blocks[:k])
    end = start + len(blocks[k].data or b"")
    segments = [body.index(b"<page>")]
    for _ in PAGES:
        segments.append(body.find(b"<page>", segments[-1] + 1))
    segments[-1] = len(body)
    kept = {
        PAGES_IDS[i] for i in range(len(PAGES)) if segments[i + 1] <= start or segments[i] >= end
    }
    results = [shared(unit, shares) for shares in (1, 2, 3, _first_share_at(unit, k))]
    got, counts, _ = results[0]
    assert {p.id for p in got} == kept and len(got) == len(kept) < len(intact)
    assert [p for p in intact if p.id in kept] == got
    # One block of the stream lost, not the stream: the loss report counts it among blocks.
    assert counts["extract/dropped:corrupt_block"] == 1
    assert counts["extract/lost_pages:corrupt_block"] == 1
    assert "extract/dropped:corrupt_stream" not in counts
    assert counts["extract/lost:bytes"] > 0
    for other, other_counts, _ in results[1:]:
        assert other == got
        assert other_counts == counts


PAGES_IDS = [int(p.split(b"<id>", 1)[1].split(b"</id>", 1)[0]) for p in PAGES]


@pytest.mark.parametrize("shares", [2, 3])
def test_a_dump_cut_inside_a_block_gives_what_a_plain_read_gives(
    tmp_path: Path, shares: int
) -> None:
    unit = dump(tmp_path, xml(PAGES), level=1)
    data = Path(unit.path).read_bytes()
    Path(unit.path).write_bytes(data[: len(data) * 6 // 10])
    want, want_counts = plain(unit)
    got, counts, _ = shared(unit, shares)
    assert got == want
    assert counts == want_counts
    assert counts["extract/dropped:truncated_stream"] == 1


@pytest.mark.parametrize("shares", [2, 3])
@pytest.mark.parametrize(
    ("name", "second"), [("enwiki-x.xml.bz2", 150), ("enwiki-x.xml.gz", 15)], ids=["bz2", "gzip"]
)
def test_damage_is_counted_once_by_the_share_that_owns_it(
    tmp_path: Path, name: str, second: int, shares: int
) -> None:
    """Two malformed pages and a stream cut inside a page: the pages and every counter equal
    one plain read's. The damage lies in different shares' parts: bz2 at level 1 in other
    blocks, a gzip dump (read whole by every share) in other chunks of 7 pages."""
    pages = list(PAGES)
    pages[9] = pages[9].replace(b"</title>", b"</titel>")
    pages[second] = pages[second].replace(b"<text", b"<text \x01", 1)
    body = HEADER + b"".join(pages)
    unit = dump(tmp_path, body[: len(body) - len(pages[-1]) // 2], name=name, level=1)
    want, want_counts = plain(unit)
    got, counts, _ = shared(unit, shares)
    assert got == want
    assert counts == want_counts
    assert want_counts["extract/dropped:malformed_page"] == 2
    assert want_counts["extract/dropped:truncated_stream"] == 1
    assert want_counts["extract/lost_pages:truncated_stream"] == 1
    assert want_counts["extract/read:units"] == 1


def test_pages_without_ns_take_the_header_namespaces_in_a_later_share(tmp_path: Path) -> None:
    """Old exports have no ``<ns>``: a share that does not read the header learns its
    namespace names from it (a renamed namespace here)."""
    header = HEADER.replace(b">Template</namespace>", b">Vorlage</namespace>")
    assert header != HEADER
    pages = [
        re.sub(rb"<ns>\d+</ns>", b"", p).replace(b"<title>", b"<title>Vorlage:", 1) for p in PAGES
    ]
    unit = dump(tmp_path, header + b"".join(pages) + FOOTER, level=1)
    want, _ = plain(unit)
    assert {p.ns for p in want} == {10}
    got, _, _ = shared(unit, 3)
    assert got == want


# ---------------------------------------------------------------- any other dump: read whole


@pytest.mark.parametrize("shares", [1, 2, 3])
def test_shares_of_a_gzip_dump_give_its_pages_once(tmp_path: Path, shares: int) -> None:
    unit = dump(tmp_path, xml(PAGES), name="enwiki-x.xml.gz")
    assert not wikipedia_shares.splits_blocks(unit)
    want, want_counts = plain(unit)
    got, counts, owned = shared(unit, shares)
    assert got == want and len(want) == 206
    assert counts == want_counts
    # 206 elements in chunks of 7: 30 chunks, dealt round-robin.
    assert owned == [set(range(s, 30, shares)) for s in range(shares)]


def test_a_chunk_of_only_malformed_pages_is_not_yielded(tmp_path: Path) -> None:
    pages = [p.replace(b"</title>", b"</titel>") if i < 7 else p for i, p in enumerate(PAGES)]
    unit = dump(tmp_path, HEADER + b"".join(pages[:21]) + FOOTER, name="enwiki-x.xml.gz")
    got = list(wikipedia_shares.iter_share_chunks(unit, CFG, share=0, shares=2, count=Counts()))
    assert [c for c, _ in got] == [2]
    assert [p.id for p in got[0][1]] == [p.id for p in plain(unit)[0][7:]]
