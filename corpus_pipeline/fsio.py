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


class FileSystem:
    """One place that knows how to reach a path: a local disk, or a ``scheme://`` store.

    Get one with :func:`filesystem`; both kinds answer the same calls, so code that writes or
    reads shards says what it does once, whatever the destination. Writes go through
    :meth:`atomic_output`: the file is built at a local temp path and appears under its final
    name only once complete (renamed beside it on a local disk, published to a remote store).
    """

    remote = False

    def join(self, base: str, *parts: str) -> str:
        """Join path parts with this filesystem's separator."""
        return os.path.join(base, *parts)

    def abspath(self, path: str) -> str:
        return os.path.abspath(path)

    def basename(self, path: str) -> str:
        return os.path.basename(path)

    def open_read(self, path: str) -> IO[bytes]:
        """A seekable binary file; compressed files are *not* decompressed."""
        return open(path, "rb")

    def open_text(self, path: str) -> IO[str]:
        """A UTF-8 text file (undecodable bytes replaced), universal newlines."""
        return open(path, encoding="utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def stat_files(self, path: str) -> list[tuple[str, int, float]]:
        """Every file at or below ``path``: ``[(path, size, mtime in nanoseconds)]`` sorted."""
        if os.path.isfile(path):
            names = [path]
        else:
            names = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        stats = [(p, os.stat(p)) for p in names]
        return sorted((p, st.st_size, float(st.st_mtime_ns)) for p, st in stats)

    def list_files(self, folder: str) -> list[tuple[str, int]]:
        """Every file under ``folder`` (recursive): ``[(path, size)]`` sorted by path."""
        return [(p, size) for p, size, _ in self.stat_files(folder) if p != folder]

    def free_bytes(self, path: str) -> int | None:
        """Free bytes of the disk that holds (or will hold) ``path``; None when unknown."""
        where = os.path.abspath(path)
        while not os.path.exists(where):
            parent = os.path.dirname(where)
            if parent == where:
                return None
            where = parent
        try:
            return shutil.disk_usage(where).free
        except OSError:
            return None

    def makedirs(self, folder: str) -> None:
        """Create a folder and its parents (object stores have no folders: nothing to do)."""
        os.makedirs(folder, exist_ok=True)

    def delete(self, paths: Sequence[str]) -> None:
        """Delete files; missing ones are fine."""
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)

    def rmtree(self, folder: str) -> None:
        """Delete a folder and everything under it."""
        shutil.rmtree(folder, ignore_errors=True)

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` onto ``dst`` (replacing it)."""
        os.replace(src, dst)

    def remove_stale_temps(self, folder: str) -> list[str]:
        """Delete the ``.<name>.tmp-<random>*`` files a killed writer left in ``folder``
        (a local folder's own files; below a remote prefix, every object).

        Only call it when no writer is running on that folder.
        """
        removed = []
        for p in sorted(Path(folder).glob(".*.tmp-*")):
            if p.is_file() and is_temp_name(p.name):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(str(p))
        return removed

    @contextlib.contextmanager
    def local_dir_for(self, folder: str) -> Iterator[str]:
        """A local folder in which to build files that :meth:`publish` then puts in ``folder``:
        the folder itself on a local disk."""
        yield folder

    def publish(self, local_dir: str, rels: Sequence[str], folder: str) -> None:
        """Make ``local_dir/rel`` appear as ``folder/rel`` (nothing to do: same folder here)."""

    @contextlib.contextmanager
    def atomic_output(self, final_path: str | Path, suffix: str = "") -> Iterator[Path]:
        """See the module function :func:`atomic_output`."""
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

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file; it appears only once complete."""
        with self.atomic_output(path) as tmp:
            tmp.write_bytes(data)

    def local_copy(self, path: str) -> str:
        """A local path with the file's content (the path itself here)."""
        return path


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
        with _access(path, "check"):
            return bool(_filesystems().exists(path))

    def isfile(self, path: str) -> bool:
        return self.exists(path)

    def size(self, path: str) -> int:
        with _access(path, "check"):
            (result,) = _filesystems().match([path])
        return int(result.metadata_list[0].size_in_bytes)

    def stat_files(self, path: str) -> list[tuple[str, int, float]]:
        """Every object at or below ``path``: ``[(path, size, last update in seconds)]``."""
        with _access(path, "list"):
            (result,) = _filesystems().match([path.rstrip("/") + "/**"])
            if not result.metadata_list:  # not a folder: the object itself
                (result,) = _filesystems().match([path])
        return sorted(
            (m.path, int(m.size_in_bytes), float(getattr(m, "last_updated_in_seconds", 0.0)))
            for m in result.metadata_list
        )

    def list_files(self, folder: str) -> list[tuple[str, int]]:
        prefix = folder.rstrip("/") + "/"
        with _access(folder, "list"):
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


_LOCAL = FileSystem()
_REMOTE = RemoteFileSystem()


def filesystem(path: str | os.PathLike[str]) -> FileSystem:
    """The filesystem ``path`` lives on: the local disk, or the ``scheme://`` store."""
    return _REMOTE if is_remote(path) else _LOCAL


def abspath(path: str) -> str:
    """``os.path.abspath`` for local paths; remote paths unchanged."""
    return filesystem(path).abspath(path)


def basename(path: str) -> str:
    return filesystem(path).basename(path)


def join(base: str, *parts: str) -> str:
    """Join path parts (``/`` for remote paths, whatever the local OS)."""
    return filesystem(base).join(base, *parts)


def open_read(path: str) -> IO[bytes]:
    """A seekable binary file; compressed files are *not* decompressed (``.bz2`` stays bz2)."""
    return filesystem(path).open_read(path)


def open_text(path: str) -> IO[str]:
    """A UTF-8 text file (undecodable bytes replaced), universal newlines, like ``open``."""
    return filesystem(path).open_text(path)


def exists(path: str) -> bool:
    """A local file or folder, or a remote object, exists."""
    return filesystem(path).exists(path)


def isfile(path: str) -> bool:
    """A local regular file, or a remote object."""
    return filesystem(path).isfile(path)


def list_files(folder: str) -> list[tuple[str, int]]:
    """Every file under ``folder`` (recursive): ``[(path, size)]`` sorted by path."""
    return filesystem(folder).list_files(folder)


def stat_files(path: str) -> list[tuple[str, int, float]]:
    """Every file at or below ``path``, local or remote: ``[(path, size, mtime)]`` sorted.

    A local mtime is in nanoseconds, a remote one is the object's last-update time (seconds).
    """
    return filesystem(path).stat_files(path)


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
    """Upload ``local_dir/rel`` to ``remote_dir/rel`` (see :meth:`RemoteFileSystem.publish`)."""
    _REMOTE.publish(local_dir, rels, remote_dir)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file: atomically beside a local path, or published to a remote one."""
    filesystem(path).write_bytes(path, data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def delete(paths: Sequence[str]) -> None:
    """Delete remote objects or local files; missing ones are fine."""
    _LOCAL.delete([p for p in paths if not is_remote(p)])
    _REMOTE.delete([p for p in paths if is_remote(p)])


def rmtree(folder: str) -> None:
    """Delete a folder and everything under it (a remote prefix: every object below it)."""
    filesystem(folder).rmtree(folder)


def remove_stale_temps(folder: str) -> list[str]:
    """Delete the ``.<name>.tmp-<random>`` files a killed writer left in a local folder, or
    anywhere below a remote prefix."""
    return filesystem(folder).remove_stale_temps(folder)


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
    return filesystem(path).local_copy(path)


def local_dir_for(folder: str) -> contextlib.AbstractContextManager[str]:
    """The folder itself when local; else a fresh local temp folder (removed afterwards) in
    which to build files that are then published to ``folder``."""
    return filesystem(folder).local_dir_for(folder)


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


def atomic_output(
    final_path: str | Path, suffix: str = ""
) -> contextlib.AbstractContextManager[Path]:
    """Yields a temp path for ``final_path``; on success it becomes ``final_path``.

    A remote ``final_path`` is built in a private local temp folder and published on success
    (see the module doc). Locally, the temp file is named ``.<final name>.tmp-<random><suffix>`` in the destination folder, so
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
    return filesystem(final_path).atomic_output(final_path, suffix)


def is_temp_name(name: str) -> bool:
    """True for the ``.<name>.tmp-<random>*`` names :func:`atomic_output` writes to."""
    return _TEMP_NAME.fullmatch(name) is not None
