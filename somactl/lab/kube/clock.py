"""The simulator's time: a clock tests drive with tick() and a live process follows the wall."""

from __future__ import annotations

import threading
import time


class Clock:
    """Simulated UNIX time. It only moves when told to (tick/advance), so tests are exact."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += max(0.0, seconds)
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = when
