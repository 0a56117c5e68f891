"""The tools API contract (the runbook's port-8003 endpoints) over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from somactl.lab.services import ServicesHandle, start_services
from somactl.lab.services.exposition import parse_exposition
from tests.helpers import wait_until

ADAPTERS = ("github", "notion", "slack", "jira")
INVOCATION_FIELDS = {"id", "tool", "workflow_id", "status", "duration_ms", "error", "timestamp"}


@pytest.fixture
def tools() -> Iterator[ServicesHandle]:
    """No Kubernetes needed; the generator is paused so each test drives the invocations."""
    handle = start_services(kube_api=None, services=(), seed=3)
    handle.tools.generator_enabled = False
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def api(tools: ServicesHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tools.url("tools"), timeout=5.0) as c:
        yield c


def invoke(api: httpx.Client, tool: str | None, count: int) -> list[dict[str, Any]]:
    resp = api.post("/_lab/tools/invoke", json={"tool": tool, "count": count})
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()
    return data


def test_health_of_every_adapter(api: httpx.Client) -> None:
    for tool in ADAPTERS:
        resp = api.get(f"/tools/{tool}/health")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["tool"] == tool
        assert body["status"] == "healthy"
        assert isinstance(body["latency_ms"], float) and body["latency_ms"] > 0
        assert body["last_error"] is None
        assert body["circuit_breaker"] == "closed"
    assert api.get("/tools/github/health").json()["rate_limit"]["limit"] == 5000


def test_unknown_tool_is_a_404_json_error(api: httpx.Client) -> None:
    for path in ("/tools/gitlab/health", "/tools/gitlab/circuit-breaker"):
        resp = api.get(path)
        assert resp.status_code == 404
        assert "gitlab" in resp.json()["error"]
        assert resp.json()["tools"] == sorted(ADAPTERS)
    assert api.post("/tools/gitlab/circuit-breaker/enable").status_code == 404
    assert api.get("/tools/recent", params={"tool": "gitlab"}).status_code == 404


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "", "2.5"])
def test_recent_limit_out_of_range_is_a_400(api: httpx.Client, limit: str) -> None:
    resp = api.get("/tools/recent", params={"limit": limit})
    assert resp.status_code == 400
    assert "limit" in resp.json()["error"]


def test_recent_returns_newest_first_within_limit(api: httpx.Client) -> None:
    assert api.get("/tools/recent?limit=1000").json() == []
    made = invoke(api, None, 60)
    got = api.get("/tools/recent", params={"limit": 50}).json()
    assert len(got) == 50
    assert [i["id"] for i in got] == [i["id"] for i in reversed(made)][:50]
    for inv in got:
        assert set(inv) >= INVOCATION_FIELDS
        assert inv["status"] in ("success", "failure", "rate_limited")
        assert inv["tool"] in ADAPTERS
        assert inv["timestamp"].endswith("Z")
    assert len(api.get("/tools/recent").json()) == 50  # the runbook's default
    assert len(api.get("/tools/recent?limit=1").json()) == 1
    only = api.get("/tools/recent", params={"limit": 1000, "tool": "slack"}).json()
    assert len(only) == 15 and {i["tool"] for i in only} == {"slack"}


def test_generator_records_invocations_in_the_background(
    tools: ServicesHandle, api: httpx.Client
) -> None:
    api.post("/_lab/generator", json={"enabled": True, "rate_scale": 100}).raise_for_status()
    got = wait_until(
        lambda: len(api.get("/tools/recent?limit=100").json()) >= 20,
        message="20 generated invocations",
    )
    assert got
    assert api.post("/_lab/generator", json={"rate_scale": -1}).status_code == 400


def test_circuit_breaker_toggles_and_short_circuits(api: httpx.Client) -> None:
    closed = api.get("/tools/github/circuit-breaker").json()
    assert closed["tool"] == "github" and closed["state"] == "closed"
    assert set(closed) == {"tool", "state", "since", "reason"}
    resp = api.post("/tools/github/circuit-breaker/enable")
    assert resp.status_code == 200
    opened = resp.json()
    assert opened["state"] == "open" and opened["since"] >= closed["since"]
    assert opened["reason"]
    assert api.get("/tools/github/circuit-breaker").json() == opened
    assert api.post("/tools/github/circuit-breaker/enable").json()["since"] == opened["since"]
    used_before = api.get("/tools/github/health").json()["rate_limit"]["used"]
    calls = invoke(api, "github", 5)
    assert all(c["status"] == "failure" and c["short_circuited"] for c in calls)
    assert all("circuit breaker open" in c["error"] for c in calls)
    # short-circuited calls never reach GitHub
    assert api.get("/tools/github/health").json()["rate_limit"]["used"] == used_before
    assert api.get("/tools/github/health").json()["circuit_breaker"] == "open"
    assert all(c["status"] == "success" for c in invoke(api, "notion", 3))
    closed = api.post(
        "/tools/github/circuit-breaker/disable", json={"reason": "rate limit reset"}
    ).json()
    assert closed["state"] == "closed" and closed["reason"] == "rate limit reset"
    assert all(c["status"] == "success" for c in invoke(api, "github", 3))
    assert api.get("/tools/github/circuit-breaker/enable").status_code == 405


def test_failing_adapter_goes_down_and_recovers(api: httpx.Client) -> None:
    resp = api.post("/_lab/tools/notion/fail", json={"error_rate": 1.0})
    assert resp.status_code == 200
    calls = invoke(api, "notion", 10)
    assert {c["status"] for c in calls} == {"failure"}
    health = api.get("/tools/notion/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "down" and body["error_rate"] == 1.0
    assert "notion" in body["last_error"]
    api.post("/_lab/tools/jira/fail", json={"error_rate": 0.2}).raise_for_status()
    assert api.get("/tools/jira/health").json()["status"] == "degraded"
    api.post("/_lab/tools/notion/recover").raise_for_status()
    assert api.get("/tools/notion/health").status_code == 200
    assert {c["status"] for c in invoke(api, "notion", 10)} == {"success"}
    assert api.post("/_lab/tools/notion/fail", json={"error_rate": 2}).status_code == 400


def test_more_than_half_the_adapters_failing(api: httpx.Client) -> None:
    for tool in ("github", "notion", "slack"):
        api.post(f"/_lab/tools/{tool}/fail", json={"error_rate": 0.9}).raise_for_status()
    statuses = {t["tool"]: t["status"] for t in api.get("/tools").json()["tools"]}
    assert statuses == {"github": "down", "notion": "down", "slack": "down", "jira": "healthy"}
    api.post("/_lab/reset").raise_for_status()
    assert {t["status"] for t in api.get("/tools").json()["tools"]} == {"healthy"}


def test_github_adapter_follows_the_github_stand_in(
    tools: ServicesHandle, api: httpx.Client
) -> None:
    before = invoke(api, "github", 3)
    assert {c["status"] for c in before} == {"success"}
    assert tools.github.bucket_json("authenticated", "core")["used"] == 3
    resp = api.post("/_lab/tools/github/rate-limit", json={"reset_in_minutes": 30})
    assert resp.status_code == 200
    gh = httpx.get(
        f"{tools.url('github')}/rate_limit", headers={"Authorization": "token anything"}
    ).json()
    assert gh["resources"]["core"]["remaining"] == 0
    calls = invoke(api, "github", 4)
    assert {c["status"] for c in calls} == {"rate_limited"}
    assert "rate limit exceeded" in calls[0]["error"]
    health = api.get("/tools/github/health")
    assert health.status_code == 503
    assert health.json()["rate_limit"]["remaining"] == 0
    api.post("/_lab/tools/github/recover").raise_for_status()
    assert api.get("/tools/github/health").json()["status"] == "healthy"
    # other adapters get a provider-style 429 of their own
    api.post("/_lab/tools/slack/rate-limit", json={"reset_in_minutes": 1}).raise_for_status()
    slack = invoke(api, "slack", 2)
    assert {c["status"] for c in slack} == {"rate_limited"} and "429" in slack[0]["error"]


def test_exhausting_the_github_stand_in_rate_limits_the_adapter(
    tools: ServicesHandle, api: httpx.Client
) -> None:
    httpx.post(
        f"{tools.url('github')}/_lab/exhaust", json={"reset_in_minutes": 10}
    ).raise_for_status()
    assert api.get("/tools/github/health").json()["status"] == "down"
    assert invoke(api, "github", 1)[0]["status"] == "rate_limited"


def test_retry_after_fault_mode(api: httpx.Client) -> None:
    resp = api.post("/_lab/fault", json={"count": 2, "retry_after": 2})
    assert resp.status_code == 200 and resp.json()["remaining"] == 2
    for _ in range(2):
        r = api.get("/tools/github/health")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
    # /_lab/ is never faulted, and the fault was used up
    assert api.get("/_lab/fault").json() == {
        "remaining": 0,
        "status": 503,
        "retry_after": 2,
        "served": 2,
    }
    assert api.get("/tools/github/health").status_code == 200
    assert api.post("/_lab/fault", json={"count": -1}).status_code == 400
    # `lab heal` posts /_lab/reset, which also disarms a pending fault
    api.post("/_lab/fault", json={"count": 5}).raise_for_status()
    api.post("/_lab/reset").raise_for_status()
    assert api.get("/_lab/fault").json()["remaining"] == 0


def test_tool_service_metrics(api: httpx.Client) -> None:
    api.post("/_lab/tools/jira/fail", json={"error_rate": 1.0}).raise_for_status()
    invoke(api, "jira", 4)
    invoke(api, "slack", 6)
    samples = parse_exposition(api.get("/metrics").text)
    calls = {(lbl["tool"], lbl["status"]): v for lbl, v in samples["tool_invocations_total"]}
    assert calls[("jira", "failure")] == 4 and calls[("slack", "success")] == 6
    http = {lbl["status"]: v for lbl, v in samples["http_requests_total"]}
    assert http["502"] == 4 and http["200"] == 6
    up = {lbl["tool"]: v for lbl, v in samples["tool_adapter_up"]}
    assert up["jira"] == 0 and up["slack"] == 1
