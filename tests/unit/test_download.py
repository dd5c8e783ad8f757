"""Dump downloader against a real HTTP server on 127.0.0.1 serving the bundled enwiki excerpt."""

from __future__ import annotations

import bz2
import hashlib
import json
from pathlib import Path

import pytest

from corpus_pipeline.errors import ChecksumError, UserError
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from corpus_pipeline.sources.http_fetch import DownloadResult, download_url, fetch_url, summarize
from corpus_pipeline.sources.http_get import DownloadError, RetryPolicy
from corpus_pipeline.sources.wikimedia_dumps import (
    canonical_name,
    download_dump,
    dump_file_names,
    fetch_dump,
    parse_checksum_listing,
    parse_dumpstatus,
    resolve_dump,
    validate_date,
    validate_lang,
)
from tests.support.http_server import DumpServer, Faults, build_dump_site

PAYLOAD = SAMPLE_WIKI_DUMP.read_bytes()
# A real-format multistream index ("offset:page_id:title"), bz2-compressed like the real one.
INDEX = bz2.compress(
    b"597:10:AccessibleComputing\n597:12:Anarchism\n633419:13:AfghanistanHistory\n"
)
DATE = "20240101"
ARTICLES = f"enwiki-{DATE}-pages-articles.xml.bz2"
ARTICLES_PATH = f"/enwiki/{DATE}/{ARTICLES}"
# Fast but real retries: several attempts, no sleeping, short socket timeout.
FAST = RetryPolicy(attempts=4, backoff_s=0.0, timeout_s=10.0)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours http_proxy; the test server is local and must be reached directly.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    build_dump_site(root, PAYLOAD, date=DATE, index=INDEX)
    return root


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


def _get(srv: DumpServer, path: str) -> list[tuple[str | None, int]]:
    return [(r.range, r.status) for r in srv.gets(path)]


# --------------------------------------------------------------------------------- pure parts


def test_parse_checksum_listing_accepts_text_and_binary_lines_and_skips_junk() -> None:
    sha = hashlib.sha1(b"x").hexdigest()
    text = f"{sha}  a.bz2\n{sha.upper()} *b.bz2\n\nnot a line\n{sha[:-1]}  short.bz2\n"
    assert parse_checksum_listing(text, "sha1") == {"a.bz2": {"sha1": sha}, "b.bz2": {"sha1": sha}}


def test_parse_dumpstatus_searches_every_job_and_keeps_status_and_size() -> None:
    sha, md5 = hashlib.sha1(b"x").hexdigest(), hashlib.md5(b"x").hexdigest()
    obj = {
        "version": "0.8",
        "jobs": {
            "articlesdump": {"status": "done", "files": {"p1.bz2": {"size": 5, "sha1": sha}}},
            "articlesdumprecombine": {
                "status": "in-progress",
                "files": {"all.bz2": {"size": 9, "sha1": sha, "md5": md5, "url": "/x/all.bz2"}},
            },
            "namespaces": {"status": "done"},
        },
    }
    got = parse_dumpstatus(obj)
    assert set(got) == {"p1.bz2", "all.bz2"}
    assert got["all.bz2"].checksums == {"sha1": sha, "md5": md5}
    assert (got["all.bz2"].size, got["all.bz2"].job, got["all.bz2"].status) == (
        9,
        "articlesdumprecombine",
        "in-progress",
    )
    with pytest.raises(ValueError):
        parse_dumpstatus({"version": "0.8"})


def test_names_dates_and_languages() -> None:
    assert dump_file_names("de", "latest", "pages-articles-multistream") == [
        "dewiki-latest-pages-articles-multistream.xml.bz2",
        "dewiki-latest-pages-articles-multistream-index.txt.bz2",
    ]
    assert canonical_name("enwiki-20240101-pages-articles.xml.bz2", "en") == (
        "enwiki-latest-pages-articles.xml.bz2"
    )
    assert canonical_name("dewiki-20240101-x", "en") == "dewiki-20240101-x"
    for bad in ("2024-01-01", "yesterday", "2024010"):
        with pytest.raises(UserError, match="YYYYMMDD"):
            validate_date(bad)
    for bad in ("EN", "en wiki", "../en", ""):
        with pytest.raises(UserError, match="language code"):
            validate_lang(bad)
    with pytest.raises(UserError, match="--kind"):
        dump_file_names("en", "latest", "pages-meta-history")


