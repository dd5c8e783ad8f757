"""Paths with a scheme (``s3://``, ``gs://``, ...) through Beam's ``FileSystems``; local paths as before.

Every verb that runs a Beam pipeline (``extract``, ``mask``, ``pack``, ``run``) accepts
``scheme://`` inputs and outputs. A path is *remote* when it starts with ``<scheme>://``; it
is then read, listed, written and deleted through
:class:`apache_beam.io.filesystems.FileSystems`, so any filesystem Beam registers works
(``s3://`` with ``apache-beam[aws]``, ``gs://`` with ``apache-beam[gcp]``, ``azfs://``,
``hdfs://``). Local paths keep the plain ``open``/``os`` code path: nothing here is imported
or called for them beyond :func:`is_remote`.

Writes to a remote folder follow one rule: the file is built on the worker's local disk (h5py
needs a seekable local file anyway), then published so that no partial file ever carries a
final name. On object stores (``s3``, ``gs``, ``azfs``) an object becomes visible only once
its upload has completed, so it is uploaded straight to its name ("rename" would be a copy of
every byte); elsewhere it is uploaded under a temp name beside it (``.<name>.tmp-<random>``,
the name :func:`corpus_pipeline.formats.common.is_temp_name` knows) and renamed. Completion
markers and manifests are published after the files they describe, so resuming works as on a
local disk. Every file is written by exactly one writer (deterministic shards), so a retried
bundle rewrites the same bytes.

Connection options (``--s3_endpoint_url``, ``--s3_region_name``, ``--project`` ...) are
Beam's own flags: the CLI hands its pass-through flags to :func:`configure`, and local
worker processes receive them with the pipeline options (see ``beam/runner.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
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
def _access(path: str, what: str) -> Iterator[None]:
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


def abspath(path: str) -> str:
    """``os.path.abspath`` for local paths; remote paths unchanged."""
    return path if is_remote(path) else os.path.abspath(path)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(path)


def join(base: str, *parts: str) -> str:
    """Join path parts (``/`` for remote paths, whatever the local OS)."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def open_read(path: str) -> IO[bytes]:
    """A seekable binary file; compressed files are *not* decompressed (``.bz2`` stays bz2)."""
    if not is_remote(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    f: IO[bytes] = _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return f


def open_text(path: str) -> IO[str]:
    """A UTF-8 text file (undecodable bytes replaced), universal newlines, like ``open``."""
    if not is_remote(path):
        return open(path, encoding="utf-8", errors="replace")
    return io.TextIOWrapper(open_read(path), encoding="utf-8", errors="replace")


def exists(path: str) -> bool:
    """A local file or folder, or a remote object, exists."""
    if not is_remote(path):
        return os.path.exists(path)
    with _access(path, "check"):
        return bool(_filesystems().exists(path))


def isfile(path: str) -> bool:
    """A local regular file, or a remote object."""
    return exists(path) if is_remote(path) else os.path.isfile(path)


def list_files(folder: str) -> list[tuple[str, int]]:
    """Every remote object under ``folder`` (recursive): ``[(path, size)]`` sorted by path."""
    prefix = folder.rstrip("/") + "/"
    with _access(folder, "list"):
        (result,) = _filesystems().match([prefix + "**"])
    return sorted((m.path, int(m.size_in_bytes)) for m in result.metadata_list)


def stat_files(path: str) -> list[tuple[str, int, float]]:
    """Every file at or below ``path``, local or remote: ``[(path, size, mtime)]`` sorted.

    A local mtime is in nanoseconds, a remote one is the object's last-update time (seconds).
    """
    if not is_remote(path):
        if os.path.isfile(path):
            names = [path]
        else:
            names = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        stats = [(p, os.stat(p)) for p in names]
        return sorted((p, st.st_size, float(st.st_mtime_ns)) for p, st in stats)
    with _access(path, "list"):
        (result,) = _filesystems().match([path.rstrip("/") + "/**"])
        if not result.metadata_list:  # not a folder: the object itself
            (result,) = _filesystems().match([path])
    return sorted(
        (m.path, int(m.size_in_bytes), float(getattr(m, "last_updated_in_seconds", 0.0)))
        for m in result.metadata_list
    )


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


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
    with open_read(remote) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def _temp_name(final: str) -> str:
    head, tail = posixpath.split(final)
    return posixpath.join(head, f".{tail}.tmp-{secrets.token_hex(6)}")


# Object stores: an object becomes visible only when its upload has completed, and "rename"
# is a server-side copy of every byte (S3's single copy stops at 5 GB), so files are uploaded
# straight to their final names there; other filesystems (hdfs://) get a temp name + rename.
_ATOMIC_CREATE = ("s3", "gs", "azfs")


def publish(local_dir: str, rels: Sequence[str], remote_dir: str) -> None:
    """Upload ``local_dir/rel`` to ``remote_dir/rel`` for each rel, each file appearing only
    once complete (see ``_ATOMIC_CREATE``); a failure leaves no partial file under a final
    name (only temp names, which the next run removes)."""
    if not rels:
        return
    finals = [posixpath.join(remote_dir, rel) for rel in rels]
    if _scheme(remote_dir) in _ATOMIC_CREATE:
        for rel, final in zip(rels, finals, strict=True):
            upload(os.path.join(local_dir, rel), final)
        return
    temps = [_temp_name(f) for f in finals]
    for rel, tmp in zip(rels, temps, strict=True):
        upload(os.path.join(local_dir, rel), tmp)
    _filesystems().rename(temps, finals)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file: atomically beside a local path, or published to a remote one."""
    if not is_remote(path):
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
        return
    with tempfile.TemporaryDirectory(prefix="corpus-pipeline-") as d:
        name = posixpath.basename(path)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        publish(d, [name], posixpath.dirname(path))


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def delete(paths: Sequence[str]) -> None:
    """Delete remote objects or local files; missing ones are fine."""
    local = [p for p in paths if not is_remote(p)]
    for p in local:
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
    remote = [p for p in paths if is_remote(p)]
    if remote:
        from apache_beam.io.filesystem import BeamIOError

        with contextlib.suppress(BeamIOError):
            _filesystems().delete(remote)


def rmtree(folder: str) -> None:
    """Delete a folder and everything under it (a remote prefix: every object below it)."""
    if not is_remote(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    delete([p for p, _ in list_files(folder)])


def remove_stale_temps(folder: str) -> list[str]:
    """Delete the ``.<name>.tmp-<random>`` objects a killed writer left anywhere under ``folder``."""
    stale = [p for p, _ in list_files(folder) if is_temp_name(posixpath.basename(p))]
    delete(stale)
    return stale


def check_writable(folder: str) -> None:
    """Fail early, on the launcher and in one line, when a remote output cannot be written."""
    probe = posixpath.join(folder, f".write-probe-{secrets.token_hex(6)}")
    with tempfile.NamedTemporaryFile(prefix="corpus-pipeline-probe-") as f:
        f.write(b"probe\n")
        f.flush()
        # Beam's S3 uploader logs its own traceback at ERROR before raising: ours is the line.
        logging.disable(logging.ERROR)
        try:
            with _access(folder, "write"):
                upload(f.name, probe)
        finally:
            logging.disable(logging.NOTSET)
    delete([probe])


def make_output_dir(folder: str) -> None:
    """Create a local output folder; check a remote one can be written (no folders there)."""
    if is_remote(folder):
        check_writable(folder)
        return
    check_output_path(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"--output {folder}: cannot create the folder ({e.strerror}): choose another --output"
        ) from None


def _kind_of(path: str) -> str:
    import stat

    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_input_file(path: str, flag: str = "--input", hint: str = "") -> None:
    """One true line for an input that must be a file: missing, a folder, a FIFO, a device."""
    if is_remote(path):
        if not isfile(path):
            raise UserError(f"{flag} {path}: no such file")
        return
    if not os.path.lexists(path):
        raise UserError(f"{flag} {path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a folder, not a file{hint}")
    if not os.path.isfile(path):
        raise UserError(
            f"{flag} {path}: is {_kind_of(path)}; give a regular file (dumps are read with seeks)"
        )
    if not os.access(path, os.R_OK):
        raise UserError(f"{flag} {path}: not readable (permission denied)")


def check_output_path(out: str, inputs: Sequence[str] = ()) -> None:
    """``--output`` must be a folder (or not exist yet) and must not overlap any input.

    An output inside an input folder would be read back as input by the next run; an input
    inside the output would be replaced by ``--overwrite``.
    """
    if is_remote(out):
        norm_out = out.rstrip("/")
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(
                f"--output {out}: is a file, not a folder: choose a folder (it is created)"
            )
        norm_out = os.path.realpath(out)
    for given in inputs:
        norm_in = given.rstrip("/") if is_remote(given) else os.path.realpath(given)
        if norm_in == norm_out:
            raise UserError(f"--output {out} is the input {given}: choose another --output")
        if norm_out.startswith(norm_in.rstrip("/") + "/"):
            raise UserError(
                f"--output {out} is inside the input folder {given}: the next run would read "
                "its own output as input; choose an --output outside it"
            )
        if norm_in.startswith(norm_out.rstrip("/") + "/"):
            raise UserError(
                f"input {given} is inside --output {out}: choose an --output that does not "
                "hold the inputs"
            )


def sha256(path: str) -> str:
    """Hex SHA-256 of a local or remote file."""
    h = hashlib.sha256()
    with open_read(path) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def local_copy(path: str) -> str:
    """A local path with the file's content: the path itself, or a downloaded copy (cached
    per process, for files every worker needs, such as the vocabulary)."""
    if not is_remote(path):
        return path
    cached = _local_copies.get(path)
    if cached is not None and os.path.isfile(cached):
        return cached
    d = tempfile.mkdtemp(prefix="corpus-pipeline-copy-")
    local = os.path.join(d, posixpath.basename(path) or "file")
    download(path, local)
    _local_copies[path] = local
    return local


@contextlib.contextmanager
def local_dir_for(folder: str) -> Iterator[str]:
    """The folder itself when local; else a fresh local temp folder (removed afterwards) in
    which to build files that are then published to ``folder``."""
    if not is_remote(folder):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="corpus-pipeline-out-") as d:
        yield d


# --- atomic local files (temp name beside the final one, fsync, rename) ---------------------

_TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{12}.*")


def fsync_dir(directory: str | Path) -> None:
    """Fsyncs a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems (and all of Windows) refuse fsync on a directory: best effort only.
        pass
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_output(final_path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temp path beside ``final_path``; on success it becomes ``final_path``.

    The temp file is named ``.<final name>.tmp-<random><suffix>`` in the destination folder, so
    the final rename is atomic (same filesystem). On normal exit the temp file is fsynced and
    ``os.replace``-d onto the final path; on an exception it is removed and the exception
    propagates. A process killed outright (SIGKILL, power loss) leaves the dot-file behind, and
    DLE's loader keeps every name that contains ``training`` -- hidden files included -- so a
    job that rewrites an output folder should call :func:`remove_stale_temps` on it first.

    The caller creates the file at the yielded path (it does not exist yet).

    Args:
        final_path: Where the finished file must appear.
        suffix: Appended to the temp name (some libraries look at the extension).

    Yields:
        The temp path to write.

    Raises:
        UserError: The destination folder does not exist.
    """
    final = Path(final_path)
    parent = final.parent
    if not parent.is_dir():
        raise UserError(f"output folder {str(parent)!r} does not exist: create it first")
    tmp = parent / f".{final.name}.tmp-{secrets.token_hex(6)}{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic_output: nothing was written to {tmp}")
        _fsync_path(tmp)
        os.replace(tmp, final)
        fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def is_temp_name(name: str) -> bool:
    """True for the ``.<name>.tmp-<random>*`` names :func:`atomic_output` writes to."""
    return _TEMP_NAME.fullmatch(name) is not None
