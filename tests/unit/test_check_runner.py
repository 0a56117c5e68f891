from __future__ import annotations

import socket
import threading
import time

from somactl.checks.base import Check, CheckResult, Status, run_checks, worst
from somactl.core.deadline import Deadline
from somactl.core.errors import UnreachableError


def _ok(deadline: Deadline) -> CheckResult:
    return CheckResult("a", "A", "x", Status.ok, "fine")


def _denied(deadline: Deadline) -> CheckResult:
    raise UnreachableError("postgres: no response within 1s (u@h:1/db)")


def _crash(deadline: Deadline) -> CheckResult:
    raise ValueError("bug")


def test_blackholed_check_is_abandoned_at_the_deadline_and_others_reported() -> None:
    # A real blackhole: a listening socket that never accepts, with a full backlog.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    release = threading.Event()

    def _hang(deadline: Deadline) -> CheckResult:
        conn = socket.create_connection(srv.getsockname(), timeout=30)
        conn.recv(1)  # never answered
        release.wait()
        return CheckResult("hang", "H", "y", Status.ok, "never")

    seen: list[str] = []
    t0 = time.monotonic()
    results = run_checks(
        [
            Check("a", "A", "x", _ok),
            Check("hang", "H", "y", _hang),
            Check("denied", "D", "pg", _denied),
            Check("crash", "C", "z", _crash),
        ],
        Deadline(0.5),
        on_result=lambda r: seen.append(r.id),
    )
    elapsed = time.monotonic() - t0
    release.set()
    srv.close()
    assert elapsed < 0.5 + 0.2
    by_id = {r.id: r for r in results}
    assert [r.id for r in results] == ["a", "hang", "denied", "crash"]
    assert by_id["a"].status is Status.ok
    assert by_id["hang"].status is Status.unknown
    assert by_id["hang"].summary == "no answer within the 0.5s deadline"
    assert by_id["denied"].status is Status.unknown
    assert "no response within 1s" in by_id["denied"].summary
    assert by_id["crash"].summary == "check failed: ValueError: bug"
    assert sorted(seen) == ["a", "crash", "denied", "hang"]
    assert seen[-1] == "hang"


def test_worst_orders_statuses() -> None:
    assert worst([Status.ok, Status.unknown]) is Status.unknown
    assert worst([Status.warn, Status.unknown, Status.ok]) is Status.warn
    assert worst([Status.warn, Status.critical]) is Status.critical
    assert worst([]) is Status.ok
