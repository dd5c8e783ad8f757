"""Small helpers shared by the bench scripts: timing, child-process memory, inputs, tables.

Nothing here asserts a timing: the scripts print numbers and ratios against baselines measured
in the same run. This machine is shared, so every timing is kept as both process CPU time
(which other jobs do not inflate) and wall time, and the best of several runs is reported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from corpus_pipeline.testing.procmem import watch_tree

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"  # git-ignored; bench/extract.py keeps its dumps here too

# Sources of the extract verb's output: the cached documents are rebuilt when one changes.
_EXTRACT_SOURCES = (
    "corpus_pipeline/sources/wikipedia_records.py",
    "corpus_pipeline/sources/wikipedia_plan.py",
    "corpus_pipeline/sources/wikipedia_inflate.py",
    "corpus_pipeline/sources/wikipedia_pages.py",
    "corpus_pipeline/sources/wikipedia_page_xml.py",
    "corpus_pipeline/sources/wikipedia_shares.py",
    "corpus_pipeline/sources/wikipedia_guards.py",
    "corpus_pipeline/sources/wikipedia_clean.py",
    "corpus_pipeline/sources/wikipedia_site.py",
    "corpus_pipeline/sources/wikipedia_fastclean.py",
    "corpus_pipeline/sources/bz2_blocks.py",
    "corpus_pipeline/sources/article_filter.py",
    "corpus_pipeline/data/wiki_magic_words.json",
    "corpus_pipeline/stages/sentences.py",
    "corpus_pipeline/stages/punkt.py",
    "corpus_pipeline/beam/extract.py",
    "corpus_pipeline/beam/extract_plan.py",
    "corpus_pipeline/beam/extract_read.py",
    "corpus_pipeline/commands/extract.py",
    "corpus_pipeline/formats/documents.py",
)


# ---------------------------------------------------------------- timing


class Best:
    """The lowest CPU and wall seconds seen over repeats (the least disturbed run)."""

    def __init__(self) -> None:
        self.cpu = float("inf")
        self.wall = float("inf")

    def add(self, cpu: float, wall: float) -> None:
        """Record one run."""
        self.cpu = min(self.cpu, cpu)
        self.wall = min(self.wall, wall)


@contextmanager
def timed(best: Best) -> Iterator[None]:
    """Time the block with this process's CPU time and wall time into ``best``."""
    c0, w0 = time.process_time(), time.perf_counter()
    yield
    best.add(time.process_time() - c0, time.perf_counter() - w0)


# ---------------------------------------------------------------- child processes


@dataclass
class ProcRun:
    """One measured command.

    Attributes:
        wall: Seconds from start to exit.
        cpu: User + system seconds of the command and every descendant it waited for
            (``os.wait4`` rusage).
        tree_rss_mb: Peak of the summed RSS of the whole process tree (the command and all its
            live descendants), sampled from ``/proc`` every ``interval`` seconds. Pages shared
            between processes (libraries, copy-on-write) count once per process, so this is an
            upper bound on the tree's physical memory.
        max_proc_rss_mb: The largest peak RSS of any single process of the tree (``VmHWM``,
            sampled; not ``ru_maxrss``, which a child inherits from this process across exec).
        samples: Number of ``/proc`` samples taken.
        stdout: The command's standard output.
    """

    wall: float
    cpu: float
    tree_rss_mb: float
    max_proc_rss_mb: float
    samples: int
    stdout: str


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, interval: float = 0.1
) -> ProcRun:
    """Run ``cmd`` to completion, measuring time, CPU and the process tree's peak memory.

    Raises:
        SystemExit: The command failed (its stderr's last non-INFO lines are printed).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        with watch_tree(proc.pid, interval) as peak:
            # wait4 rather than Popen.wait: its rusage is the child's, descendants included.
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            err.seek(0)
            lines = [
                ln
                for ln in err.read().decode("utf-8", "replace").splitlines()
                if not ln.startswith("INFO")
            ]
            print("\n".join(lines[-20:]), file=sys.stderr)
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return ProcRun(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        tree_rss_mb=peak.tree_mib,
        max_proc_rss_mb=peak.max_proc_mib,
        samples=peak.samples,
        stdout=stdout,
    )


def cli(*args: str) -> list[str]:
    """The ``corpus-pipeline`` console script of this interpreter's environment + ``args``."""
    script = Path(sys.executable).parent / "corpus-pipeline"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "corpus_pipeline", *args]


def child_env(drop: Sequence[str] = ("RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS")) -> dict[str, str]:
    """This process's environment without variables a bench set for itself."""
    return {k: v for k, v in os.environ.items() if k not in drop}


# ---------------------------------------------------------------- inputs


def extracted_excerpt(fresh: bool = False) -> Path:
    """The bundled enwiki excerpt run through ``corpus-pipeline extract`` (text format).

    Cached in ``.bench/``; rebuilt when the dump or the extract code changes, or ``fresh``.
    Returns the documents folder (``wiki_*.txt`` + ``manifest.json``).
    """
    from corpus_pipeline.resources import SAMPLE_WIKI_DUMP

    h = hashlib.sha256(SAMPLE_WIKI_DUMP.read_bytes())
    for rel in _EXTRACT_SOURCES:
        p = ROOT / rel
        h.update(p.read_bytes() if p.exists() else b"")
    key = h.hexdigest()[:16]
    out = CACHE / f"wiki-excerpt-docs-{key}"
    if fresh or not (out / "manifest.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        CACHE.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="docs-", dir=CACHE))
        r = run_measured(
            cli("extract", "--input", str(SAMPLE_WIKI_DUMP), "--output", str(tmp / "docs")),
            env=child_env(),
        )
        os.replace(tmp / "docs", out)
        tmp.rmdir()
        print(f"(extracted the bundled excerpt in {r.wall:.1f} s -> {out.relative_to(ROOT)})")
    return out


def document_files(docs: Path) -> list[Path]:
    """The document files of an extract output folder, sorted."""
    return sorted(p for p in docs.iterdir() if p.suffix in (".txt", ".jsonl"))


def dir_bytes(paths: Sequence[Path]) -> int:
    """Total size of ``paths``."""
    return sum(p.stat().st_size for p in paths)


# ---------------------------------------------------------------- output


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> None:
    """An aligned text table: text left-aligned, numbers right-aligned, ``None`` as ``-``."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(vals: Sequence[str]) -> str:
        return (
            indent
            + "  ".join(
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(vals, widths, numeric, strict=True)
            ).rstrip()
        )

    print(line(list(headers)))
    print(indent + "  ".join("-" * w for w in widths))
    for r in cells:
        print(line(r))


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        return f"{v:.2f}"
    return str(v)
