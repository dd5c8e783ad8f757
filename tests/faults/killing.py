"""kill -9 harness: run a CLI verb, SIGKILL its whole process tree N times, then let it finish.

Every run of the command starts in its own session (``start_new_session=True``), so
``os.killpg`` reaches the launcher and every Beam worker it forked. The kill points come from a
seeded ``random.Random``: the seed is in every assertion message, so a failure replays with the
same draws (the machine's load still moves what each point interrupts, which is why what each
killed run had written is logged in the message too).

Where the kills land: an uninterrupted reference run is timed first, and the shard files' mtimes
tell when it was writing shards. Kills alternate between a delay drawn over the whole reference
run and one drawn over its shard-writing window (the last kill is one of those), scaled to the
machine's current speed, so some kills hit Beam start-up and masking, and some hit a shard half
written (a stale temp name left behind) or some shards finished (markers left behind).

What is checked after the final run: the files of shards whose completion marker a killed run
left were kept, not written again; every file under the output folder has the sha256 of the
reference's file at the same path (manifests compared as JSON without ``created``/``timings``,
the two fields that differ between identical runs), no dot-file, ``*.tmp*`` or spill file is left
anywhere below it, and ``corpus-pipeline verify`` passes on each dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus_pipeline.formats.manifest import without_timestamps

ROOT = Path(__file__).resolve().parents[2]
# A run under test never takes this long (the uninterrupted ones take 10-20 s on 2 cores).
RUN_TIMEOUT = 300.0
# Shard files appear this long after their writer starts, at most, in these small runs: the
# write window starts that much before the first shard file's mtime.
WRITE_LEAD = 1.0
FORMAT_DIRS = ("hdf5", "tfrecord", "mmap")


def cli(*args: Any) -> list[str]:
    """The command line of ``corpus-pipeline <args>`` in a fresh interpreter."""
    return [sys.executable, "-m", "corpus_pipeline", *(str(a) for a in args)]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp)  # the progress file's folder: private, so a test can look at it
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


@dataclass
class Reference:
    """An uninterrupted run: its output folder, wall time and shard-writing window."""

    out: Path
    seconds: float
    write_window: tuple[float, float]


def run_to_end(cmd: Sequence[str], tmp: Path) -> tuple[float, float]:
    """Run ``cmd`` to completion (exit 0 asserted); returns (start wall time, duration)."""
    tmp.mkdir(parents=True, exist_ok=True)
    start_wall = time.time()
    start = time.monotonic()
    proc = subprocess.run(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(tmp),
        timeout=RUN_TIMEOUT,
        start_new_session=True,
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr.decode()[-3000:]}"
    return start_wall, seconds


def shard_files(out: Path) -> list[Path]:
    """Finished shard files (format folders of every dataset below ``out``)."""
    return sorted(
        p
        for p in out.rglob("*")
        if p.is_file() and p.parent.name in FORMAT_DIRS and _visible(p, out)
    )


def reference_run(cmd: Sequence[str], out: Path, tmp: Path) -> Reference:
    """Run ``cmd`` (which writes to ``out``) once, uninterrupted, and time its phases."""
    start_wall, seconds = run_to_end(cmd, tmp)
    mtimes = [p.stat().st_mtime - start_wall for p in shard_files(out)]
    assert mtimes, f"{out}: the reference run wrote no shard file"
    lo = max(0.0, min(mtimes) - WRITE_LEAD)
    hi = min(seconds, max(mtimes))
    return Reference(out, seconds, (lo, max(hi, lo + 0.1)))


@dataclass
class Kill:
    """What one kill did: when, whether the run was still going, what that run wrote."""

    aim: str
    delay: float
    killed: bool
    wrote: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        what = ", ".join(f"{v} {k}" for k, v in self.wrote.items() if v) or "no shard file"
        verb = "killed" if self.killed else "finished before the kill"
        return f"{self.delay:6.2f} s ({self.aim}): {verb}; it wrote {what}"

    @property
    def reached_writing(self) -> bool:
        return any(self.wrote.values())


def start_and_kill(cmd: Sequence[str], delay: float, tmp: Path) -> bool:
    """Start ``cmd`` in its own session, SIGKILL the whole group after ``delay`` seconds.

    Returns whether it was killed (False: it finished first, exit 0 asserted).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(tmp),
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        return True
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{err.decode()[-3000:]}"
    return False


def written_since(out: Path, since: float) -> dict[str, int]:
    """Shard files, temp names and completion markers below ``out`` modified after ``since``."""
    wrote = {"shard files": 0, "temp files": 0, "markers": 0}
    for p in out.rglob("*"):
        if not p.is_file() or p.stat().st_mtime < since:
            continue
        if p.parent.name == ".markers" and p.suffix == ".json":
            wrote["markers"] += 1
        elif p.parent.name in FORMAT_DIRS:
            wrote["temp files" if p.name.startswith(".") else "shard files"] += 1
    return wrote


