"""Download a file over HTTP(S) with checksum verification, resume and retries.

Downloading is network-bound and per file (one or two huge files per dump), so this runs
in-process rather than as a Beam pipeline: a pipeline would add workers and serialization
without adding bandwidth. The Beam pipelines start from the files this module leaves behind.
The Wikimedia dump layout (names, checksum listings, URLs) is in
:mod:`~corpus_pipeline.sources.wikimedia_dumps`.

What it guarantees:

* A file at its final name is complete and matches its published checksum. Bytes are written
  to ``<name>.part`` in the destination folder, fsynced, and renamed only after the checksum
  matches; a mismatch removes the ``.part`` and raises :class:`ChecksumError` (exit 1).
* An interrupted transfer resumes with an HTTP ``Range`` request, both on retry within one
  run (exponential backoff) and on a later re-run (the ``.part`` file stays). A server that
  ignores ``Range`` (``200`` instead of ``206``) is handled by restarting from byte 0.
* A file already at its final name with a matching checksum is not downloaded again.

The requests, and the retries with backoff, are :mod:`~corpus_pipeline.sources.http_get`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

from tqdm import tqdm

from corpus_pipeline.errors import ChecksumError, UserError
from corpus_pipeline.sources.http_get import (
    RetryPolicy,
    Transient,
    http_error,
    is_transient_status,
    reason,
    request,
    retrying,
)

log = logging.getLogger(__name__)

CHECKSUM_ALGOS = ("sha256", "sha1", "md5")
HEX_LEN = {"sha256": 64, "sha1": 40, "md5": 32}
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: where from, what to call it, and what it must hash to.

    Attributes:
        url: Absolute http(s) URL.
        name: File name in the destination folder.
        expected: Known checksums, ``{"sha1": hex, ...}``; at least one.
        size: Size in bytes when published (lets us skip hashing a wrong-size file).
        source: Where the checksum came from, for error messages.
        hint: What to tell the user when the server says 404/410 or another 4xx.
    """

    url: str
    name: str
    expected: Mapping[str, str]
    size: int | None = None
    source: str = "the command line"
    hint: str = "check the URL"

    def checksum(self) -> tuple[str, str]:
        """The (algorithm, lower-case hex digest) that will be verified: the strongest known."""
        for algo in CHECKSUM_ALGOS:
            if algo in self.expected:
                return algo, self.expected[algo].lower()
        raise UserError(f"no checksum to verify {self.name} against; pass --sha256/--sha1/--md5")


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one file.

    Attributes:
        path: The verified file at its final name.
        size: Its size in bytes.
        fetched: Bytes transferred over the network in this run (0 when already complete).
        algo: The checksum algorithm verified.
        skipped: True when the file was already complete and nothing was downloaded.
    """

    path: Path
    size: int
    fetched: int
    algo: str
    skipped: bool = False


@dataclass
class _PartState:
    """A running digest over exactly the bytes in the ``.part`` file.

    Hashing while writing avoids re-reading a multi-GB file at the end; only a ``.part``
    left by an earlier run is read once to catch the digest up.
    """

    algo: str
    hasher: Any = field(init=False)
    n: int = field(init=False, default=0)
    # Bytes that came over the network in this run, over all attempts (for the summary).
    received: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hasher = hashlib.new(self.algo)
        self.n = 0

    def sync(self, part: Path, size: int) -> None:
        """Make the digest cover ``part``'s first ``size`` bytes (re-hash when out of step)."""
        if self.n == size:
            return
        self.reset()
        with open(part, "rb") as f:
            while self.n < size:
                block = f.read(min(1 << 20, size - self.n))
                if not block:
                    break
                self.update(block)

    def update(self, block: bytes, received: bool = False) -> None:
        self.hasher.update(block)
        self.n += len(block)
        if received:
            self.received += len(block)

    def hexdigest(self) -> str:
        return str(self.hasher.hexdigest())


