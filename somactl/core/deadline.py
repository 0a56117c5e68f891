"""One absolute deadline per command: every network call takes its timeout from what is left."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MIN_CALL_TIMEOUT = 0.05


@dataclass
class Deadline:
    seconds: float
    start: float = field(default_factory=time.monotonic)

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def timeout(self, cap: float | None = None) -> float:
        """The timeout for the next call: what is left, at most `cap`, never zero."""
        left = self.remaining()
        if cap is not None:
            left = min(left, cap)
        return max(MIN_CALL_TIMEOUT, left)