def kill_loop(
    make_cmd: Callable[[Path], Sequence[str]],
    ref: Reference,
    out: Path,
    tmp: Path,
    rng: random.Random,
    kills: int,
) -> list[Kill]:
    """Kill ``make_cmd(out)`` ``kills`` times in a row; returns what each kill did.

    Kills alternate between anywhere in the run and the shard-writing window, the last one
    aimed at the window (so the final run usually starts from some finished shards). Delays are
    drawn from ``rng`` over the reference run's times, scaled to the machine's current speed
    (the machine is shared, runs can take twice as long as the reference): a run that finished
    before its kill shrinks the scale, a writing-window kill that came before any shard file
    grows it.
    """
    log: list[Kill] = []
    scale = 1.0
    lo, hi = ref.write_window
    for i in range(kills):
        u = rng.random()
        if (kills - i) % 2 == 0:
            aim, delay = "anywhere", 0.5 + u * (ref.seconds * scale - 0.5)
        else:
            aim, delay = "writing", (lo + u * (hi - lo)) * scale
        since = time.time()
        # One TMPDIR for every kill and the final run: what killed runs leave there (their
        # private temp folders) must be gone after the final run.
        killed = start_and_kill(make_cmd(out), delay, tmp / "tmpdir")
        kill = Kill(aim, delay, killed, written_since(out, since))
        log.append(kill)
        if not killed:
            scale = max(0.5, scale * 0.8)
        elif aim == "writing" and not kill.reached_writing:
            scale = min(4.0, scale * 1.3)
    return log


def _visible(p: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in p.relative_to(root).parts)


def strays(out: Path) -> list[str]:
    """Temp, partial and private files below ``out``: dot-names, ``*.tmp*``, spills, markers."""
    found = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if not _visible(p, out) or ".tmp" in p.name or p.suffix == ".spill":
            found.append(str(rel) + ("/" if p.is_dir() else ""))
    return found


def kept_files(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file a completion marker below ``out`` vouches for: a rerun
    must keep these shards, not write them again."""
    kept = {}
    for marker in out.rglob(".markers/*.json"):
        dataset = marker.parent.parent
        summary = json.loads(marker.read_text(encoding="utf-8"))
        for entries in summary["files"].values():
            for e in entries:
                st = (dataset / e["path"]).stat()
                kept[str((dataset / e["path"]).relative_to(out))] = (st.st_ino, st.st_mtime_ns)
    return kept


def tmpdir_leftovers(tmp: Path) -> list[str]:
    """What a run left in its TMPDIR (the progress bar's folder, Beam's temp folder)."""
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def digest(out: Path) -> dict[str, Any]:
    """Every visible file below ``out``: manifests as JSON minus timestamps, others by sha256.

    ``out``'s own path is replaced by ``<OUT>`` in JSON files (``run.json`` records argv).
    """
    result: dict[str, Any] = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or not _visible(p, out):
            continue
        rel = str(p.relative_to(out))
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8").replace(str(out), "<OUT>"))
            result[rel] = without_timestamps(data) if p.name == "manifest.json" else data
        else:
            result[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return result


def _diff(expected: dict[str, Any], got: dict[str, Any]) -> str:
    lines = []
    for k in sorted(set(expected) | set(got)):
        if k not in got:
            lines.append(f"  missing  {k}")
        elif k not in expected:
            lines.append(f"  extra    {k}")
        elif expected[k] != got[k]:
            e, g = expected[k], got[k]
            if isinstance(e, dict) and isinstance(g, dict):
                keys = sorted(x for x in set(e) | set(g) if e.get(x) != g.get(x))
                lines.append(f"  differs  {k}: keys {keys}")
            else:
                lines.append(f"  differs  {k}")
    return "\n".join(lines)


def verify_datasets(out: Path, tmp: Path) -> None:
    """``corpus-pipeline verify`` on every dataset folder below ``out`` (exit 0 asserted)."""
    datasets = sorted(
        p.parent
        for p in out.rglob("manifest.json")
        if json.loads(p.read_text(encoding="utf-8")).get("kind") != "documents"
    )
    assert datasets, f"{out}: no dataset to verify"
    for ds in datasets:
        run_to_end(cli("verify", ds), tmp)


def kill_then_finish(
    make_cmd: Callable[[Path], Sequence[str]],
    ref: Reference,
    out: Path,
    tmp: Path,
    *,
    seed: int,
    kills: int,
) -> list[Kill]:
    """Kill ``make_cmd(out)`` ``kills`` times in a row on ``out``, then run it to the end.

    Asserts the final output equals ``ref.out``'s, has no stray files and verifies. Returns
    the log of kills (also part of every assertion message, and printed: ``pytest -s``).
    """
    log = kill_loop(make_cmd, ref, out, tmp, random.Random(seed), kills)
    kept = kept_files(out)
    final_tmp = tmp / "tmpdir"
    left_by_kills = tmpdir_leftovers(final_tmp)
    run_to_end(make_cmd(out), final_tmp)

    story = (
        f"seed {seed} (the same seed draws the same kill points), reference run "
        f"{ref.seconds:.1f} s, shard writing {ref.write_window[0]:.1f}-{ref.write_window[1]:.1f} s;"
        " kills:\n" + "\n".join(f"  {k}" for k in log)
    )
    print(story, f"\n  the final run kept {len(kept)} files of finished shards")
    expected, got = digest(ref.out), digest(out)
    assert got == expected, (
        f"output differs from the uninterrupted run:\n{_diff(expected, got)}\n{story}"
    )
    rewritten = sorted(
        rel
        for rel, st in kept.items()
        if ((p := out / rel).stat().st_ino, p.stat().st_mtime_ns) != st
    )
    assert rewritten == [], f"finished shards written again by the final run: {rewritten}\n{story}"
    assert strays(out) == [], f"stray files after the final run: {strays(out)}\n{story}"
    assert tmpdir_leftovers(final_tmp) == [], (
        f"TMPDIR after the final run: {tmpdir_leftovers(final_tmp)} (the killed runs had left "
        f"{left_by_kills})\n{story}"
    )
    verify_datasets(out, tmp / "verify")
    return log
