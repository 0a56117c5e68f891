"""Shared test helpers: deadline-bound waiting, free ports, and "missing service" policy.

With CI=true a missing binary or service is a failure, never a skip (ARCHITECTURE.md, Tests).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

from somactl.lab.runtime.procs import free_port as _free_port

T = TypeVar("T")

__all__ = ["free_port", "in_ci", "missing", "require_binary", "wait_until"]


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (an assertion failure in tests)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    message: str = "condition",
) -> T:
    """Call `predicate` until it returns a truthy value (returned) or `timeout` seconds pass.

    Exceptions from the predicate count as "not yet"; the last one is named in the failure.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: T | None = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except Exception as exc:  # noqa: BLE001  # "not yet"; reported if the deadline passes
            last_error = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = (
                f"; last error: {last_error!r}" if last_error else f"; last value: {last_value!r}"
            )
            raise WaitTimeout(f"{message} not met within {timeout:g}s{detail}")
        time.sleep(min(interval, remaining))


def free_port() -> int:
    """A free port on 127.0.0.1 (bind port 0); never one handed out recently in this process."""
    return _free_port()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """A required binary/service is missing: fail under CI=true, otherwise skip with the reason."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, package: str | None = None) -> str:
    """Absolute path of `name`, or fail (CI=true) / skip naming the Debian package to install."""
    path = (
        shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    )
    if path:
        return path
    hint = f" (apt-get install -y {package})" if package else ""
    missing(f"{name} is not installed{hint}")
