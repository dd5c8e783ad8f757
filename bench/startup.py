"""Benchmark: the start-up cost of a verb, ours against a baseline commit, in one run.

What a user pays before any real work: ``corpus-pipeline --help``, ``extract`` and ``run`` on
a one-line book. Each command runs in a fresh child process, once with this checkout and, with
``--base COMMIT``, once with that commit (a ``git worktree``, put first on ``PYTHONPATH``);
its cost is the CPU seconds (user + sys) of the child and everything it started (worker
processes included), from ``resource.getrusage(RUSAGE_CHILDREN)``, the best of ``--repeat``
runs (this machine is shared: the least disturbed run). Then the CPU cost of importing the
heavy libraries alone, for reference. Target: each verb <= 1.2 CPU-s in all.

Usage: ``python bench/startup.py [--base COMMIT] [--repeat 3]``; the README's row was
measured with ``--base e1c0152``. Without ``--base`` only this checkout is measured (no
ratio). The baseline worktree is made in /tmp/wt-startup-COMMIT unless it exists; the main
tree's git state is not touched.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORTS = {
    "python (nothing)": "pass",
    "apache_beam": "import apache_beam",
    "apache_beam + FnApiRunner": "import apache_beam; "
    "import apache_beam.runners.portability.fn_api_runner",
    "numpy": "import numpy",
    "h5py": "import h5py",
    "tokenizers": "import tokenizers",
    "nltk": "import nltk",
    "corpus_pipeline.cli": "import corpus_pipeline.cli",
}


def child_cpu(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """(CPU seconds of the child and its descendants, wall seconds, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)} failed:\n{proc.stderr[-1500:]}\n")
    return cpu, wall, proc.returncode


def ensure_worktree(commit: str) -> Path:
    """The baseline checkout at ``commit`` (``git worktree add --detach``; kept between runs)."""
    full = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if full.returncode != 0:
        sys.exit(f"--base {commit}: not a commit of {ROOT}; give a commit (e.g. e1c0152)")
    commit = full.stdout.strip()
    worktree = Path(tempfile.gettempdir()) / f"wt-startup-{commit[:12]}"
    if not (worktree / "corpus_pipeline").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), commit],
            check=True,
            capture_output=True,
        )
    head = subprocess.run(
        ["git", "-C", str(worktree), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    if head != commit:
        sys.exit(f"{worktree} is at {head}, not {commit}: remove it (git worktree remove)")
    return worktree


def env_for(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m corpus_pipeline`` import ``tree``'s code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env.pop("CORPUS_PIPELINE_QUIET", None)
    # An installed package runs from compiled bytecode (pip compiles it; a checkout writes
    # __pycache__ on its first run). With PYTHONDONTWRITEBYTECODE set (as on CI machines),
    # every run would compile the ~60 modules of a verb again: ~0.15 CPU-s no user pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def which_tree(env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import corpus_pipeline; print(corpus_pipeline.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--base",
        metavar="COMMIT",
        help="also measure this commit and print ours/its ratio (the README used e1c0152)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    trees = {"baseline": ensure_worktree(args.base)} if args.base else {}
    trees["ours"] = ROOT
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    books = work / "books"
    books.mkdir()
    (books / "one.txt").write_text("The quick brown fox jumps over the lazy dog. It was fast.\n")
    for name, tree in trees.items():
        where = which_tree(env_for(tree), work)
        if not where.startswith(str(tree)):
            sys.exit(f"{name}: corpus_pipeline imports from {where}, not {tree}")

    cli = [sys.executable, "-m", "corpus_pipeline"]
    verbs = {
        "--help": lambda out: [*cli, "--help"],
        "extract (1-line book)": lambda out: [*cli, "extract", "--books", books, "--output", out],
        "run (1-line book)": lambda out: [*cli, "run", "--books", books, "--output", out],
    }
    print(f"start-up cost, CPU-s of the child and its workers, best of {args.repeat}")
    if args.base:
        print(f"baseline {args.base} vs this checkout; {os.cpu_count()} cores")
        print(f"{'command':<24}{'baseline':>10}{'ours':>10}{'ratio':>8}{'ours wall':>11}")
    else:
        print(
            f"this checkout only (no --base COMMIT: no baseline, no ratio); {os.cpu_count()} cores"
        )
        print(f"{'command':<24}{'ours':>10}{'ours wall':>11}")
    n = 0
    for label, make in verbs.items():
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, tree in trees.items():  # interleaved: the same load for both
                n += 1
                cmd = [str(a) for a in make(work / f"out{n}")]
                cpu, wall, rc = child_cpu(cmd, env_for(tree), work)
                if rc != 0:
                    sys.exit(1)
                old = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(old[0], cpu), min(old[1], wall))
        o, wall = best["ours"]
        if "baseline" in best:
            b = best["baseline"][0]
            print(f"{label:<24}{b:>9.2f}s{o:>9.2f}s{b / o:>7.1f}x{wall:>10.2f}s")
        else:
            print(f"{label:<24}{o:>9.2f}s{wall:>10.2f}s")

    print("\nimport cost alone, CPU-s (best of the same repeats)")
    for label, code in IMPORTS.items():
        cpu = min(
            child_cpu([sys.executable, "-c", code], env_for(ROOT), work)[0]
            for _ in range(args.repeat)
        )
        print(f"  {label:<28}{cpu:>6.2f}s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
