"""Paths with a scheme (``s3://``, ``gs://``, ...), reached through Beam's ``FileSystems``.

Every verb that runs a Beam pipeline (``extract``, ``mask``, ``pack``, ``run``) accepts
``scheme://`` inputs and outputs. A path is *remote* when it starts with ``<scheme>://``; it
is then read, listed, written and deleted through
:class:`apache_beam.io.filesystems.FileSystems`, so any filesystem Beam registers works
(``s3://`` with ``apache-beam[aws]``, ``gs://`` with ``apache-beam[gcp]``, ``azfs://``,
``hdfs://``). Beam is imported on the first remote call only: local paths never reach it.

Writes to a remote folder follow one rule: the file is built on the worker's local disk (h5py
needs a seekable local file anyway), then published so that no partial file ever carries a
final name. On object stores (``s3``, ``gs``, ``azfs``) an object becomes visible only once
its upload has completed, so it is uploaded straight to its name ("rename" would be a copy of
every byte); elsewhere it is uploaded under a temp name beside it (``.<name>.tmp-<random>``,
the name :func:`corpus_pipeline.fsio_local.is_temp_name` knows) and renamed. Completion
markers and manifests are published after the files they describe, so resuming works as on a
local disk. Every file is written by exactly one writer (deterministic shards), so a retried
bundle rewrites the same bytes.

Connection options (``--s3_endpoint_url``, ``--s3_region_name``, ``--project`` ...) are
Beam's own flags: the CLI hands its pass-through flags to :func:`configure`, and local
worker processes receive them with the pipeline options (see ``beam/options.py``).

The local side (temp names, atomic renames) is :mod:`corpus_pipeline.fsio_local`; most code
calls the path-dispatching functions of :mod:`corpus_pipeline.fsio`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from corpus_pipeline.errors import UserError
from corpus_pipeline.fsio_local import FileSystem, is_temp_name

__all__ = [
    "REMOTE",
    "RemoteFileSystem",
    "check_writable",
    "configure",
    "download",
    "is_remote",
    "remote_access",
    "upload",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_CHUNK = 8 << 20  # upload/download copy size: few requests, bounded memory
# Pass-through Beam flags given to `configure` (None: never configured in this process; a
# Beam worker process is configured by its harness, from the pipeline options).
_beam_args: list[str] | None = None
_applied = False
_local_copies: dict[str, str] = {}


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` paths (read and written through Beam's FileSystems)."""
    return _SCHEME.match(os.fspath(path)) is not None


def configure(beam_args: Sequence[str]) -> None:
    """Remember the pass-through Beam flags; applied to FileSystems on the first remote call."""
    global _beam_args, _applied
    _beam_args = list(beam_args)
    _applied = False


def _filesystems() -> Any:
    global _applied
    from apache_beam.io.filesystems import FileSystems

    if _beam_args is not None and not _applied:
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions(_beam_args))
        _applied = True
    return FileSystems


def _scheme(path: str) -> str:
    m = _SCHEME.match(path)
    return m.group(1) if m else ""


_EXTRA = {"s3": "aws", "gs": "gcp", "azfs": "azure", "hdfs": "hadoop"}


@contextlib.contextmanager
def remote_access(path: str, what: str) -> Iterator[None]:
    """Turn a filesystem failure on the launcher into one UserError line naming the path."""
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the path") from None
    except ValueError as e:
        if "Unable to get filesystem" not in str(e):
            raise
        scheme = _scheme(path)
        extra = _EXTRA.get(scheme)
        hint = (
            f"pip install 'corpus-pipeline[{extra}]' (apache-beam[{extra}])"
            if extra
            else "use a scheme Beam has a filesystem for (s3://, gs://, azfs://, hdfs://)"
        )
        raise UserError(f"{path}: no filesystem for {scheme}:// in this install: {hint}") from None
    except Exception as e:  # boto/GCS client errors have no common base class
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise UserError(
            f"{path}: cannot {what} ({reason}): check the bucket, the credentials and the "
            "filesystem flags (e.g. --s3_endpoint_url, --s3_region_name)"
        ) from None