def validate_hex(algo: str, value: str) -> str:
    """Return ``value`` lower-cased if it is a well-formed ``algo`` hex digest."""
    v = value.strip().lower()
    if len(v) != HEX_LEN[algo] or not all(c in "0123456789abcdef" for c in v):
        raise UserError(f"--{algo} {value!r} is not a {HEX_LEN[algo]}-digit hex {algo} digest")
    return v


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    """``bytes 100-199/200`` -> 100; ``None`` when absent or malformed."""
    m = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not every platform/filesystem lets you open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _attempt(
    remote: RemoteFile, part: Path, state: _PartState, policy: RetryPolicy, bar: tqdm
) -> int:
    """One try at completing ``part``; returns bytes received. Raises :class:`Transient`."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset > remote.size:
        # Longer than the published size: not a prefix of this file. Start over.
        log.warning(
            "%s is longer than %s (%d bytes); starting over", part, remote.name, remote.size
        )
        part.unlink()
        offset = 0
    state.sync(part, offset)
    bar.reset(total=remote.size)
    bar.update(offset)
    if remote.size is not None and offset == remote.size:
        return 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        resp = urllib.request.urlopen(request(remote.url, headers), timeout=policy.timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # Nothing left after `offset`: the .part is complete (or too long); the checksum decides.
            return 0
        if is_transient_status(e.code):
            raise Transient(f"HTTP {e.code} {e.reason}") from None
        raise http_error(remote.url, e, remote.hint) from None
    except (urllib.error.URLError, OSError, HTTPException) as e:
        raise Transient(reason(e)) from None

    received = 0
    with resp:
        status = resp.status
        if offset and status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                # A broken range reply: drop the .part so the next try asks for the whole file.
                part.unlink()
                state.reset()
                raise Transient(
                    f"asked for bytes {offset}- but got Content-Range {resp.headers.get('Content-Range')!r}"
                )
        elif status != 206 and offset:
            # The server ignored Range and sends the whole file: restart from byte 0.
            log.info("%s: server ignored the Range request; restarting from byte 0", remote.url)
            offset = 0
            state.reset()
            bar.reset(total=remote.size)
        length_h = resp.headers.get("Content-Length")
        length = int(length_h) if length_h and length_h.isdigit() else None
        if remote.size is None and length is not None:
            bar.reset(total=offset + length)
            bar.update(offset)
        mode = "ab" if offset else "wb"
        # Write errors (disk full, permissions) propagate as OSError: retrying cannot fix them.
        with open(part, mode) as f:
            f.truncate(offset)
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, HTTPException) as e:
                    raise Transient(f"{reason(e)} after {offset + received} bytes") from None
                if not block:
                    break
                f.write(block)
                state.update(block, received=True)
                received += len(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    # http.client returns a short body silently when the peer closes early; check it here.
    if length is not None and received < length:
        raise Transient(f"connection closed after {offset + received} of {offset + length} bytes")
    return received


def fetch(
    remote: RemoteFile,
    dest: Path,
    *,
    policy: RetryPolicy | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Download one file into ``dest``, resuming its ``.part`` and verifying the checksum.

    Args:
        remote: What to fetch and what it must hash to.
        dest: Destination folder (created if missing).
        policy: Retries, backoff and timeout.
        progress: Show a tqdm byte progress bar on stderr (only when it is a terminal).

    Returns:
        The :class:`DownloadResult`; the file is at ``dest / remote.name``.

    Raises:
        ChecksumError: The download does not match (the bad ``.part`` is removed; exit 1).
        DownloadError: Network failures outlasted the retries (the ``.part`` stays; exit 1).
        UserError: HTTP 4xx such as 404, or the destination is not writable (exit 2).
    """
    policy = policy or RetryPolicy()
    try:
        return _fetch(remote, Path(dest), policy, progress)
    except OSError as e:
        # Network errors were turned into retries or DownloadError below; this is local IO.
        where = e.filename or dest
        raise UserError(
            f"{where}: {e.strerror or e}; check --dest (permissions, free space) and re-run"
        ) from None


