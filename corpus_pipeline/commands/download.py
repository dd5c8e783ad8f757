"""``corpus-pipeline download``: fetch a Wikipedia dump (or any URL) and verify its checksum.

Runs in-process, not as a Beam pipeline: downloading is network-bound and per file, so Beam
workers would add nothing but overhead. See :mod:`corpus_pipeline.sources.http_fetch`
and :mod:`corpus_pipeline.sources.wikimedia_dumps`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from corpus_pipeline.errors import UserError
from corpus_pipeline.sources.http_fetch import DownloadResult, fetch_url, summarize
from corpus_pipeline.sources.http_get import RetryPolicy
from corpus_pipeline.sources.wikimedia_dumps import (
    DEFAULT_MIRROR,
    KINDS,
    fetch_dump,
)

# The multistream dump by default: its index lets extraction start one task per bz2 stream,
# and a damaged stream costs only its ~100 pages.
_DEFAULTS = {
    "lang": "en",
    "date": "latest",
    "kind": "pages-articles-multistream",
    "mirror": DEFAULT_MIRROR,
}

_EXAMPLES = """\
examples:
  corpus-pipeline download --dest data/raw
      enwiki latest pages-articles-multistream.xml.bz2 and its index, verified against the
      published checksums
  corpus-pipeline download --dest data/raw --lang de --date 20240601 --kind pages-articles
      the single-stream dump
  corpus-pipeline download --dest data/raw --mirror https://mirror.example.org/wikimedia/dumps
  corpus-pipeline download --dest data/books --url https://example.org/corpus.tar.gz --sha256 HEX

An interrupted download leaves DEST/NAME.part; running the same command again resumes it.
Exit codes: 0 ok, 1 checksum mismatch or network failure after retries, 2 usage error or HTTP 4xx.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``download`` verb to the top-level CLI."""
    p = subparsers.add_parser(
        "download",
        help="download a Wikipedia dump (or a URL), resumable, checksum-verified",
        description=(
            "Download a Wikipedia articles dump, or any --url, into --dest.\n"
            "Resumes interrupted transfers with HTTP Range, retries with exponential backoff,\n"
            "and renames each file into place only after its published checksum matches.\n"
            "Runs in-process (no Beam): downloading is network-bound and per file."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dest", required=True, type=Path, help="destination folder")
    dump = p.add_argument_group("a Wikipedia dump (default)")
    dump.add_argument("--lang", help="wiki language code (default: en)")
    dump.add_argument("--date", help="dump date YYYYMMDD or 'latest' (default: latest)")
    dump.add_argument(
        "--kind",
        choices=KINDS,
        help="pages-articles-multistream (+ its index; default) or pages-articles",
    )
    dump.add_argument("--mirror", help=f"base URL laid out like {DEFAULT_MIRROR} (default)")
    url = p.add_argument_group("any URL (instead of a dump)")
    url.add_argument("--url", help="http(s) URL of one file; needs an expected checksum")
    url.add_argument("--sha256", help="expected SHA-256 of --url (hex)")
    url.add_argument("--sha1", help="expected SHA-1 of --url (hex)")
    url.add_argument("--md5", help="expected MD5 of --url (hex)")
    net = p.add_argument_group("network")
    net.add_argument(
        "--retries", type=int, default=5, help="retries per file after the first try (default: 5)"
    )
    net.add_argument(
        "--backoff",
        type=float,
        default=2.0,
        help="seconds before the first retry, doubling each time (default: 2)",
    )
    net.add_argument(
        "--timeout", type=float, default=60.0, help="socket timeout in seconds (default: 60)"
    )
    net.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Run the verb; prints a one-line summary and returns the exit code."""
    if beam_args:
        raise UserError(
            f"download does not run a Beam pipeline; unknown option {beam_args[0]!r} "
            "(see corpus-pipeline download --help)"
        )
    policy = RetryPolicy(attempts=args.retries + 1, backoff_s=args.backoff, timeout_s=args.timeout)
    progress = not args.no_progress
    expected = {a: getattr(args, a) for a in ("sha256", "sha1", "md5") if getattr(args, a)}
    t0 = time.monotonic()
    results: list[DownloadResult]
    if args.url:
        clash = [f"--{k}" for k in _DEFAULTS if getattr(args, k) is not None]
        if clash:
            raise UserError(f"--url downloads one file; drop {clash[0]} (it is for dumps)")
        results = [fetch_url(args.url, args.dest, expected, policy=policy, progress=progress)]
    else:
        if expected:
            raise UserError(
                "--sha256/--sha1/--md5 go with --url; dumps use their published checksums"
            )
        opts = {k: getattr(args, k) or v for k, v in _DEFAULTS.items()}
        results = fetch_dump(
            opts["lang"],
            opts["date"],
            opts["kind"],
            args.dest,
            mirror=opts["mirror"],
            policy=policy,
            progress=progress,
        )
    for r in results:
        print(r.path)
    print(summarize(results, time.monotonic() - t0))
    return 0
