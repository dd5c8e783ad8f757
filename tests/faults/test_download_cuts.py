"""Downloads cut at seeded random byte offsets, again and again: they resume, the bytes and the
checksum hold.

A real HTTP server on 127.0.0.1 (``tests/support/http_server.py``) serves the bundled enwiki
excerpt laid out like dumps.wikimedia.org and closes the connection at chosen offsets. Every
resumed request must ask for exactly the bytes the ``.part`` file does not have yet.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources.http_fetch import fetch_url
from corpus_pipeline.sources.http_get import DownloadError, RetryPolicy
from corpus_pipeline.sources.wikimedia_dumps import (
    fetch_dump,
)
from tests.support.http_server import DumpServer, Faults, build_dump_site

PAYLOAD = SAMPLE_WIKI_DUMP.read_bytes()
INDEX = b"597:10:AccessibleComputing\n597:12:Anarchism\n"
DATE = "20240101"
DUMP = f"enwiki-{DATE}-pages-articles-multistream.xml.bz2"
DUMP_PATH = f"/enwiki/{DATE}/{DUMP}"


def no_wait(attempts: int) -> RetryPolicy:
    """Real retries without sleeping: exactly ``attempts`` tries per file."""
    return RetryPolicy(attempts=attempts, backoff_s=0.0, timeout_s=10.0)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    build_dump_site(root, PAYLOAD, date=DATE, index=INDEX)
    return root


def random_cuts(seed: int, n: int) -> list[int]:
    """``n`` offsets in the file, in no particular order: some fall before bytes already held
    (that request then brings nothing), some at 0, some one byte short of the end."""
    rng = random.Random(seed)
    cuts = [rng.randrange(len(PAYLOAD)) for _ in range(n - 3)] + [0, 1, len(PAYLOAD) - 1]
    rng.shuffle(cuts)
    return cuts


def expected_requests(cuts: list[int]) -> list[tuple[str | None, int]]:
    """(Range header, status) of every GET: each resumes at the bytes held so far."""
    held, out = 0, []
    for cut in [*cuts, len(PAYLOAD)]:
        out.append((None, 200) if held == 0 else (f"bytes={held}-", 206))
        held = max(held, cut)
    return out


def run_cut_download(site: Path, dest: Path, cuts: list[int]) -> list[tuple[str | None, int]]:
    with DumpServer(site, Faults(cut_at={DUMP_PATH: list(cuts)})) as srv:
        results = fetch_dump(
            "en",
            DATE,
            "pages-articles-multistream",
            dest,
            mirror=srv.url,
            policy=no_wait(len(cuts) + 1),
            progress=False,
        )
    assert [r.path.name for r in results][0] == DUMP
    dump = dest / DUMP
    assert dump.read_bytes() == PAYLOAD
    assert results[0].algo == "sha1"  # the published checksum was verified
    assert hashlib.sha1(dump.read_bytes()).hexdigest() == hashlib.sha1(PAYLOAD).hexdigest()
    assert sorted(p.name for p in dest.iterdir()) == sorted(r.path.name for r in results)
    return [(r.range, r.status) for r in srv.gets(DUMP_PATH)]


@pytest.mark.parametrize("seed", [1, 2])
def test_twenty_cuts_at_random_offsets_resume_to_the_exact_file(
    site: Path, tmp_path: Path, seed: int
) -> None:
    """20 cuts in one run: every retry asks for exactly the missing tail, the file is
    byte-identical, the sha1 from the dump listing matches and no ``.part`` is left."""
    cuts = random_cuts(seed, 20)
    assert run_cut_download(site, tmp_path / "dest", cuts) == expected_requests(cuts)


def test_twenty_runs_each_cut_once_resume_from_the_part_file(site: Path, tmp_path: Path) -> None:
    """The user's view: 20 runs, each killed by one cut (no retries left), each re-run of
    the same command resumes from the ``.part`` the previous run left, and the last completes."""
    dest = tmp_path / "dest"
    once = no_wait(1)
    cuts = sorted(random.Random(3).sample(range(1, len(PAYLOAD)), 20))
    part = dest / (DUMP + ".part")
    with DumpServer(site, Faults(cut_at={DUMP_PATH: list(cuts)})) as srv:
        for cut in cuts:
            with pytest.raises(DownloadError, match=f"resume from byte {cut:,}"):
                fetch_dump(
                    "en",
                    DATE,
                    "pages-articles-multistream",
                    dest,
                    mirror=srv.url,
                    policy=once,
                    progress=False,
                )
            assert part.read_bytes() == PAYLOAD[:cut]
            assert not (dest / DUMP).exists()
        results = fetch_dump(
            "en",
            DATE,
            "pages-articles-multistream",
            dest,
            mirror=srv.url,
            policy=once,
            progress=False,
        )
        requests = [(r.range, r.status) for r in srv.gets(DUMP_PATH)]
    assert results[0].path.read_bytes() == PAYLOAD
    assert results[0].fetched == len(PAYLOAD) - cuts[-1]  # only the last tail in the last run
    assert requests == expected_requests(cuts)
    assert not part.exists()


def test_cuts_on_a_url_download_with_sha256(site: Path, tmp_path: Path) -> None:
    """``download --url --sha256`` (no listing, no size known in advance) survives the cuts too."""
    cuts = random_cuts(4, 20)
    want = hashlib.sha256(PAYLOAD).hexdigest()
    with DumpServer(site, Faults(cut_at={DUMP_PATH: list(cuts)})) as srv:
        res = fetch_url(
            srv.url + DUMP_PATH,
            tmp_path / "dest",
            {"sha256": want},
            policy=no_wait(len(cuts) + 1),
            progress=False,
        )
        requests = [(r.range, r.status) for r in srv.gets(DUMP_PATH)]
    assert res.algo == "sha256" and res.path.read_bytes() == PAYLOAD
    assert requests == expected_requests(cuts)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(10))
def test_soak_a_thousand_cuts(site: Path, tmp_path: Path, seed: int) -> None:
    """Soak: 1,000 cuts per download, 10 seeds (about 15 s)."""
    cuts = random_cuts(100 + seed, 1000)
    assert run_cut_download(site, tmp_path / "dest", cuts) == expected_requests(cuts)