def test_retry_delays_double_and_are_capped() -> None:
    p = RetryPolicy(attempts=10, backoff_s=0.5, max_backoff_s=3.0)
    assert [p.delay(k) for k in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(UserError):
        RetryPolicy(attempts=0)


def test_summary_is_one_line_with_files_bytes_seconds_and_checksum_type(tmp_path: Path) -> None:
    rs = [
        DownloadResult(tmp_path / "a", 1000, 1000, "sha1"),
        DownloadResult(tmp_path / "b", 2500, 0, "md5", skipped=True),
    ]
    line = summarize(rs, 1.25)
    assert "\n" not in line
    assert line == (
        "download: 2 files (1 already complete), 3,500 bytes (1,000 fetched) in 1.2 s; "
        "verified md5,sha1"
    )


# ----------------------------------------------------------------------- against a real server


def test_full_download_verified_by_sha1sums(tmp_path: Path, dest: Path) -> None:
    root = tmp_path / "site"
    build_dump_site(root, PAYLOAD, date=DATE, index=INDEX, dumpstatus=False)
    with DumpServer(root) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert res.path == dest / ARTICLES
    assert res.path.read_bytes() == PAYLOAD
    assert (res.algo, res.size, res.fetched, res.skipped) == (
        "sha1",
        len(PAYLOAD),
        len(PAYLOAD),
        False,
    )
    assert sorted(p.name for p in dest.iterdir()) == [ARTICLES]  # no .part left behind
    assert _get(srv, ARTICLES_PATH) == [(None, 200)]
    assert [r.path for r in srv.log] == [
        f"/enwiki/{DATE}/dumpstatus.json",
        f"/enwiki/{DATE}/enwiki-{DATE}-sha1sums.txt",
        ARTICLES_PATH,
    ]


def test_dumpstatus_is_preferred_and_gives_the_size(site: Path, dest: Path) -> None:
    with DumpServer(site) as srv:
        (remote,) = resolve_dump("en", DATE, "pages-articles", mirror=srv.url, policy=FAST)
        paths = download_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert remote.size == len(PAYLOAD)
    assert remote.expected == {
        "sha1": hashlib.sha1(PAYLOAD).hexdigest(),
        "md5": hashlib.md5(PAYLOAD).hexdigest(),
    }
    assert remote.source.endswith("/dumpstatus.json")
    assert paths == [dest / ARTICLES] and paths[0].read_bytes() == PAYLOAD
    assert not any("sums.txt" in r.path for r in srv.log)  # dumpstatus.json was enough


def test_md5sums_is_the_last_fallback(tmp_path: Path, dest: Path) -> None:
    root = tmp_path / "site"
    build_dump_site(root, PAYLOAD, date=DATE, index=INDEX, dumpstatus=False, sha1sums=False)
    with DumpServer(root) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert res.algo == "md5" and res.path.read_bytes() == PAYLOAD


def test_latest_matches_dated_names_in_the_listing(site: Path, dest: Path) -> None:
    with DumpServer(site) as srv:
        (res,) = fetch_dump("en", "latest", "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert res.path.name == "enwiki-latest-pages-articles.xml.bz2"
    assert res.path.read_bytes() == PAYLOAD
    assert "/enwiki/latest/enwiki-latest-sha1sums.txt" in [r.path for r in srv.log]


def test_multistream_fetches_the_dump_and_its_index(site: Path, dest: Path) -> None:
    with DumpServer(site) as srv:
        paths = download_dump(
            "en", DATE, "pages-articles-multistream", dest, mirror=srv.url, policy=FAST
        )
    assert [p.name for p in paths] == [
        f"enwiki-{DATE}-pages-articles-multistream.xml.bz2",
        f"enwiki-{DATE}-pages-articles-multistream-index.txt.bz2",
    ]
    assert paths[0].read_bytes() == PAYLOAD
    assert bz2.decompress(paths[1].read_bytes()).startswith(b"597:10:AccessibleComputing\n")


def test_resumes_with_range_after_a_cut(site: Path, dest: Path) -> None:
    cut = 300_000
    with DumpServer(site, Faults(cut_at={ARTICLES_PATH: [cut]})) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert _get(srv, ARTICLES_PATH) == [(None, 200), (f"bytes={cut}-", 206)]
    assert res.path.read_bytes() == PAYLOAD
    assert res.fetched == len(PAYLOAD)


def test_several_cuts_in_a_row_at_different_offsets(site: Path, dest: Path) -> None:
    cuts = [1_000, 500_000, 1_200_000]
    with DumpServer(site, Faults(cut_at={ARTICLES_PATH: list(cuts)})) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert _get(srv, ARTICLES_PATH) == [(None, 200)] + [(f"bytes={c}-", 206) for c in cuts]
    assert res.path.read_bytes() == PAYLOAD


def test_gives_up_keeping_the_part_and_a_rerun_resumes_it(site: Path, dest: Path) -> None:
    cut = 700_000
    once = RetryPolicy(attempts=1, backoff_s=0.0, timeout_s=10.0)
    with DumpServer(site, Faults(cut_at={ARTICLES_PATH: [cut]})) as srv:
        with pytest.raises(DownloadError, match=f"resume from byte {cut:,}") as e:
            fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=once)
        assert e.value.exit_code == 1
        assert not (dest / ARTICLES).exists()
        assert (dest / (ARTICLES + ".part")).read_bytes() == PAYLOAD[:cut]
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=once)
    assert _get(srv, ARTICLES_PATH) == [(None, 200), (f"bytes={cut}-", 206)]
    assert res.path.read_bytes() == PAYLOAD
    assert res.fetched == len(PAYLOAD) - cut  # only the missing tail went over the wire
    assert not (dest / (ARTICLES + ".part")).exists()


