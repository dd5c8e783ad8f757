"""``corpus-pipeline download`` end to end: real CLI, real local HTTP server, real dump bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_pipeline import cli
from corpus_pipeline.resources import SAMPLE_WIKI_DUMP
from tests.support.http_server import DumpServer, Faults, build_dump_site

PAYLOAD = SAMPLE_WIKI_DUMP.read_bytes()
DATE = "20240101"
ARTICLES = f"enwiki-{DATE}-pages-articles.xml.bz2"
ARTICLES_PATH = f"/enwiki/{DATE}/{ARTICLES}"
MULTI = f"enwiki-{DATE}-pages-articles-multistream.xml.bz2"
MULTI_INDEX = f"enwiki-{DATE}-pages-articles-multistream-index.txt.bz2"
REPO = Path(__file__).resolve().parents[2]
FAST = ["--backoff", "0", "--timeout", "10", "--retries", "3"]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    build_dump_site(root, PAYLOAD, date=DATE, index=b"index")
    return root


def _cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run(
        [sys.executable, "-m", "corpus_pipeline", "download", *map(str, argv)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_download_fetches_the_multistream_dump_and_its_index_by_default(
    site: Path, tmp_path: Path
) -> None:
    """The multistream dump is the default: a damaged stream costs ~100 pages, and extraction
    runs one task per stream (the single-stream dump was the default before)."""
    dest = tmp_path / "raw"
    with DumpServer(site) as srv:
        proc = _cli("--dest", dest, "--mirror", srv.url, "--date", DATE, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted([MULTI, MULTI_INDEX])
    assert (dest / MULTI).read_bytes() == PAYLOAD


def test_download_dump_via_the_console_entry_point(site: Path, tmp_path: Path) -> None:
    dest = tmp_path / "raw"
    with DumpServer(site, Faults(cut_at={ARTICLES_PATH: [123_456]})) as srv:
        proc = _cli(
            "--dest", dest, "--mirror", srv.url, "--date", DATE, "--kind", "pages-articles", *FAST
        )
    assert proc.returncode == 0, proc.stderr
    assert (dest / ARTICLES).read_bytes() == PAYLOAD
    assert [r.range for r in srv.gets(ARTICLES_PATH)] == [None, "bytes=123456-"]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == str(dest / ARTICLES)
    assert lines[-1].startswith(
        f"download: 1 file, {len(PAYLOAD):,} bytes ({len(PAYLOAD):,} fetched) in "
    )
    assert lines[-1].endswith("; verified sha1")


def test_checksum_mismatch_exits_1_with_one_line_and_no_file(site: Path, tmp_path: Path) -> None:
    status = site / "enwiki" / DATE / "dumpstatus.json"
    status.write_text(status.read_text().replace(hashlib.sha1(PAYLOAD).hexdigest(), "f" * 40))
    dest = tmp_path / "raw"
    with DumpServer(site) as srv:
        proc = _cli(
            "--dest", dest, "--mirror", srv.url, "--date", DATE, "--kind", "pages-articles", *FAST
        )
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith(f"error: {ARTICLES}: sha1 ") and "re-run" in err[0]
    assert "Traceback" not in proc.stderr
    assert list(dest.iterdir()) == []


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_url_with_sha256_in_process(
    site: Path, tmp_path: Path, no_proxy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "raw"
    sha256 = hashlib.sha256(PAYLOAD).hexdigest()
    with DumpServer(site) as srv:
        rc = cli.main(
            [
                "download",
                "--dest",
                str(dest),
                "--url",
                srv.url + ARTICLES_PATH,
                "--sha256",
                sha256,
                *FAST,
            ]
        )
        out = capsys.readouterr().out
        assert rc == 0
        assert (dest / ARTICLES).read_bytes() == PAYLOAD
        assert out.strip().splitlines()[-1].endswith("verified sha256")
        # A second run finds the verified file and does not fetch it again.
        rc = cli.main(
            [
                "download",
                "--dest",
                str(dest),
                "--url",
                srv.url + ARTICLES_PATH,
                "--sha256",
                sha256,
                *FAST,
            ]
        )
        assert rc == 0
        assert len(srv.gets(ARTICLES_PATH)) == 1
        assert "(1 already complete)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--mirror", "MIRROR", "--date", "20991231"],
            "no published checksum for enwiki-20991231-",
        ),
        (["--date", "2024-01-01"], "YYYYMMDD"),
        (["--lang", "EN"], "language code"),
        (["--mirror", "file:///tmp"], "http:// or https://"),
        (["--sha1", "0" * 40], "go with --url"),
        (["--destination", "x"], "unknown option '--destination'"),
        (["--url", "ftp://example.org/x.bz2", "--md5", "0" * 32], "http:// or https://"),
        (["--url", "MIRROR/x.bz2", "--md5", "0" * 32, "--lang", "de"], "drop --lang"),
        (["--url", "MIRROR/x.bz2"], "give its expected checksum"),
        (["--url", "MIRROR/x.bz2", "--sha1", "xyz"], "40-digit hex sha1"),
        (["--url", "MIRROR/", "--md5", "0" * 32], "does not end in a file name"),
        (["--retries", "-1"], "at least 1 attempt"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    site: Path,
    tmp_path: Path,
    no_proxy: None,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    needle: str,
) -> None:
    with DumpServer(site) as srv:
        args = [a.replace("MIRROR", srv.url) for a in argv]
        rc = cli.main(["download", "--dest", str(tmp_path / "raw"), *FAST, *args])
        assert [r for r in srv.log if r.path.endswith(".bz2")] == []  # refused before fetching
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_url_404_exits_2(
    site: Path, tmp_path: Path, no_proxy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with DumpServer(site) as srv:
        url = srv.url + "/enwiki/missing.bz2"
        rc = cli.main(["download", "--dest", str(tmp_path), "--url", url, "--md5", "0" * 32, *FAST])
        assert len(srv.gets("/enwiki/missing.bz2")) == 1  # a 404 is final: no retries
    assert rc == 2
    assert capsys.readouterr().err == f"error: {url}: HTTP 404 Not Found; check the URL\n"
