"""Disk full while writing a shard: a clear ENOSPC error naming the shard, never a partial file.

Three levels, from the writer to the CLI:

* injected: every shard writer (HDF5, TFRecord, mmap; unpacked and packed) on a "disk" that
  refuses writes past a byte budget, either at the first write or in the last bytes (the close
  that flushes the buffers and the HDF5 metadata). The error names the final shard, nothing is
  left in the folder (no file at the final name, no temp file), and once the disk has room the
  same shard is written and reads back whole.
* a real full file system in a child process: a 256 kB tmpfs when one can be mounted, and a
  file-size limit (``RLIMIT_FSIZE``, EFBIG) everywhere. The child must exit normally: libhdf5
  crashed the process with a segmentation fault at exit after a failed write.
* ``corpus-pipeline mask`` into a 2 MB tmpfs: it fails, leaves no partial shard, and ``verify``
  does not pass the folder.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest

from corpus_pipeline import resources
from corpus_pipeline.formats import mmap, registry, tfrecord_writer
from corpus_pipeline.formats.common import remove_stale_temps
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.testing.datasets import SampleData, make_instances
from tests.e2e.conftest import IN_PROCESS, run_cli

S, P, K, VOCAB = 128, 20, 3, 30522


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return make_instances(packed=True, dupe_factor=1)


def records(sample: SampleData, packed: bool) -> list[Any]:
    assert sample.packs is not None
    return list(sample.packs[0]) if packed else list(sample.shards[0])


def write_shard(out: Path, fmt: str, recs: list[Any], packed: bool) -> None:
    with registry.open_writer(
        fmt,
        str(out),
        "x",
        0,
        max_seq_length=S,
        max_predictions=P,
        vocab_size=VOCAB,
        max_per_pack=K if packed else None,
    ) as w:
        for i in range(0, len(recs), 64):
            w.write(recs[i : i + 64])


def keys(recs: list[Any]) -> list[bytes]:
    return [i.key() for i in registry.instances_of(recs)]


# ---------------------------------------------------------------------------------- injected


class FullDisk:
    """A file system with ``budget`` bytes left: a write past it fails with ENOSPC."""

    def __init__(self) -> None:
        self.budget: float = math.inf
        self.written = 0

    def reset(self, budget: float) -> None:
        self.budget = budget
        self.written = 0

    def take(self, n: int) -> None:
        if self.written + n > self.budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += n


class _File:
    """A file object whose writes draw on a :class:`FullDisk` (the kernel's view of a write)."""

    def __init__(self, f: Any, disk: FullDisk) -> None:
        self._f = f
        self._disk = disk

    def write(self, data: Any) -> int:
        self._disk.take(len(data))
        return int(self._f.write(data))

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def install(monkeypatch: pytest.MonkeyPatch, fmt: str, layer: str) -> FullDisk:
    """Route the writes of ``fmt``'s writer through a :class:`FullDisk`."""
    disk = FullDisk()
    if fmt == "hdf5" and layer == "os":
        # The HDF5 writer hands libhdf5 a file object that writes with os.pwrite.
        real_pwrite = os.pwrite

        def pwrite(fd: int, data: Any, offset: int) -> int:
            disk.take(len(data))
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)
    elif fmt == "hdf5":
        # h5py's own entry points, as if libhdf5 had reported the failed write.
        for name in ("__setitem__", "write_direct"):
            real = getattr(h5py.Dataset, name)

            def failing(self: Any, *args: Any, _real: Any = real) -> Any:
                disk.take(self.dtype.itemsize)
                return _real(self, *args)

            monkeypatch.setattr(h5py.Dataset, name, failing)
    else:
        module = tfrecord_writer if fmt == "tfrecord" else mmap

        def fake_open(*args: Any, **kwargs: Any) -> _File:
            return _File(open(*args, **kwargs), disk)  # noqa: SIM115 - closed by the writer

        monkeypatch.setattr(module, "open", fake_open, raising=False)
    return disk


CASES = [
    ("hdf5", "os"),
    ("hdf5", "h5py"),
    ("tfrecord", "open"),
    ("mmap", "open"),
]


@pytest.mark.parametrize("when", ["first write", "last bytes"])
@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("fmt, layer", CASES, ids=[f"{f}-{la}" for f, la in CASES])
def test_disk_full_while_writing_a_shard(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sample: SampleData,
    fmt: str,
    layer: str,
    packed: bool,
    when: str,
) -> None:
    """ENOSPC at the first write or in the last bytes: OSError(ENOSPC) naming the final shard,
    an empty folder afterwards, and a clean retry once there is room."""
    recs = records(sample, packed)
    disk = install(monkeypatch, fmt, layer)
    write_shard(tmp_path / "sizing", fmt, recs, packed)  # how much this shard writes
    total = disk.written
    assert total > 0
    disk.reset(1 if when == "first write" else total - 1)

    out = tmp_path / "full"
    with pytest.raises(OSError) as raised:
        write_shard(out, fmt, recs, packed)
    assert raised.value.errno == errno.ENOSPC
    names = [Path(rel).name for rel in registry.shard_files(fmt, "x", 0, packed)]
    assert raised.value.filename is not None
    assert Path(raised.value.filename).name in names, raised.value.filename
    assert sorted(os.listdir(out / fmt)) == []  # no shard, no temp file left behind

    disk.reset(math.inf)
    write_shard(out, fmt, recs, packed)
    back = list(registry.read_shard(fmt, str(out), "x", 0, packed))
    assert keys(back) == keys(recs)


