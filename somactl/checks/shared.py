"""Work that several concurrent checks share: one connection, one listing, computed once.

Checks run in threads under one deadline. When three Postgres checks need a connection, opening
three would cost three handshakes (and three slots of a pool that may be exhausted: the very
thing being diagnosed); when the pods check and the logs check both need the pod list, listing
5,000 pods twice would double the cost. `Memo` computes each value once; the other threads wait
for it, and an error is remembered and raised to every caller, so one unreachable backend is
one timeout, not one per check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class _Slot:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Memo:
    """key -> value, computed at most once; concurrent callers wait for the first one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            slot = self._slots.get(key)
            owner = slot is None
            if slot is None:
                slot = self._slots[key] = _Slot()
        if owner:
            try:
                slot.value = compute()
            except BaseException as exc:
                slot.error = exc
                raise
            finally:
                slot.done.set()
            return slot.value  # type: ignore[no-any-return]
        # A waiter has no deadline of its own here: the check runner abandons it at the
        # command's deadline, like the owner blocked in its network call.
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value  # type: ignore[no-any-return]

    def peek(self, key: Hashable) -> Any:
        """The value if it was computed successfully, else None (never waits)."""
        with self._lock:
            slot = self._slots.get(key)
        if slot is None or not slot.done.is_set() or slot.error is not None:
            return None
        return slot.value