def test_server_ignoring_range_restarts_from_zero(site: Path, dest: Path) -> None:
    cut = 400_000
    faults = Faults(cut_at={ARTICLES_PATH: [cut]}, ignore_range=True)
    with DumpServer(site, faults) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    # The client asked to resume, got 200 and the whole file, and must not append it.
    assert _get(srv, ARTICLES_PATH) == [(None, 200), (f"bytes={cut}-", 200)]
    assert res.path.read_bytes() == PAYLOAD


def test_transient_http_errors_are_retried(site: Path, dest: Path) -> None:
    with DumpServer(site, Faults(fail_with={ARTICLES_PATH: [503, 500]})) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert [s for _, s in _get(srv, ARTICLES_PATH)] == [503, 500, 200]
    assert res.path.read_bytes() == PAYLOAD


def test_wrong_published_checksum_raises_and_leaves_no_file(tmp_path: Path, dest: Path) -> None:
    root = tmp_path / "site"
    build_dump_site(root, PAYLOAD, date=DATE, index=INDEX, dumpstatus=False)
    listing = root / "enwiki" / DATE / f"enwiki-{DATE}-sha1sums.txt"
    listing.write_text(listing.read_text().replace(hashlib.sha1(PAYLOAD).hexdigest(), "0" * 40))
    with DumpServer(root) as srv, pytest.raises(ChecksumError) as e:
        fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    msg = str(e.value)
    assert e.value.exit_code == 1 and "\n" not in msg
    assert msg.startswith(f"{ARTICLES}: sha1 {hashlib.sha1(PAYLOAD).hexdigest()} does not match")
    assert "re-run" in msg
    assert list(dest.iterdir()) == []  # neither the final name nor the bad .part


def test_corrupted_transfer_is_caught_by_the_checksum(site: Path, dest: Path) -> None:
    with DumpServer(site, Faults(corrupt={ARTICLES_PATH})) as srv, pytest.raises(ChecksumError):
        fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert list(dest.iterdir()) == []