def test_remove_stale_temps_removes_what_a_killed_writer_leaves(
    tmp_path: Path, sample: SampleData
) -> None:
    """A writer killed outright (no exception handling runs) leaves only dot-temp names, and
    ``remove_stale_temps`` (called by every verb before writing) removes exactly those."""
    recs = records(sample, False)
    out = tmp_path / "out"
    writers = [
        registry.open_writer(
            fmt, str(out), "x", 0, max_seq_length=S, max_predictions=P, vocab_size=VOCAB
        )
        for fmt in registry.FORMATS
    ]
    for w in writers:
        w.write(recs[:100])  # then "killed": never closed or aborted
    for fmt in registry.FORMATS:
        left = sorted(os.listdir(out / fmt))
        assert left and all(n.startswith(".") and ".tmp-" in n for n in left), left
        assert [p.name for p in remove_stale_temps(out / fmt)] == left
        assert os.listdir(out / fmt) == []
    for w in writers:  # release the handles of the "killed" writers
        with contextlib.suppress(Exception):
            w.__exit__(RuntimeError, RuntimeError("killed"), None)


# ----------------------------------------------------------------------- real file systems


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip() or f"exit {proc.returncode}"
        pytest.skip(f"cannot mount a tmpfs here ({reason}); the injected variants still run")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# Writes every format, unpacked and packed, into a folder that fills up; prints one JSON line
# per case. Exits 0 if the process survives (libhdf5 can crash at exit after a failed write).
_CHILD = """
import json, os, resource, signal, sys
from corpus_pipeline.formats import registry
from corpus_pipeline.testing.datasets import make_instances
root, limit = sys.argv[1], int(sys.argv[2])
data = make_instances(packed=True, dupe_factor=1)
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
for packed in (False, True):
    recs = (data.packs[0] if packed else data.shards[0]) * 40
    for fmt in registry.FORMATS:
        out = os.path.join(root, f"{fmt}-{int(packed)}")
        os.makedirs(out)
        result = {"fmt": fmt, "packed": packed, "errno": None}
        try:
            with registry.open_writer(fmt, out, "x", 0, max_seq_length=128, max_predictions=20,
                                      vocab_size=30522, max_per_pack=3 if packed else None) as w:
                for i in range(0, len(recs), 256):
                    w.write(recs[i:i + 256])
        except OSError as e:
            result.update(errno=e.errno, filename=e.filename)
        result["left"] = sorted(os.listdir(os.path.join(out, fmt)))
        print(json.dumps(result), flush=True)
"""


@pytest.mark.parametrize("fs", ["tmpfs", "rlimit"])
def test_a_really_full_disk_fails_cleanly_and_the_process_survives(tmp_path: Path, fs: str) -> None:
    """A real ENOSPC (256 kB tmpfs) or EFBIG (file-size limit) from the kernel, in every writer:
    the error names the shard, nothing is left in the folder, and the process exits normally."""
    with contextlib.ExitStack() as stack:
        if fs == "tmpfs":
            root = stack.enter_context(tmpfs(tmp_path / "mnt", "256k"))
            limit, want = 0, errno.ENOSPC
        else:
            root, limit, want = tmp_path / "out", 200_000, errno.EFBIG
            root.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root), str(limit)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == 6
    for r in results:
        names = [Path(p).name for p in registry.shard_files(r["fmt"], "x", 0, r["packed"])]
        assert r["errno"] == want, r
        assert Path(r["filename"]).name in names, r
        assert r["left"] == [], r


# ------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def mask_into_full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``corpus-pipeline mask`` (every format) into a 2 MB tmpfs; what it printed and left."""
    root = tmp_path_factory.mktemp("full_cli")
    docs = root / "docs.txt"
    docs.write_text(resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8") * 30)
    with tmpfs(root / "mnt", "2m") as mnt:
        out = mnt / "out"
        err = io.StringIO()
        raised: BaseException | None = None
        rc: int | None = None
        with contextlib.redirect_stderr(err):
            try:
                rc = run_cli(
                    "mask",
                    "--input",
                    docs,
                    "--output",
                    out,
                    "--format",
                    "all",
                    "--shards",
                    "2",
                    "--dupe-factor",
                    "5",
                    *IN_PROCESS,
                    "--no-space-check",  # the disk filling up mid-write is the point here
                )
            except Exception as e:  # what the lead's one-line handler must turn into rc 2
                raised = e
        yield {"out": out, "rc": rc, "raised": raised, "stderr": err.getvalue()}


def test_mask_into_a_full_disk_fails_without_a_partial_shard(
    mask_into_full_disk: dict[str, Any],
) -> None:
    """The run fails; every shard file at a final name is complete (reads to the end, its size
    matches its index), no temp file is left, and ``verify`` refuses the folder."""
    r = mask_into_full_disk
    out: Path = r["out"]
    assert r["raised"] is not None or r["rc"] != 0
    assert not (out / "manifest.json").exists()
    for fmt in registry.FORMATS:
        folder = out / fmt
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        assert not [n for n in names if ".tmp-" in n], names
        for i in range(2):
            files = registry.shard_files(fmt, "wiki", i, False)
            present = [f for f in files if (out / f).exists()]
            assert present in ([], files), present  # all of a shard's files, or none
            if present:
                recs = list(registry.read_shard(fmt, str(out), "wiki", i, False))
                assert all(isinstance(x, Instance | Pack) for x in recs)
    assert run_cli("verify", out) != 0


def test_mask_into_a_full_disk_says_so_in_one_line(mask_into_full_disk: dict[str, Any]) -> None:
    """Non-zero exit and one ``error:`` line that says the disk is full, no traceback."""
    r = mask_into_full_disk
    assert r["raised"] is None, f"{type(r['raised']).__name__} escaped the CLI"
    lines = r["stderr"].strip().splitlines()
    assert r["rc"] not in (None, 0)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "disk full" in lines[0] or "No space left" in lines[0]
