"""An output folder that already holds something, or that another run is writing.

What a reused folder can do unguarded: ``extract --shards 8`` then ``--shards 4`` into one
folder leaves ``books_00004..7`` behind for the next ``mask`` to read; ``mask --format all``
then ``hdf5`` leaves whole ``tfrecord/`` and ``mmap/`` folders; a rerun with ``--seed 2`` of a
killed ``--seed 1`` run keeps the seed-1 shards under a seed-2 manifest; two runs into one
folder end in hundreds of lines of Beam tracebacks. So a folder holding another configuration is
refused in one line naming the difference, ``--overwrite`` replaces it (only when it looks like
ours), a live run's lock refuses a second run, and a dead run's lock is taken over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corpus_pipeline import outdir, resources
from corpus_pipeline.beam.shards import ShardSpec, finished_shard, prepare_output, write_shard
from corpus_pipeline.cli import main
from corpus_pipeline.records import Instance
from corpus_pipeline.tmpdirs import _host
from tests.e2e.conftest import IN_PROCESS
from tests.faults.killing import ROOT, cli, digest

MASK = ["--preset", "phase1", "--dupe-factor", "1"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str]]:
    """Run the CLI in this process: (exit code, stderr lines)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err.strip().splitlines()


def sherlock_paragraphs() -> list[str]:
    text = Path(resources.SAMPLE_BOOKS_DIR, "sherlock.txt").read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve small books (one document each): enough to fill 8 shards, fast to extract."""
    folder = tmp_path_factory.mktemp("books")
    paragraphs = sherlock_paragraphs()[40:400]
    for b in range(12):
        (folder / f"book{b:02d}.txt").write_text(
            "\n\n".join(paragraphs[b::12]) + "\n", encoding="utf-8"
        )
    return folder


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small Google-format document files (no Beam needed to make them)."""
    folder = tmp_path_factory.mktemp("docs")
    paragraphs = sherlock_paragraphs()[40:1000]
    for f in range(2):
        lines = []
        for i in range(f * 12, len(paragraphs), 24):
            for para in paragraphs[i : i + 12]:
                lines.extend(s for s in re.split(r"(?<=[.!?])\s+", para) if s)
            lines.append("")
        (folder / f"doc_{f:05d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def listed(out: Path) -> list[str]:
    """Every file below ``out``, relative."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def named_by_manifest(out: Path) -> list[str]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return sorted(outdir.manifest_files(manifest))


def assert_one_error_line(lines: list[str], *parts: str) -> None:
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for part in parts:
        assert part in lines[0], lines[0]


def test_extract_with_fewer_shards_into_a_used_folder(
    tmp_path: Path, books: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """8 shards then 4: refused in one line; --overwrite gives a fresh run's folder, nothing
    of the 8-shard run left; the same command again redoes it."""
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    base = ["extract", "--books", books, *IN_PROCESS]
    assert run_cli(capsys, *base, "--output", out, "--shards", "8")[0] == 0
    assert "books_00007.txt" in listed(out)

    rc, err = run_cli(capsys, *base, "--output", out, "--shards", "4")
    assert rc == 2
    assert_one_error_line(err, f"{out} holds a dataset made with another configuration", "shards 8 vs 4", "--overwrite")  # fmt: skip
    assert "books_00007.txt" in listed(out)  # refused: untouched

    assert run_cli(capsys, *base, "--output", out, "--shards", "4", "--overwrite")[0] == 0
    assert run_cli(capsys, *base, "--output", fresh, "--shards", "4")[0] == 0
    assert listed(out) == named_by_manifest(out) == listed(fresh)
    assert digest(out) == digest(fresh)
    # A finished dataset of the same configuration: the rerun redoes it, to the same files.
    assert run_cli(capsys, *base, "--output", out, "--shards", "4")[0] == 0
    assert listed(out) == listed(fresh) and digest(out) == digest(fresh)


def test_mask_hdf5_into_a_folder_of_every_format(
    tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    base = ["mask", "--input", docs, *MASK, *IN_PROCESS, "--shards", "2"]
    assert run_cli(capsys, *base, "--output", out, "--format", "all")[0] == 0
    rc, err = run_cli(capsys, *base, "--output", out, "--format", "hdf5")
    assert rc == 2
    assert_one_error_line(err, "another configuration", "formats hdf5,tfrecord,mmap vs hdf5")
    assert (out / "tfrecord").is_dir()

    assert run_cli(capsys, *base, "--output", out, "--format", "hdf5", "--overwrite")[0] == 0
    assert run_cli(capsys, *base, "--output", fresh, "--format", "hdf5")[0] == 0
    assert not (out / "tfrecord").exists() and not (out / "mmap").exists()
    assert listed(out) == named_by_manifest(out) == listed(fresh)
    assert digest(out) == digest(fresh)


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp), "TOKENIZERS_PARALLELISM": "false"}


def _wait_for(predicate, proc: subprocess.Popen[bytes], what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the first run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"no {what} after {timeout:.0f} s")


def test_a_killed_run_of_another_seed_is_refused_not_resumed(
    tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 ``mask --seed 1`` once a shard is finished, rerun with ``--seed 2``: refused
    (the seed-1 shards were kept before); --overwrite gives a fresh seed-2 run's files."""
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    base = ["mask", "--input", docs, *MASK, "--shards", "6", "--format", "tfrecord"]
    first = subprocess.Popen(
        cli(*base, "--output", out, "--seed", "1", "--workers", "1"),
        cwd=ROOT,
        env=_env(tmp_path / "tmp"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for(lambda: any(out.glob(".markers/*.json")), first, "a finished shard")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert not (out / "manifest.json").exists(), "the first run finished before the kill"

    rc, err = run_cli(capsys, *base, "--output", out, "--seed", "2")
    assert rc == 2
    assert_one_error_line(
        err, f"{out} holds an unfinished dataset made with another configuration", "seed 1 vs 2"
    )
    base += IN_PROCESS
    assert run_cli(capsys, *base, "--output", out, "--seed", "2", "--overwrite")[0] == 0
    assert run_cli(capsys, *base, "--output", fresh, "--seed", "2")[0] == 0
    assert listed(out) == named_by_manifest(out) == listed(fresh)
    assert digest(out) == digest(fresh)


def test_a_second_run_into_a_folder_being_written_stops_in_one_line(
    tmp_path: Path, docs: Path
) -> None:
    out = tmp_path / "out"
    cmd = cli("mask", "--input", docs, "--output", out, *MASK, *IN_PROCESS, "--dupe-factor", "4")
    first = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(tmp_path / "tmp1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: (out / outdir.LOCK).exists(), first, "lock file")
        # The first run is paused (alive, holding its lock) while the second one starts, so
        # the test does not race the first run's end on a slow machine.
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run(
                cmd, cwd=ROOT, env=_env(tmp_path / "tmp2"), capture_output=True, timeout=120
            )
            still_running = first.poll() is None
        finally:
            os.killpg(first.pid, signal.SIGCONT)
    finally:
        _, first_err = first.communicate(timeout=300)
    assert still_running, "the first run ended before the second one checked the lock"
    assert second.returncode == 2
    assert_one_error_line(
        second.stderr.decode().strip().splitlines(),
        f"{out} is being written by pid {first.pid} on {_host()} since",
        "wait for it or choose another --output",
    )
    assert first.returncode == 0, first_err.decode()[-2000:]
    assert listed(out) == named_by_manifest(out)  # the lock is gone too


def test_the_lock_of_a_dead_run_is_taken_over_and_a_live_one_refuses(
    tmp_path: Path, books: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lock = out / outdir.LOCK
    lock.write_text(json.dumps({"pid": os.getpid(), "host": _host(), "started": "T0"}))
    cmd = ["extract", "--books", books, "--output", out, "--shards", "2", *IN_PROCESS]
    rc, err = run_cli(capsys, *cmd)
    assert rc == 2
    assert_one_error_line(err, f"is being written by pid {os.getpid()} on {_host()} since T0")
    assert lock.exists()

    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "host": _host(), "started": "T0"}))
    assert run_cli(capsys, *cmd)[0] == 0
    assert listed(out) == named_by_manifest(out)  # taken over, then released


def test_overwrite_never_empties_a_folder_corpus_pipeline_did_not_write(
    tmp_path: Path, books: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo'd ``--output ~ --overwrite`` removes nothing: refused in one line."""
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (home / ".bashrc").write_text("# mine\n")
    (home / "projects" / "notes.txt").write_text("mine\n")
    before = listed(home)
    cmd = ["extract", "--books", books, "--output", home, *IN_PROCESS]
    for flags in ([], ["--overwrite"]):
        rc, err = run_cli(capsys, *cmd, *flags)
        assert rc == 2
        assert_one_error_line(err, f"{home} holds files that corpus-pipeline did not write")
        assert listed(home) == before
    # Our file names without any manifest, state or marker: not provably ours either.
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "chapter_00001.txt").write_text("mine\n")
    rc, err = run_cli(capsys, "extract", "--books", books, "--output", loose, "--overwrite")
    assert rc == 2 and (loose / "chapter_00001.txt").exists()
    assert_one_error_line(err, "did not write")


def _instances(n: int = 20) -> list[Instance]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ids = rng.integers(1000, 2000, 40).astype(np.int32)
        positions = np.array([3, 7, 11], dtype=np.int32)
        out.append(
            Instance(ids, (np.arange(40) > 20).astype(np.int8), positions, ids[positions], 0)
        )
    return out


def test_a_marker_of_another_fingerprint_is_not_a_finished_shard(tmp_path: Path) -> None:
    """``finished_shard`` trusted any marker whose files exist (a seed-1 shard in a seed-2 run)."""
    spec = ShardSpec(str(tmp_path), "wiki", ("tfrecord",), 128, 20, 30522, 1, None, "a" * 64)
    prepare_output(spec.out_dir, spec.formats)
    entry = write_shard(spec, 0, _instances(), lambda name, n=1: None)
    assert finished_shard(spec, 0) == entry
    other = ShardSpec(str(tmp_path), "wiki", ("tfrecord",), 128, 20, 30522, 2, None, "b" * 64)
    assert finished_shard(other, 0) is None


def test_the_difference_is_named() -> None:
    a = outdir.fingerprint("mask", config={"mask": {"seed": 1}}, formats=["hdf5"], shards=4)
    b = outdir.fingerprint("mask", config={"mask": {"seed": 2}}, formats=["hdf5"], shards=8)
    assert outdir.describe_difference(a, b) == "seed 1 vs 2, shards 4 vs 8"
    c = outdir.fingerprint("extract", config={}, shards=4)
    assert outdir.describe_difference(c, b) == "made by `extract`, this is `mask`"
    assert a["sha256"] != b["sha256"]
    assert a == outdir.fingerprint("mask", config={"mask": {"seed": 1}}, formats=["hdf5"], shards=4)
    # Tuples (in config dataclasses) compare equal to the lists a manifest reads back.
    d = outdir.fingerprint("extract", config={"namespaces": (0,)}, shards=4)
    assert outdir.describe_difference(json.loads(json.dumps(d)), d) == ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-q"]))
