"""SIGTERM and Ctrl-C during training: finish the step, checkpoint, exit 143 / 130.

:class:`StopSignals` turns the first SIGTERM or SIGINT into a flag the loop reads after each
step (the loop then checkpoints and raises ``TrainingInterrupted``); a second one interrupts at
once (``KeyboardInterrupt``), for a user who does not want to wait for the step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class StopSignals:
    """Context manager: handlers for SIGTERM and SIGINT while a run trains.

    Only the main thread can install handlers: in another thread (a trainer run from a worker
    thread) signals keep their behaviour and :attr:`received` stays None. The previous
    handlers are put back on exit.

    Attributes:
        received: The first signal received, or None.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for num, old in self._previous.items():
            signal.signal(num, old)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.received is not None:  # a second signal: stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.received = signum