def test_url_with_sha256(site: Path, dest: Path) -> None:
    sha256 = hashlib.sha256(PAYLOAD).hexdigest()
    with DumpServer(site) as srv:
        url = srv.url + ARTICLES_PATH
        path = download_url(url, dest, {"sha256": sha256.upper()}, policy=FAST)
        assert path.read_bytes() == PAYLOAD
        with pytest.raises(ChecksumError, match="sha256"):
            fetch_url(url, dest / "other", {"sha256": "1" * 64, "md5": "2" * 32}, policy=FAST)
        with pytest.raises(UserError, match="64-digit hex sha256"):
            fetch_url(url, dest, {"sha256": "abc"}, policy=FAST)
        with pytest.raises(UserError, match="checksum"):
            fetch_url(url, dest, {}, policy=FAST)
    assert not (dest / "other" / ARTICLES).exists()


def test_404_is_a_one_line_user_error(site: Path, dest: Path) -> None:
    with DumpServer(site) as srv:
        with pytest.raises(UserError, match="no published checksum") as e:
            fetch_dump("en", "20991231", "pages-articles", dest, mirror=srv.url, policy=FAST)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)
        with pytest.raises(UserError, match="HTTP 404") as e:
            fetch_url(srv.url + "/enwiki/nope.bz2", dest, {"md5": "0" * 32}, policy=FAST)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)
        # Listed in the checksums but missing on the mirror: the file's own 404.
        (site / "enwiki" / DATE / ARTICLES).unlink()
        with pytest.raises(UserError, match=f"{ARTICLES}: HTTP 404"):
            fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
        assert len(srv.gets(ARTICLES_PATH)) == 1  # a 404 is not retried
    assert not (dest / ARTICLES).exists()


def test_already_complete_file_is_not_downloaded_again(site: Path, dest: Path) -> None:
    with DumpServer(site) as srv:
        first = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
        second = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert len(srv.gets(ARTICLES_PATH)) == 1
    assert not first[0].skipped and second[0].skipped and second[0].fetched == 0
    assert second[0].path.read_bytes() == PAYLOAD


def test_stale_final_file_is_replaced(site: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / ARTICLES).write_bytes(PAYLOAD[:-1] + b"\0")  # e.g. last month's "latest"
    with DumpServer(site) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert not res.skipped and res.path.read_bytes() == PAYLOAD


def test_complete_part_from_an_earlier_run_needs_no_request(site: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / (ARTICLES + ".part")).write_bytes(PAYLOAD)  # killed between fsync and rename
    with DumpServer(site) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert srv.gets(ARTICLES_PATH) == []
    assert res.path.read_bytes() == PAYLOAD and res.fetched == 0


def test_part_longer_than_the_published_size_starts_over(site: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / (ARTICLES + ".part")).write_bytes(PAYLOAD + b"junk")
    with DumpServer(site) as srv:
        (res,) = fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert _get(srv, ARTICLES_PATH) == [(None, 200)]
    assert res.path.read_bytes() == PAYLOAD


def test_unfinished_dump_job_is_refused(site: Path, dest: Path) -> None:
    status_file = site / "enwiki" / DATE / "dumpstatus.json"
    status = json.loads(status_file.read_text())
    status["jobs"]["articlesdump"]["status"] = "in-progress"
    status_file.write_text(json.dumps(status))
    with DumpServer(site) as srv, pytest.raises(UserError, match="not done.*earlier --date"):
        fetch_dump("en", DATE, "pages-articles", dest, mirror=srv.url, policy=FAST)
    assert srv.gets(ARTICLES_PATH) == []


def test_unwritable_destination_is_a_one_line_user_error(site: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with DumpServer(site) as srv, pytest.raises(UserError, match="check --dest") as e:
        fetch_dump("en", DATE, "pages-articles", not_a_dir, mirror=srv.url, policy=FAST)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    assert srv.gets(ARTICLES_PATH) == []
