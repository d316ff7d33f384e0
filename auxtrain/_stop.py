"""Ctrl-C during training: the first press asks the loop to stop after the current step and save a
resumable checkpoint; the second one aborts at once."""

from __future__ import annotations

import signal

__all__ = ["StopFlag"]


class StopFlag:
    """First Ctrl-C asks the loop to stop after the current step (and save); the second one aborts."""

    def __init__(self, enabled: bool):
        self.requested, self._previous = False, None
        if enabled:
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
            except ValueError:  # not in the main thread: leave Ctrl-C alone
                self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
