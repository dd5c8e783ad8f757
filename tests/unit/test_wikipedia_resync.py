"""One damaged page costs that page only.

The reader cuts the decompressed dump at each ``<page>`` and parses every page on its own, so
a NUL byte, an invalid UTF-8 sequence, a control character or an undefined entity inside one
page drops that page, counted with its reason, and every page after it is still read. Parsing
a whole unit at once would let one ``ParseError`` end it: on the bundled excerpt, damage at 3 %
of a single-stream dump would leave 1 page of 206.

Every bad input is built here from the bundled enwiki excerpt.
"""

from __future__ import annotations

import bz2
import codecs
import collections
import re
from pathlib import Path

import pytest

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources import wikipedia_pages, wikipedia_plan, wikipedia_records
from corpus_pipeline.testing.multistream import build_multistream, read_dump_bytes, split_dump

CFG = ExtractConfig()
XML = read_dump_bytes(SAMPLE_WIKI_DUMP)
HEADER, PAGES, FOOTER = split_dump(XML)
_ID = re.compile(rb"<id>(\d+)</id>")


class Counts(collections.Counter[str]):
    """A Counter that is also the ``count(name, n=1)`` callback."""

    def __call__(self, name: str, n: int = 1) -> None:
        self[name] += n


def page_id(page: bytes) -> int:
    m = _ID.search(page)
    assert m is not None
    return int(m.group(1))


def target_index(at: float = 0.03) -> int:
    """The first article (namespace 0, not a redirect) starting past ``at`` of the XML."""
    pos = len(HEADER)
    for i, page in enumerate(PAGES):
        if pos >= at * len(XML) and b"<ns>0</ns>" in page and b"<redirect" not in page:
            return i
        pos += len(page)
    raise AssertionError("no article past the offset")


def damaged(page: bytes, damage: bytes) -> bytes:
    """``damage`` inserted inside the page's wikitext."""
    at = page.index(b">", page.index(b"<text")) + 20
    return page[:at] + damage + page[at:]


def read(path: Path, **kw: object) -> tuple[list[wikipedia_records.RawPage], Counts, Counts]:
    counts, tally = Counts(), Counts()
    units = wikipedia_plan.plan_units(path, CFG, **kw)  # type: ignore[arg-type]
    got = [p for u in units for p in wikipedia_pages.read_pages(u, CFG, count=counts, tally=tally)]
    return got, counts, tally


@pytest.fixture(scope="module")
def clean_pages(tmp_path_factory: pytest.TempPathFactory) -> list[wikipedia_records.RawPage]:
    got, counts, tally = read(SAMPLE_WIKI_DUMP)
    assert len(got) == len(PAGES) == 206 and not counts
    assert tally == {
        "extract/read:units": 1,
        "extract/read:pages": 206,
        "extract/read:bytes": len(XML),
    }
    return got


