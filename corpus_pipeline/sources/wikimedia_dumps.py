"""Wikimedia dump layout: file names, checksum listings, URLs; fetches a dump's files.

Dump layout (https://dumps.wikimedia.org, and the mirrors, which copy it)::

    {mirror}/{lang}wiki/{date}/{lang}wiki-{date}-pages-articles.xml.bz2
    {mirror}/{lang}wiki/{date}/{lang}wiki-{date}-pages-articles-multistream.xml.bz2
    {mirror}/{lang}wiki/{date}/{lang}wiki-{date}-pages-articles-multistream-index.txt.bz2
    {mirror}/{lang}wiki/{date}/dumpstatus.json           jobs -> JOB -> files -> NAME -> {size, sha1, md5, url}
    {mirror}/{lang}wiki/{date}/{lang}wiki-{date}-sha1sums.txt   lines "<hex>  <name>"
    {mirror}/{lang}wiki/{date}/{lang}wiki-{date}-md5sums.txt

``date`` is ``YYYYMMDD`` or ``latest``. Checksums come from ``dumpstatus.json`` when it is
published, else from the sha1sums file, else from the md5sums file. Under ``latest/`` the
files are named ``{lang}wiki-latest-...`` while the checksum files (links to a dated run)
name them ``{lang}wiki-YYYYMMDD-...``; names are compared with the date part normalised.
The transfer itself (resume, retries, verification) is :mod:`~corpus_pipeline.sources.http_fetch`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus_pipeline.errors import UserError
from corpus_pipeline.sources.http_fetch import (
    CHECKSUM_ALGOS,
    HEX_LEN,
    DownloadResult,
    RemoteFile,
    fetch,
    validate_http_url,
)
from corpus_pipeline.sources.http_get import RetryPolicy, get_small

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "https://dumps.wikimedia.org"
KINDS = ("pages-articles", "pages-articles-multistream")
_LANG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DATE_RE = re.compile(r"^(latest|\d{8})$")


def validate_lang(lang: str) -> str:
    """Return ``lang`` if it looks like a Wikipedia language code (``en``, ``simple``, ``zh_yue``)."""
    if not _LANG_RE.match(lang):
        raise UserError(
            f"--lang {lang!r} is not a Wikipedia language code (like en, de, simple, zh_yue)"
        )
    return lang


def validate_date(date: str) -> str:
    """Return ``date`` if it is ``latest`` or ``YYYYMMDD``."""
    if not _DATE_RE.match(date):
        raise UserError(f"--date {date!r} must be 'latest' or YYYYMMDD (e.g. 20240601)")
    return date


def dump_file_names(lang: str, date: str, kind: str) -> list[str]:
    """The file names of one dump ``kind``; multistream comes with its offset index."""
    prefix = f"{lang}wiki-{date}-"
    if kind == "pages-articles":
        return [prefix + "pages-articles.xml.bz2"]
    if kind == "pages-articles-multistream":
        return [
            prefix + "pages-articles-multistream.xml.bz2",
            prefix + "pages-articles-multistream-index.txt.bz2",
        ]
    raise UserError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")


def dump_dir_url(mirror: str, lang: str, date: str) -> str:
    """The folder URL of one dump run, with a trailing slash."""
    return f"{mirror.rstrip('/')}/{lang}wiki/{date}/"


def canonical_name(name: str, lang: str) -> str:
    """``enwiki-20240601-x`` -> ``enwiki-latest-x`` so latest/ names match dated listings."""
    return re.sub(rf"^{re.escape(lang)}wiki-\d{{8}}-", f"{lang}wiki-latest-", name)


def parse_checksum_listing(text: str, algo: str) -> dict[str, dict[str, str]]:
    """Parse a ``sha1sums.txt``/``md5sums.txt`` listing (``<hex>  <name>`` lines).

    Lines in ``sha1sum``'s binary form (``<hex> *<name>``) are accepted; malformed lines are
    skipped, since a listing is only trusted for the names it gives well-formed digests to.

    Returns:
        ``{name: {algo: hex}}``.
    """
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        digest, name = parts[0].lower(), parts[1].strip().lstrip("*")
        if len(digest) == HEX_LEN[algo] and all(c in "0123456789abcdef" for c in digest):
            out[name] = {algo: digest}
    return out


@dataclass(frozen=True)
class _Published:
    """Checksums (and size, job status) published for one file name."""

    checksums: dict[str, str]
    size: int | None = None
    job: str | None = None
    status: str | None = None


def parse_dumpstatus(obj: Any) -> dict[str, _Published]:
    """Parse ``dumpstatus.json``: ``{"jobs": {JOB: {"status", "files": {NAME: {...}}}}}``.

    Every job is searched, because which job holds a file varies by wiki: small wikis list
    ``pages-articles.xml.bz2`` under ``articlesdump``, big ones (split into parts) under
    ``articlesdumprecombine``.
    """
    out: dict[str, _Published] = {}
    jobs = obj.get("jobs") if isinstance(obj, dict) else None
    if not isinstance(jobs, dict):
        raise ValueError("no 'jobs' object")
    for job, info in jobs.items():
        if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
            continue
        for name, meta in info["files"].items():
            if not isinstance(meta, dict):
                continue
            sums = {
                a: str(meta[a]).lower()
                for a in CHECKSUM_ALGOS
                if isinstance(meta.get(a), str) and len(meta[a]) == HEX_LEN[a]
            }
            size = meta.get("size")
            out[name] = _Published(
                checksums=sums,
                size=size if isinstance(size, int) else None,
                job=job,
                status=str(info.get("status", "")),
            )
    return out


def resolve_dump(
    lang: str,
    date: str,
    kind: str,
    *,
    mirror: str = DEFAULT_MIRROR,
    policy: RetryPolicy | None = None,
) -> list[RemoteFile]:
    """Find the URLs and published checksums of one dump's files.

    Tries ``dumpstatus.json``, then ``{lang}wiki-{date}-sha1sums.txt``, then ``-md5sums.txt``,
    stopping as soon as every file has a checksum.

    Raises:
        UserError: Bad arguments, an unfinished dump, or no checksum published for a file.
    """
    policy = policy or RetryPolicy()
    validate_lang(lang)
    validate_date(date)
    validate_http_url(mirror, "--mirror")
    names = dump_file_names(lang, date, kind)
    base = dump_dir_url(mirror, lang, date)
    found: dict[str, tuple[_Published, str]] = {}
    sources = [
        ("dumpstatus.json", None),
        (f"{lang}wiki-{date}-sha1sums.txt", "sha1"),
        (f"{lang}wiki-{date}-md5sums.txt", "md5"),
    ]
    for listing, algo in sources:
        if all(n in found for n in names):
            break
        url = base + listing
        body = get_small(url, policy)
        if body is None:
            log.info("%s: not published", url)
            continue
        table: dict[str, _Published]
        try:
            if algo is None:
                table = parse_dumpstatus(json.loads(body.decode("utf-8")))
            else:
                rows = parse_checksum_listing(body.decode("utf-8", "replace"), algo)
                table = {k: _Published(checksums=v) for k, v in rows.items()}
        except (ValueError, UnicodeDecodeError) as e:
            log.warning("%s: unreadable (%s); trying the next checksum source", url, e)
            continue
        by_name = (
            {canonical_name(k, lang): v for k, v in table.items()} if date == "latest" else table
        )
        for n in names:
            pub = by_name.get(canonical_name(n, lang) if date == "latest" else n)
            if n in found or pub is None or not pub.checksums:
                continue
            if pub.status not in (None, "done"):
                raise UserError(
                    f"{n}: dump job {pub.job} is {pub.status!r}, not done, at {base}; "
                    "pick an earlier --date"
                )
            found[n] = (pub, url)
    missing = [n for n in names if n not in found]
    if missing:
        raise UserError(
            f"no published checksum for {missing[0]} at {base} (looked in dumpstatus.json, "
            f"sha1sums, md5sums); check --lang/--date/--kind against {base.rsplit('/', 2)[0]}/"
        )
    return [
        RemoteFile(
            url=base + n,
            name=n,
            expected=pub.checksums,
            size=pub.size,
            source=src,
            hint=f"listed in {src} but not served; try again later or another --mirror",
        )
        for n, (pub, src) in found.items()
    ]


def fetch_dump(
    lang: str,
    date: str,
    kind: str,
    dest: Path,
    *,
    mirror: str = DEFAULT_MIRROR,
    policy: RetryPolicy | None = None,
    progress: bool = True,
) -> list[DownloadResult]:
    """Download and verify one Wikipedia dump (see :func:`download_dump`); per-file results."""
    remotes = resolve_dump(lang, date, kind, mirror=mirror, policy=policy)
    return [fetch(r, Path(dest), policy=policy, progress=progress) for r in remotes]


def download_dump(
    lang: str = "en",
    date: str = "latest",
    kind: str = "pages-articles",
    dest: Path | str = ".",
    *,
    mirror: str = DEFAULT_MIRROR,
    policy: RetryPolicy | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download and verify a Wikipedia articles dump.

    Args:
        lang: Wikipedia language code (``en``, ``de``, ``simple``).
        date: ``latest`` or ``YYYYMMDD``.
        kind: ``pages-articles`` or ``pages-articles-multistream`` (also fetches the index).
        dest: Destination folder.
        mirror: Base URL laid out like https://dumps.wikimedia.org.
        policy: Retries, backoff and timeout.
        progress: Show byte progress bars on a terminal.

    Returns:
        Paths of the verified files, dump first, then its index (multistream).
    """
    return [
        r.path
        for r in fetch_dump(
            lang, date, kind, Path(dest), mirror=mirror, policy=policy, progress=progress
        )
    ]


__all__ = [
    "DEFAULT_MIRROR",
    "KINDS",
    "canonical_name",
    "download_dump",
    "dump_dir_url",
    "dump_file_names",
    "fetch_dump",
    "parse_checksum_listing",
    "parse_dumpstatus",
    "resolve_dump",
]
