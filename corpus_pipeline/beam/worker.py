"""Entry point of the local Beam worker processes: Beam's SDK harness, quiet on stderr.

``FnApiRunner`` in ``multi_processing`` mode starts ``python -m
apache_beam.runners.worker.sdk_worker_main`` per worker. Before that harness reads its log
level, an import inside Beam logs a warning through ``logging.warning``, which installs a
stderr handler at level NOTSET on the root logger; the harness then sets the root to INFO, so
every worker printed ~20 INFO lines per run (channels opened, harness starting and exiting).
Here a stderr handler at WARNING is installed first, then the harness runs unchanged: its INFO
records still reach the runner through Beam's logging channel, warnings and errors (with their
tracebacks) go to the run's worker log (:data:`LOG_ENV`), which the launcher names in its one
error line when the run fails. :class:`corpus_pipeline.beam.options.LocalRunner` puts
this module in place of Beam's in the worker command line.
"""

from __future__ import annotations

import logging
import os
import sys


class _DropKnownNoise(logging.Filter):
    """Two warnings every local worker prints that say nothing about the run: Beam's
    optional-GCP import (the CLI filters it too) and the missing semi-persistent directory
    (only Dataflow's container provides one; it matters for user-registered schemas)."""

    _NOISE = ("apitools not found", "No semi_persistent_directory found")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self._NOISE)


#: The launcher names a file here; the worker's stderr (log records, tracebacks, anything a
#: library prints) goes there instead of the terminal. See ``runner.run_pipeline``.
LOG_ENV = "CORPUS_PIPELINE_WORKER_LOG"


def main() -> None:
    log = os.environ.get(LOG_ENV)
    if log:
        try:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            pass  # no room for a log: stderr stays the terminal
        else:
            os.dup2(fd, 2)
            os.close(fd)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(_DropKnownNoise())
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logging.getLogger().addHandler(handler)

    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