def _fetch(remote: RemoteFile, dest: Path, policy: RetryPolicy, progress: bool) -> DownloadResult:
    algo, want = remote.checksum()
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / remote.name
    part = dest / (remote.name + ".part")

    if final.is_file():
        size = final.stat().st_size
        if (remote.size is None or size == remote.size) and file_digest(final, algo) == want:
            log.info("%s is already complete (%s matches)", final, algo)
            return DownloadResult(final, size, 0, algo, skipped=True)
        log.warning("%s exists but does not match its %s; downloading it again", final, algo)

    if remote.size is not None:
        have = part.stat().st_size if part.exists() else 0
        free = shutil.disk_usage(dest).free
        if remote.size - have > free:
            raise UserError(
                f"{dest}: {free:,} bytes free, {remote.name} needs {remote.size - have:,} more; "
                "free some space or pick another --dest"
            )

    state = _PartState(algo)

    def once() -> None:
        _attempt(remote, part, state, policy, bar)

    def resume_note() -> str:
        have = part.stat().st_size if part.exists() else 0
        return f"; re-run the same command to resume from byte {have:,}" if have else ""

    with tqdm(
        total=remote.size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=remote.name,
        disable=None if progress else True,  # None: only when stderr is a terminal
        leave=True,
    ) as bar:
        retrying(remote.url, policy, once, resume_note)

    got = state.hexdigest()
    size = part.stat().st_size
    if got != want or (remote.size is not None and size != remote.size):
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{remote.name}: {algo} {got} does not match {want} from {remote.source} "
            f"({size:,} bytes); removed the bad download, re-run to fetch it again "
            "or try another --mirror"
        )
    os.replace(part, final)
    _fsync_dir(dest)
    return DownloadResult(final, size, state.received, algo)


def validate_http_url(url: str, flag: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"{flag} {url!r} must be an http:// or https:// URL")
    return url


def url_file_name(url: str) -> str:
    """The last path segment of ``url``, percent-decoded, or a UserError if there is none."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise UserError(f"--url {url!r} does not end in a file name")
    return name


def fetch_url(
    url: str,
    dest: Path,
    expected: Mapping[str, str],
    *,
    policy: RetryPolicy | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Download ``url`` into ``dest`` and verify it (see :func:`download_url`)."""
    validate_http_url(url, "--url")
    if not expected:
        raise UserError(f"--url {url}: give its expected checksum with --sha256, --sha1 or --md5")
    sums = {a: validate_hex(a, v) for a, v in expected.items() if a in HEX_LEN}
    unknown = sorted(set(expected) - set(HEX_LEN))
    if unknown:
        raise UserError(f"unknown checksum type {unknown[0]!r}; use sha256, sha1 or md5")
    remote = RemoteFile(url=url, name=url_file_name(url), expected=sums)
    return fetch(remote, Path(dest), policy=policy, progress=progress)


def download_url(
    url: str,
    dest: Path | str,
    expected: Mapping[str, str],
    *,
    policy: RetryPolicy | None = None,
    progress: bool = True,
) -> Path:
    """Download any http(s) URL into ``dest`` and verify it against ``expected``.

    Args:
        url: The file's URL; its last path segment names the local file.
        dest: Destination folder.
        expected: ``{"sha256" | "sha1" | "md5": hex}``; the strongest given is verified.
        policy: Retries, backoff and timeout.
        progress: Show a byte progress bar on a terminal.

    Returns:
        The verified file's path.
    """
    return fetch_url(url, Path(dest), expected, policy=policy, progress=progress).path


def summarize(results: Iterable[DownloadResult], seconds: float) -> str:
    """One line for the end of a run: files, bytes, seconds, checksum types verified."""
    rs = list(results)
    total = sum(r.size for r in rs)
    fetched = sum(r.fetched for r in rs)
    skipped = sum(r.skipped for r in rs)
    algos = ",".join(sorted({r.algo for r in rs})) or "none"
    done = f" ({skipped} already complete)" if skipped else ""
    return (
        f"download: {len(rs)} file{'s' if len(rs) != 1 else ''}{done}, {total:,} bytes "
        f"({fetched:,} fetched) in {seconds:.1f} s; verified {algos}"
    )


__all__ = [
    "CHECKSUM_ALGOS",
    "DownloadResult",
    "RemoteFile",
    "download_url",
    "fetch",
    "fetch_url",
    "file_digest",
    "summarize",
    "url_file_name",
]
