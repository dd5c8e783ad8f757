"""HTTP requests for the downloads: what we send, which failures are worth a retry, and the retries.

Only the standard library speaks HTTP here (``urllib.request``), so there is nothing to
configure: proxies come from the usual ``https_proxy`` environment variables. A failure that
a retry may cure (connection reset or timeout, short body, HTTP 5xx/408/425/429) is a
:class:`Transient`; :func:`retrying` retries it with exponential backoff
(:class:`RetryPolicy`) and turns the last one into a :class:`DownloadError`. The resumable,
verified transfer of a whole file built on this is :mod:`~corpus_pipeline.sources.http_fetch`.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import TypeVar

from corpus_pipeline import __version__
from corpus_pipeline.errors import UserError

log = logging.getLogger(__name__)

# Wikimedia asks clients to identify themselves (https://meta.wikimedia.org/wiki/User-Agent_policy).
USER_AGENT = f"corpus-pipeline/{__version__} (BERT pretraining data; Python urllib)"
# The checksum-file listings are small; anything bigger is not a checksum listing.
_MAX_LISTING_BYTES = 16 << 20


class DownloadError(UserError):
    """A transfer failed for good (network errors outlasted the retries); exit code 1.

    The ``.part`` file stays, so re-running the same command resumes where it stopped.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


class Transient(Exception):
    """A failure worth retrying: connection reset or timeout, short body, HTTP 5xx/408/429."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on a URL.

    Args:
        attempts: Total tries per file (the first one included); each resumes the ``.part``.
        backoff_s: Sleep before the second try; doubles for each further try.
        max_backoff_s: Upper bound of a single sleep.
        timeout_s: Socket timeout for connecting and for each read.
    """

    attempts: int = 6
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UserError(f"--retries must allow at least 1 attempt, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.timeout_s <= 0:
            raise UserError("--backoff must be >= 0 and --timeout > 0")

    def delay(self, failures: int) -> float:
        """Seconds to sleep after the ``failures``-th failed attempt (1-based): exponential."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))


def request(url: str, headers: Mapping[str, str] | None = None) -> urllib.request.Request:
    """A GET of ``url`` as we send it: our User-Agent, no compression, extra ``headers``."""
    # identity: a compressed transfer would make byte ranges refer to the wrong bytes.
    h = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
    return urllib.request.Request(url, headers=h)


def is_transient_status(code: int) -> bool:
    """An HTTP status a later try may not get (server trouble, rate limits, timeouts)."""
    return code in (408, 425, 429) or code >= 500


def http_error(url: str, e: urllib.error.HTTPError, hint: str) -> UserError:
    """The one line for an HTTP error that retrying cannot fix, with what to do (``hint``)."""
    return UserError(f"{url}: HTTP {e.code} {e.reason}; {hint}")


_T = TypeVar("_T")


def retrying(
    what: str,
    policy: RetryPolicy,
    fn: Callable[[], _T],
    resume_note: Callable[[], str] | None = None,
) -> _T:
    """Call ``fn()`` until it returns, retrying :class:`Transient` with exponential backoff."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Transient as e:
            if attempt == policy.attempts:
                note = resume_note() if resume_note else ""
                raise DownloadError(
                    f"{what}: gave up after {policy.attempts} attempts ({e}){note}"
                ) from None
            delay = policy.delay(attempt)
            log.warning(
                "%s: %s; retry %d/%d in %.1fs", what, e, attempt, policy.attempts - 1, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def get_small(url: str, policy: RetryPolicy) -> bytes | None:
    """GET a small listing into memory; ``None`` on 404/410 (not published)."""

    def once() -> bytes | None:
        try:
            with urllib.request.urlopen(request(url), timeout=policy.timeout_s) as resp:
                body = resp.read(_MAX_LISTING_BYTES + 1)
                length = resp.headers.get("Content-Length")
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                return None
            if is_transient_status(e.code):
                raise Transient(f"HTTP {e.code} {e.reason}") from None
            raise http_error(url, e, "check --mirror") from None
        except (urllib.error.URLError, OSError, HTTPException) as e:
            raise Transient(reason(e)) from None
        if len(body) > _MAX_LISTING_BYTES:
            raise UserError(
                f"{url}: larger than {_MAX_LISTING_BYTES} bytes, not a checksum listing"
            )
        if length is not None and length.isdigit() and len(body) < int(length):
            raise Transient(f"connection closed after {len(body)} of {length} bytes")
        return bytes(body)

    return retrying(url, policy, once)


def reason(e: BaseException) -> str:
    """A network error in a few words (the cause of a URLError, else its type and text)."""
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return str(e.reason)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


__all__ = [
    "USER_AGENT",
    "DownloadError",
    "RetryPolicy",
    "Transient",
    "get_small",
    "http_error",
    "is_transient_status",
    "reason",
    "request",
    "retrying",
]