DAMAGE = {
    "nul": (b"\x00", "invalid_char"),
    "invalid_utf8": (b"\xff\xfe\xc3(", "invalid_encoding"),
    "control_char": (b"\x01", "invalid_char"),
    "undefined_entity": (b"&foo;", "undefined_entity"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_one_damaged_page_of_a_single_stream_dump_drops_only_that_page(
    tmp_path: Path, clean_pages: list[wikipedia_records.RawPage], kind: str
) -> None:
    damage, reason = DAMAGE[kind]
    i = target_index()
    bad = damaged(PAGES[i], damage)
    path = tmp_path / "enwiki-damaged.xml.bz2"
    path.write_bytes(bz2.compress(HEADER + b"".join([*PAGES[:i], bad, *PAGES[i + 1 :]]) + FOOTER))
    got, counts, tally = read(path)
    assert got == [p for p in clean_pages if p.id != page_id(PAGES[i])]
    assert counts == {"extract/dropped:malformed_page": 1, f"extract/malformed_page:{reason}": 1}
    assert tally["extract/read:pages"] == 206
    assert tally["extract/lost:bytes"] == len(bad.strip())


@pytest.mark.parametrize(
    ("where", "old", "new"),
    [
        ("page start tag", b"<page>", b"<pa\x00ge>"),
        ("page end tag", b"</page>", b"</pa\x00ge>"),
        ("title tag", b"</title>", b"</titel>"),
    ],
)
def test_a_damaged_tag_drops_only_its_page(
    tmp_path: Path, clean_pages: list[wikipedia_records.RawPage], where: str, old: bytes, new: bytes
) -> None:
    i = target_index()
    path = tmp_path / "enwiki-damaged.xml"
    path.write_bytes(
        HEADER + b"".join([*PAGES[:i], PAGES[i].replace(old, new), *PAGES[i + 1 :]]) + FOOTER
    )
    got, counts, _ = read(path)
    assert got == [p for p in clean_pages if p.id != page_id(PAGES[i])], where
    assert counts["extract/dropped:malformed_page"] == 1


def test_damaged_last_page_is_not_a_truncation(
    tmp_path: Path, clean_pages: list[wikipedia_records.RawPage]
) -> None:
    path = tmp_path / "enwiki-damaged.xml"
    path.write_bytes(HEADER + b"".join([*PAGES[:-1], damaged(PAGES[-1], b"\x00")]) + FOOTER)
    got, counts, _ = read(path)
    assert got == clean_pages[:-1]
    assert counts == {"extract/dropped:malformed_page": 1, "extract/malformed_page:invalid_char": 1}


def test_one_damaged_page_of_a_multistream_dump_drops_only_that_page(
    tmp_path: Path, clean_pages: list[wikipedia_records.RawPage]
) -> None:
    i = target_index(0.5)
    src = tmp_path / "src.xml"
    src.write_bytes(
        HEADER + b"".join([*PAGES[:i], damaged(PAGES[i], b"\x00"), *PAGES[i + 1 :]]) + FOOTER
    )
    dump, index = build_multistream(src, tmp_path, pages_per_stream=10, name="enwiki-damaged")
    units = wikipedia_plan.plan_units(dump, CFG, index_path=index)
    assert len(units) > 20 and all(u.end is not None for u in units)
    got, counts, tally = read(dump, index_path=index)
    assert got == [p for p in clean_pages if p.id != page_id(PAGES[i])]
    assert counts == {"extract/dropped:malformed_page": 1, "extract/malformed_page:invalid_char": 1}
    assert tally["extract/read:pages"] == 206
    assert tally["extract/read:units"] == len(units)


def test_invalid_utf16_in_one_page_drops_only_that_page(
    tmp_path: Path, clean_pages: list[wikipedia_records.RawPage]
) -> None:
    """A UTF-16 dump is transcoded to UTF-8 first: an unpaired surrogate in one page makes
    that page invalid, not the rest of the dump."""
    i = target_index()
    text = XML.decode("utf-8")
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    title = re.search(rb"<title>(.*?)</title>", PAGES[i])
    assert title is not None
    at = data.index(title.group(1).decode("utf-8").encode("utf-16-le"))
    path = tmp_path / "enwiki-utf16.xml"
    path.write_bytes(data[:at] + b"\x00\xd8" + data[at:])  # a high surrogate, then no low one
    got, counts, _ = read(path)
    assert got == [p for p in clean_pages if p.id != page_id(PAGES[i])]
    assert counts == {
        "extract/dropped:malformed_page": 1,
        "extract/malformed_page:invalid_encoding": 1,
    }


def test_truncated_dump_tallies_the_page_it_cuts(tmp_path: Path) -> None:
    i = target_index(0.5)
    cut = len(HEADER) + sum(map(len, PAGES[:i])) + len(PAGES[i]) // 2
    path = tmp_path / "enwiki-cut.xml"
    path.write_bytes(XML[:cut])
    got, counts, tally = read(path)
    assert len(got) == i
    assert counts == {"extract/dropped:truncated_stream": 1}
    assert tally["extract/lost_pages:truncated_stream"] == 1
    assert tally["extract/read:pages"] == i + 1
