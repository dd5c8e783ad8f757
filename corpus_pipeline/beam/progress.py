"""The progress bar: worker processes tick a file, the launcher draws a tqdm bar from it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

#: False while :func:`corpus_pipeline.beam.runner.run_pipeline` builds and runs a pipeline for a
#: non-local runner (it sets this flag).
_LOCAL_RUN = True


class Progress:
    """Cross-process progress: workers append ticks to a file, the launcher shows a tqdm bar.

    Works for local runners (workers share the file system). The file is a launcher temp
    path, so it is never sent to other runners' workers: while
    :func:`~corpus_pipeline.beam.runner.run_pipeline` builds and runs a pipeline for a non-local
    runner (:func:`~corpus_pipeline.beam.options.is_local_runner`), a Progress pickles
    as ``Progress(None)``, whose ``tick`` is a no-op (use the runner's own UI there).

    ``scale`` weighs this view's ticks: the steps of one bar tick in their own units (bytes
    read, files encoded, shards written) and :meth:`scaled` turns each into its share of the
    bar's total, so the bar ends at its total whatever the step sizes.
    """

    def __init__(self, path: str | None, scale: float = 1.0) -> None:
        self.path = path
        self.scale = scale

    def __reduce__(self) -> tuple[Any, ...]:
        return (Progress, (self.path if _LOCAL_RUN else None, self.scale))

    def scaled(self, factor: float) -> Progress:
        """The same bar, each tick of the returned view worth ``factor`` of this one's."""
        return Progress(self.path, self.scale * factor)

    def tick(self, n: float = 1) -> None:
        """Record ``n`` finished work units (one short append; atomic for small writes)."""
        if not n or not self.path or not os.path.isdir(os.path.dirname(self.path)):
            return
        with contextlib.suppress(OSError), open(self.path, "a", encoding="ascii") as f:
            f.write(f"{n * self.scale!r}\n")


#: tqdm's line for a bar in percent of the planned work (``progress_bar(percent=True)``).
_PERCENT_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


@contextlib.contextmanager
def progress_bar(
    total: float | None, desc: str, unit: str = "unit", *, percent: bool = False
) -> Iterator[Progress]:
    """Show a tqdm bar fed by ``Progress.tick`` calls from any local worker process.

    Args:
        total: What the ticks add up to when the work is done (its ETA comes from it).
        desc: The bar's name (the verb).
        unit: What a tick counts; ``"B"`` shows bytes with binary prefixes.
        percent: Show only the percentage and ETA (``total`` is then 100: the steps tick
            their share through :meth:`Progress.scaled`).
    """
    tmp = tempfile.mkdtemp(prefix="corpus-pipeline-progress-")
    path = os.path.join(tmp, "ticks")
    Path(path).touch()
    stop = threading.Event()
    # -q sets CORPUS_PIPELINE_QUIET (commands/common.py): no bar; else only on a terminal.
    disable = True if os.environ.get("CORPUS_PIPELINE_QUIET") else None
    extra: dict[str, Any] = {}
    if percent:
        extra["bar_format"] = _PERCENT_FORMAT
    elif unit == "B":
        extra.update(unit_scale=True, unit_divisor=1024)
    bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, **extra)

    def poll() -> None:
        seen = 0.0
        while True:
            final = stop.is_set()  # read once more after the run ends, then stop
            try:
                with open(path, encoding="ascii") as f:
                    done = sum(float(x) for x in f.read().split())
            except (OSError, ValueError):
                done = seen
            if total and total < done <= total * (1 + 1e-9):
                done = total  # the float sum of shares that add up to the total
            if done > seen:
                step = done - seen
                bar.update(int(step) if step.is_integer() else step)  # "3/10", not "3.0/10"
                seen = done
            if final:
                break
            stop.wait(0.5)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield Progress(path)
    finally:
        stop.set()
        t.join(timeout=2)
        bar.close()
        with contextlib.suppress(OSError):
            os.remove(path)
            os.rmdir(tmp)
