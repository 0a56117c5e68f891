"""The tool adapter checks against the SomaGent stand-ins (tools API and GitHub) in-process."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from somactl.checks.base import Status
from somactl.checks.tools import health_check, rate_limit_check, recent_check
from somactl.core.deadline import Deadline
from somactl.core.errors import PermissionDeniedError, UnreachableError
from somactl.lab.services import ServicesHandle
from tests.checks.conftest import GITHUB_TOKEN

ADAPTERS = ["github", "notion", "slack", "jira"]
SERVICES = {"github", "notion", "slack", "jira", "tool-service"}
SENTINEL = "ghp_s3ntinelTokenNeverPrinted0042"


def test_healthy_adapters(services: ServicesHandle) -> None:
    services.tools.tick(120)
    h = health_check(services.url("tools"), ADAPTERS, Deadline(10), services=SERVICES)
    assert h.status is Status.ok
    assert h.summary == "github, notion, slack, jira healthy"
    assert h.signals == {"adapters_failing": 0, "adapters_rate_limited": 0}
    assert [a["breaker"] for a in h.evidence["adapters"]] == ["closed"] * 4
    r = recent_check(services.url("tools"), Deadline(10), limit=50)
    assert r.status is Status.ok
    assert r.evidence["invocations"] == 50
    assert r.signals == {"adapter_failure_ratio": 0.0}


def test_a_failing_adapter_is_down_and_its_workflows_counted(services: ServicesHandle) -> None:
    services.tools.fail("notion", 0.9, None)
    for _ in range(60):  # interleaved, as workflows call them
        services.tools.tick(5)
    h = health_check(services.url("tools"), ADAPTERS, Deadline(10), services=SERVICES)
    assert h.status is Status.critical
    assert h.summary.startswith("notion down (")
    assert h.signals["adapters_failing"] == 1
    assert h.signals["service_down"] == ["notion"]
    assert h.facts["failing_adapters"] == ["notion"]
    r = recent_check(services.url("tools"), Deadline(10), limit=200)
    assert r.evidence["per_tool"]["notion"]["failures"] > 0
    assert "github" not in {e["error"].split(":")[0] for e in r.evidence["top_errors"]}
    assert 0 < r.signals["adapter_failure_ratio"] <= 1
    only = recent_check(services.url("tools"), Deadline(10), limit=50, tool="notion")
    assert set(only.evidence["per_tool"]) == {"notion"}
    assert only.status is Status.critical  # 90% of notion's calls fail


def test_an_open_breaker_is_a_warning(services: ServicesHandle) -> None:
    services.tools.set_breaker("slack", True, "test")
    h = health_check(services.url("tools"), ["slack"], Deadline(10))
    assert h.status is Status.warn
    assert h.summary == "slack healthy (breaker open)"
    assert h.facts["open_breakers"] == ["slack"]


def test_an_exhausted_github_limit_names_its_reset_and_never_waits(
    services: ServicesHandle,
) -> None:
    services.github.exhaust("core", 2400)
    r = rate_limit_check(services.url("github"), GITHUB_TOKEN, Deadline(10))
    assert r.status is Status.critical
    assert re.fullmatch(
        r"GitHub rate limit exhausted until \d\d:\d\dZ \(in 39m\d*s?\) \(resource core\)|"
        r"GitHub rate limit exhausted until \d\d:\d\dZ \(in 40m\) \(resource core\)",
        r.summary,
    ), r.summary
    assert r.signals == {"adapters_rate_limited": 1}
    h = health_check(services.url("tools"), ["github"], Deadline(10), services=SERVICES)
    assert h.evidence["adapters"][0]["rate_limit_remaining"] == 0
    assert h.signals == {
        "adapters_failing": 1,
        "adapters_rate_limited": 1,
        "service_down": ["github"],
    }
    assert "rate limited until" in h.summary


def test_the_rate_limit_with_room_left(services: ServicesHandle) -> None:
    r = rate_limit_check(services.url("github"), GITHUB_TOKEN, Deadline(10))
    assert r.status is Status.ok
    assert r.summary.startswith("5000/5000 core requests left, resets ")
    assert {x["resource"] for x in r.evidence["resources"]} >= {"core", "search", "graphql"}
    anon = rate_limit_check(services.url("github"), None, Deadline(10))
    assert anon.summary.endswith("(unauthenticated: set a token for 5,000/h)")


def test_a_rejected_token_is_denied_and_never_shown(services: ServicesHandle) -> None:
    with pytest.raises(PermissionDeniedError) as err:
        rate_limit_check(services.url("github"), SENTINEL, Deadline(10))
    assert err.value.message.startswith("GitHub: HTTP 401")
    assert SENTINEL not in err.value.message + err.value.hint


def test_an_unknown_adapter_is_reported_beside_the_others(services: ServicesHandle) -> None:
    h = health_check(services.url("tools"), ["github", "nope"], Deadline(10))
    assert h.status is Status.warn
    rows = {a["tool"]: a for a in h.evidence["adapters"]}
    assert rows["nope"]["status"] == "error"
    assert "no tool adapter named 'nope'" in rows["nope"]["error"]
    with pytest.raises(UnreachableError):
        health_check("http://127.0.0.1:9", ["github"], Deadline(2))


def test_a_403_rate_limit_exceeded_is_the_exhausted_finding(services: ServicesHandle) -> None:
    """GitHub answering 403 "API rate limit exceeded" (remaining 0) has answered: the limit is
    exhausted until its reset, a critical finding, not a check that could not run."""
    from tests.reliability.httpfault import HttpFault, answer_github_exhausted

    reset = int(time.time()) + 40 * 60
    front = HttpFault(services.url("github"))
    try:
        answer_github_exhausted(front, reset)
        r = rate_limit_check(front.url, GITHUB_TOKEN, Deadline(10))
    finally:
        front.close()
    until = datetime.fromtimestamp(reset, tz=UTC).strftime("%H:%MZ")
    assert r.status is Status.critical
    assert r.summary.startswith(f"GitHub rate limit exhausted until {until} (in "), r.summary
    assert r.summary.endswith(" (resource core)"), r.summary
    assert r.signals == {"adapters_rate_limited": 1}
    assert r.facts == {"github_remaining": 0, "github_reset": reset}
    assert r.evidence["resources"][0]["used"] == 5000
    assert len(front.requests) == 1  # read once, never retried
