"""The shape every check returns, and the runner that runs them all under one deadline."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from somactl.core.deadline import Deadline
from somactl.core.errors import SomactlError
from somactl.core.exitcodes import ExitCode
from somactl.core.redact import redact


class Status(StrEnum):
    ok = "ok"
    warn = "warn"
    critical = "critical"
    unknown = "unknown"  # the check could not run (unreachable, denied, timed out)


SEVERITY_ORDER = {Status.ok: 0, Status.unknown: 1, Status.warn: 2, Status.critical: 3}


def worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=SEVERITY_ORDER.__getitem__, default=Status.ok)


@dataclass
class CheckResult:
    id: str
    title: str
    backend: str
    status: Status
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    error: str | None = None
    # measured values the severity classifier reads (error_rate, p95_seconds, redis_up, ...)
    signals: dict[str, Any] = field(default_factory=dict)
    # raw material for the evidence bundle (--snapshot): name -> text or JSON-able data
    raw: dict[str, Any] = field(default_factory=dict)
    # what the verdict reasons with besides signals (recent_deploy, crashloop, oom_killed...)
    facts: dict[str, Any] = field(default_factory=dict)
    # the exit code of the error that kept the check from running (6 unreachable, 7 denied...)
    error_code: int | None = None
    # what to do about that error (the somactl error's hint)
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "backend": self.backend,
            "status": str(self.status),
            "summary": self.summary,
            "evidence": self.evidence,
            "duration_ms": round(self.duration * 1000, 1),
            "error": self.error,
            "error_code": self.error_code,
            "hint": self.hint,
            "signals": self.signals,
            "facts": self.facts,
        }


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    backend: str
    func: Callable[[Deadline], CheckResult]
    # where the backend is (host:port, never credentials), for "no answer" messages
    where: str = ""


def _run_one(check: Check, deadline: Deadline) -> CheckResult:
    t0 = time.monotonic()
    try:
        result = check.func(deadline)
    except SomactlError as exc:
        result = CheckResult(
            check.id,
            check.title,
            check.backend,
            Status.unknown,
            f"could not run: {redact(exc.message)}",
            error=redact(exc.message),
            error_code=int(exc.code),
            hint=redact(exc.hint) if exc.hint else None,
        )
    except Exception as exc:  # noqa: BLE001 - one failing check must not hide the others
        msg = redact(f"{type(exc).__name__}: {exc}")
        result = CheckResult(
            check.id,
            check.title,
            check.backend,
            Status.unknown,
            f"check failed: {msg}",
            error=msg,
            error_code=int(ExitCode.FAILED),
        )
    result.duration = time.monotonic() - t0
    # results are filed under the check that produced them, whatever id the function chose
    result.id = check.id
    return result


def run_checks(
    checks: Sequence[Check],
    deadline: Deadline,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run every check concurrently; return by the deadline whatever has finished.

    Threads are daemons and are abandoned at the deadline (a blackholed connect or a dripping
    server cannot be interrupted from outside); the caller must then end the process with
    `os._exit` after flushing (see somactl.__main__), since interpreter shutdown with threads
    blocked in C calls is not safe.
    """
    done: queue.Queue[CheckResult] = queue.Queue()
    for check in checks:
        threading.Thread(
            target=lambda c=check: done.put(_run_one(c, deadline)),
            name=f"check-{check.id}",
            daemon=True,
        ).start()
    results: dict[str, CheckResult] = {}
    while len(results) < len(checks):
        left = deadline.remaining()
        if left <= 0:
            break
        try:
            result = done.get(timeout=left)
        except queue.Empty:
            break
        results[result.id] = result
        if on_result is not None:
            on_result(result)
    for check in checks:
        if check.id not in results:
            late = CheckResult(
                check.id,
                check.title,
                check.backend,
                Status.unknown,
                f"no answer within the {deadline.seconds:g}s deadline",
                error=(
                    f"{check.backend}: no response within {deadline.seconds:g}s"
                    + (f" ({check.where})" if check.where else "")
                ),
                duration=deadline.elapsed(),
                error_code=int(ExitCode.UNREACHABLE),
            )
            results[check.id] = late
            if on_result is not None:
                on_result(late)
    return [results[c.id] for c in checks]


def not_configured(check_id: str, title: str, backend: str, setting: str, env: str) -> Check:
    """A check whose backend has no address in the settings: it says so (unknown, with a hint)."""

    def run(deadline: Deadline) -> CheckResult:
        return CheckResult(
            check_id,
            title,
            backend,
            Status.unknown,
            f"not configured: {setting} is not set",
            error=f"{backend}: {setting} is not set",
            error_code=int(ExitCode.CONFIG),
            hint=f"set it in the context (`somactl config show`), or export {env}",
        )

    return Check(check_id, title, backend, run)


def level_status(level: str) -> Status:
    """A runbook query level (ok/warn/critical) as a check status."""
    return Status(level)
