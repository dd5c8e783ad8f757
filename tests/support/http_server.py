"""A real HTTP server on 127.0.0.1 for download tests, with the faults downloads must survive.

It serves files from a folder (laid out like https://dumps.wikimedia.org), honours
``Range: bytes=N-`` with ``206`` + ``Content-Range``, and on request misbehaves:

* ``cut_at[path] = [o1, o2, ...]``: the k-th GET of ``path`` sends the body only up to file
  offset ``ok`` (full ``Content-Length`` announced), then closes the connection;
* ``ignore_range = True``: answers every GET with ``200`` and the whole file;
* ``corrupt = {path}``: flips one byte in the middle of that file's body;
* ``fail_with[path] = [503, ...]``: the k-th GET of ``path`` gets that status instead.

Every request is logged (method, path, Range header, status) so tests can assert what the
client really asked for.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Logged:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int


@dataclass
class Faults:
    """What the server should get wrong (see the module docstring)."""

    cut_at: dict[str, list[int]] = field(default_factory=dict)
    ignore_range: bool = False
    corrupt: set[str] = field(default_factory=set)
    fail_with: dict[str, list[int]] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base-class name
        pass  # keep test output clean; requests are recorded in server.log instead

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _record(self, status: int) -> None:
        with self.server.lock:
            self.server.log.append(
                Logged(self.command, self.path, self.headers.get("Range"), status)
            )

    def _status_only(self, status: int, extra: dict[str, str] | None = None) -> None:
        self._record(status)
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, body: bool) -> None:
        faults = self.server.faults
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            queue = faults.fail_with.get(path)
            fail = queue.pop(0) if queue else None
            cuts = faults.cut_at.get(path)
            cut = cuts.pop(0) if (cuts and body and fail is None) else None
        if fail is not None:
            self._status_only(fail)
            return
        file = (self.server.root / path.lstrip("/")).resolve()
        if self.server.root not in file.parents or not file.is_file():
            self._status_only(404)
            return
        data = file.read_bytes()
        if path in faults.corrupt:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
        size = len(data)
        start = 0
        status = 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if m and not faults.ignore_range:
            start = int(m.group(1))
            if start >= size:
                self._status_only(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        end = size  # open-ended ranges only: that is all a resuming client sends
        if m and m.group(2) and status == 206:
            end = min(size, int(m.group(2)) + 1)
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "none" if faults.ignore_range else "bytes")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if not body:
            return
        stop = end if cut is None else max(start, min(end, cut))
        self.wfile.write(data[start:stop])
        self.wfile.flush()
        if cut is not None:
            # Announced more than we sent: closing now is a connection cut mid-file.
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, faults: Faults) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.faults = faults
        self.lock = threading.Lock()
        self.log: list[Logged] = []


class DumpServer:
    """Context manager running :class:`_Server` in a thread on a free port.

    Example:
        >>> with DumpServer(tmp_path) as srv:  # doctest: +SKIP
        ...     download_dump("en", "latest", "pages-articles", dest, mirror=srv.url)
    """

    def __init__(self, root: Path, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._server = _Server(root, self.faults)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def log(self) -> list[Logged]:
        """A snapshot of the requests served so far."""
        with self._server.lock:
            return list(self._server.log)

    def gets(self, path: str) -> list[Logged]:
        """The GET requests for one path."""
        return [r for r in self.log if r.method == "GET" and r.path == path]

    def __enter__(self) -> DumpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def build_dump_site(
    root: Path,
    payload: bytes,
    *,
    lang: str = "en",
    date: str = "20240101",
    index: bytes = b"",
    dumpstatus: bool = True,
    sha1sums: bool = True,
    md5sums: bool = True,
    latest: bool = True,
) -> dict[str, str]:
    """Lay out ``root`` like the dumps site for one run; returns ``{name: url path}``.

    ``payload`` is served as both ``pages-articles.xml.bz2`` and the multistream dump, and
    ``index`` as the multistream index. Checksums are computed from the bytes written, so a
    test that wants a wrong one edits the listing afterwards. With ``latest``, a
    ``latest/`` folder holds the same files named ``{lang}wiki-latest-...`` next to a
    ``{lang}wiki-latest-sha1sums.txt`` that, like the real one, names the dated files.
    """
    import hashlib
    import json

    wiki = f"{lang}wiki"
    files = {
        "pages-articles.xml.bz2": payload,
        "pages-articles-multistream.xml.bz2": payload,
        "pages-articles-multistream-index.txt.bz2": index,
    }
    paths: dict[str, str] = {}
    folders = [date] + (["latest"] if latest else [])
    for folder in folders:
        d = root / wiki / folder
        d.mkdir(parents=True, exist_ok=True)
        listed = date  # the listings always name the dated files, also under latest/
        for suffix, data in files.items():
            name = f"{wiki}-{folder}-{suffix}"
            (d / name).write_bytes(data)
            paths[name] = f"/{wiki}/{folder}/{name}"
        sha1 = {f"{wiki}-{listed}-{s}": hashlib.sha1(b).hexdigest() for s, b in files.items()}
        md5 = {f"{wiki}-{listed}-{s}": hashlib.md5(b).hexdigest() for s, b in files.items()}
        if sha1sums:
            text = "".join(f"{h}  {n}\n" for n, h in sha1.items())
            (d / f"{wiki}-{folder}-sha1sums.txt").write_text(text)
        if md5sums:
            text = "".join(f"{h}  {n}\n" for n, h in md5.items())
            (d / f"{wiki}-{folder}-md5sums.txt").write_text(text)
        if dumpstatus and folder != "latest":  # the real latest/ has no dumpstatus.json
            jobs: dict[str, Any] = {"articlesdump": {}, "articlesmultistreamdump": {}}
            for job, suffixes in (
                ("articlesdump", ["pages-articles.xml.bz2"]),
                (
                    "articlesmultistreamdump",
                    [
                        "pages-articles-multistream.xml.bz2",
                        "pages-articles-multistream-index.txt.bz2",
                    ],
                ),
            ):
                jobs[job] = {
                    "status": "done",
                    "updated": "2024-01-02 03:04:05",
                    "files": {
                        f"{wiki}-{date}-{s}": {
                            "size": len(files[s]),
                            "url": f"/{wiki}/{date}/{wiki}-{date}-{s}",
                            "sha1": sha1[f"{wiki}-{listed}-{s}"],
                            "md5": md5[f"{wiki}-{listed}-{s}"],
                        }
                        for s in suffixes
                    },
                }
            jobs["pagetable"] = {"status": "done", "updated": "2024-01-02 03:04:05"}
            (d / "dumpstatus.json").write_text(json.dumps({"jobs": jobs, "version": "0.8"}))
    return paths
