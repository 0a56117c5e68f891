"""`mitigate circuit-breaker` against the lab's tools API (reliability cases 25, 26)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import somactl.ui.actions as ui_actions
from somactl.lab.services import ServicesHandle, start_services
from tests.mitigate.conftest import Env, Run, set_env


@pytest.fixture
def tools(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    handle: ServicesHandle = start_services(kube_api=None, seed=3)
    url = handle.url("tools")
    set_env(env, monkeypatch, SOMACTL_TOOLS_URL=url)
    try:
        yield url
    finally:
        handle.stop()


def breaker(url: str, tool: str = "github") -> str:
    return str(httpx.get(f"{url}/tools/{tool}/circuit-breaker", timeout=5).json()["state"])


def fault_after_plan(
    monkeypatch: pytest.MonkeyPatch, url: str, count: int, retry_after: int
) -> None:
    """Arm the tools API's fault mode once the plan is shown: the next `count` requests get a
    503 with Retry-After (the adapter starts failing while the person reads the plan)."""
    real = ui_actions.require_consent

    def consent(*a: Any, **k: Any) -> str:
        resp = httpx.post(
            f"{url}/_lab/fault",
            json={"count": count, "status": 503, "retry_after": retry_after},
            timeout=5,
        )
        assert resp.status_code == 200
        return real(*a, **k)

    monkeypatch.setattr(ui_actions, "require_consent", consent)


def test_enable_then_disable_and_noop(tools: str, env: Env, cli: Callable[..., Run]) -> None:
    assert breaker(tools) == "closed"
    dry = cli("mitigate", "circuit-breaker", "enable", "github", "--dry-run")
    assert dry.rc == 0 and "closed → open" in dry.out
    assert breaker(tools) == "closed"
    on = cli("mitigate", "circuit-breaker", "enable", "github", "--yes", "--verify", "5s")
    assert on.rc == 0, on.err
    assert "CONTAINED: breaker closed → open" in on.out  # the adapter is still failing
    assert "still there: calls to github fail fast while the breaker is open" in on.out
    assert breaker(tools) == "open"
    again = cli("mitigate", "circuit-breaker", "enable", "github", "--yes")
    assert again.rc == 0 and "already open" in again.out
    off = cli("mitigate", "circuit-breaker", "disable", "github", "--yes", "--verify", "0")
    assert off.rc == 0 and breaker(tools) == "closed"


def test_unknown_tool_and_verb_are_usage_errors(
    tools: str, env: Env, cli: Callable[..., Run]
) -> None:
    assert cli("mitigate", "circuit-breaker", "enable", "gitlab", "--yes").rc == 2
    assert cli("mitigate", "circuit-breaker", "toggle", "github", "--yes").rc == 2


def test_case25_one_bounded_retry_honouring_retry_after(
    tools: str, env: Env, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_after_plan(monkeypatch, tools, count=1, retry_after=2)
    started = time.monotonic()
    r = cli("mitigate", "circuit-breaker", "enable", "github", "--yes", "--verify", "0")
    elapsed = time.monotonic() - started
    assert r.rc == 0, r.err
    assert elapsed >= 2.0  # it waited for Retry-After, no tight loop
    assert breaker(tools) == "open"
    result = next(x for x in env.records("mitigate.circuit-breaker") if x["phase"] == "result")
    assert result["outcome"] == "ok" and result["details"]["attempts"] == 2


def test_case26_503_forever_gives_up_after_3_attempts_and_rereads_the_state(
    tools: str, env: Env, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_after_plan(monkeypatch, tools, count=3, retry_after=1)
    r = cli("mitigate", "circuit-breaker", "enable", "github", "--yes", "--verify", "0")
    assert r.rc == 6, (r.out, r.err)
    assert "tools API: HTTP 503 after 3 attempts (last Retry-After 1s)" in r.err
    assert "breaker state re-read: closed (unchanged)" in r.err
    assert breaker(tools) == "closed"
    fault = httpx.get(f"{tools}/_lab/fault", timeout=5).json()
    assert fault["served"] == 3  # exactly three attempts reached the adapter
    result = next(x for x in env.records("mitigate.circuit-breaker") if x["phase"] == "result")
    assert result["outcome"] == "failed"
    assert result["details"]["state_after"]["state"] == "closed"
