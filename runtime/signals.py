"""Two-stage stopping on SIGINT/SIGTERM, shared by deblur-run and deblur-train.

The first signal asks for a clean stop (the caller polls :attr:`StopOnSignal.event` between
units of work: files, frames, training steps); the second raises ``KeyboardInterrupt`` at
once, which unwinds through the atomic writes (they delete their temporary files). A
caller can hold the second stage back while unwinding would be unsafe (a video's encoder
thread still writing), by clearing :attr:`StopOnSignal.interruptible`.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopOnSignal:
    """Context manager installing the two-stage handlers for SIGINT and SIGTERM.

    Handlers can only be set from the main thread: elsewhere (called from a library's
    thread) signals keep their usual effect and :attr:`event` is never set.
    """

    def __init__(self, first_message: str) -> None:
        self.first_message = first_message  # logged at the first signal, after its name
        self.event = threading.Event()
        self.interruptible = threading.Event()
        self.interruptible.set()
        self.signal: signal.Signals | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum)
            self.event.set()
            # While the second signal is held back (a video encoding), offering it would mislead.
            again = " (send it again to stop at once)" if self.interruptible.is_set() else ""
            log.warning("%s: %s%s", self.signal.name, self.first_message, again)
        elif self.interruptible.is_set():
            self.__exit__()
            raise KeyboardInterrupt
        else:
            log.warning("%s: already stopping at the next frame", signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