class RemoteFileSystem(FileSystem):
    """A ``scheme://`` store reached through Beam's ``FileSystems`` (see the module doc)."""

    remote = True

    def join(self, base: str, *parts: str) -> str:
        return posixpath.join(base, *parts)

    def abspath(self, path: str) -> str:
        return path

    def basename(self, path: str) -> str:
        return posixpath.basename(path.rstrip("/"))

    def open_read(self, path: str) -> IO[bytes]:
        from apache_beam.io.filesystem import CompressionTypes

        f: IO[bytes] = _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return f

    def open_text(self, path: str) -> IO[str]:
        return io.TextIOWrapper(self.open_read(path), encoding="utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        with remote_access(path, "check"):
            return bool(_filesystems().exists(path))

    def isfile(self, path: str) -> bool:
        return self.exists(path)

    def size(self, path: str) -> int:
        with remote_access(path, "check"):
            (result,) = _filesystems().match([path])
        return int(result.metadata_list[0].size_in_bytes)

    def stat_files(self, path: str) -> list[tuple[str, int, float]]:
        """Every object at or below ``path``: ``[(path, size, last update in seconds)]``."""
        with remote_access(path, "list"):
            (result,) = _filesystems().match([path.rstrip("/") + "/**"])
            if not result.metadata_list:  # not a folder: the object itself
                (result,) = _filesystems().match([path])
        return sorted(
            (m.path, int(m.size_in_bytes), float(getattr(m, "last_updated_in_seconds", 0.0)))
            for m in result.metadata_list
        )

    def list_files(self, folder: str) -> list[tuple[str, int]]:
        prefix = folder.rstrip("/") + "/"
        with remote_access(folder, "list"):
            (result,) = _filesystems().match([prefix + "**"])
        return sorted((m.path, int(m.size_in_bytes)) for m in result.metadata_list)

    def makedirs(self, folder: str) -> None:
        pass

    def free_bytes(self, path: str) -> int | None:
        return None  # a store's capacity is not ours to measure

    def delete(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        from apache_beam.io.filesystem import BeamIOError

        with contextlib.suppress(BeamIOError):
            _filesystems().delete(list(paths))

    def rmtree(self, folder: str) -> None:
        self.delete([p for p, _ in self.list_files(folder)])

    def rename(self, src: str, dst: str) -> None:
        _filesystems().rename([src], [dst])

    def remove_stale_temps(self, folder: str) -> list[str]:
        stale = [p for p, _ in self.list_files(folder) if is_temp_name(posixpath.basename(p))]
        self.delete(stale)
        return stale

    @contextlib.contextmanager
    def local_dir_for(self, folder: str) -> Iterator[str]:
        """A fresh local temp folder, removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="corpus-pipeline-out-") as d:
            yield d

    def publish(self, local_dir: str, rels: Sequence[str], folder: str) -> None:
        """Upload ``local_dir/rel`` to ``folder/rel`` for each rel, each file appearing only
        once complete (see ``_ATOMIC_CREATE``); a failure leaves no partial file under a final
        name (only temp names, which the next run removes)."""
        if not rels:
            return
        finals = [posixpath.join(folder, rel) for rel in rels]
        if _scheme(folder) in _ATOMIC_CREATE:
            for rel, final in zip(rels, finals, strict=True):
                upload(os.path.join(local_dir, rel), final)
            return
        temps = [_temp_name(f) for f in finals]
        for rel, tmp in zip(rels, temps, strict=True):
            upload(os.path.join(local_dir, rel), tmp)
        _filesystems().rename(temps, finals)

    @contextlib.contextmanager
    def atomic_output(self, final_path: str | Path, suffix: str = "") -> Iterator[Path]:
        """A local temp path, published to ``final_path`` on success (removed either way)."""
        final = str(final_path)
        name = posixpath.basename(final)
        with tempfile.TemporaryDirectory(prefix="corpus-pipeline-out-") as d:
            tmp = Path(d, f".{name}.tmp-{secrets.token_hex(6)}{suffix}")
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"atomic_output: nothing was written to {tmp}")
            os.replace(tmp, os.path.join(d, name))
            self.publish(d, [name], posixpath.dirname(final))

    def local_copy(self, path: str) -> str:
        """A downloaded copy, cached per process (for files every worker needs, such as the
        vocabulary)."""
        cached = _local_copies.get(path)
        if cached is not None and os.path.isfile(cached):
            return cached
        d = tempfile.mkdtemp(prefix="corpus-pipeline-copy-")
        local = os.path.join(d, posixpath.basename(path) or "file")
        download(path, local)
        _local_copies[path] = local
        return local


REMOTE = RemoteFileSystem()
"""Every ``scheme://`` store (Beam picks the filesystem per path)."""


def upload(local: str, remote: str) -> None:
    """Copy a finished local file to a remote path (visible once complete on object stores)."""
    from apache_beam.io.filesystem import CompressionTypes

    fs = _filesystems()
    if _scheme(remote) == "s3" and os.path.getsize(local) == 0:
        _put_empty_s3(remote)
        return
    with (
        open(local, "rb") as src,
        fs.create(
            remote,
            mime_type="application/octet-stream",
            compression_type=CompressionTypes.UNCOMPRESSED,
        ) as dst,
    ):
        shutil.copyfileobj(src, dst, _CHUNK)


def _put_empty_s3(remote: str) -> None:
    """An empty S3 object. Beam's S3 uploader (2.77) completes a multipart upload without any
    part when no byte was written, which S3 rejects (MalformedXML); an empty document shard is
    a legitimate output, so it is put directly with the filesystem's own boto3 client."""
    from apache_beam.io.aws import s3io

    fs = _filesystems().get_filesystem(remote)
    bucket, key = s3io.parse_s3_path(remote)
    s3io.S3IO(options=fs._options).client.client.put_object(Bucket=bucket, Key=key, Body=b"")


def download(remote: str, local: str) -> None:
    """Copy a remote file to a local path."""
    with REMOTE.open_read(remote) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def _temp_name(final: str) -> str:
    head, tail = posixpath.split(final)
    return posixpath.join(head, f".{tail}.tmp-{secrets.token_hex(6)}")


# Object stores: an object becomes visible only when its upload has completed, and "rename"
# is a server-side copy of every byte (S3's single copy stops at 5 GB), so files are uploaded
# straight to their final names there; other filesystems (hdfs://) get a temp name + rename.
_ATOMIC_CREATE = ("s3", "gs", "azfs")


def check_writable(folder: str) -> None:
    """Fail early, on the launcher and in one line, when a remote output cannot be written."""
    probe = posixpath.join(folder, f".write-probe-{secrets.token_hex(6)}")
    with tempfile.NamedTemporaryFile(prefix="corpus-pipeline-probe-") as f:
        f.write(b"probe\n")
        f.flush()
        # Beam's S3 uploader logs its own traceback at ERROR before raising: ours is the line.
        logging.disable(logging.ERROR)
        try:
            with remote_access(folder, "write"):
                upload(f.name, probe)
        finally:
            logging.disable(logging.NOTSET)
    REMOTE.delete([probe])
