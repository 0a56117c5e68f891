"""Tool adapter checks: health per adapter (with circuit-breaker state and provider rate limit),
the failure ratio over recent invocations, and GitHub's rate limit."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from somactl.checks.base import CheckResult, Status
from somactl.core.deadline import Deadline
from somactl.core.durations import human_duration
from somactl.core.errors import SomactlError

FAILING = ("degraded", "down")
RECENT_WARN = 0.1  # share of recent workflows hitting a failing adapter
RECENT_CRITICAL = 0.5  # the runbook's P1 line: ">50% of workflows"
LOW_REMAINING = 0.1  # a rate limit with less than this share left is a warning


def _reset_text(epoch: Any, now: float | None = None) -> str:
    from somactl.clients.github import reset_time

    try:
        left = float(epoch) - (now if now is not None else time.time())
    except (TypeError, ValueError):
        return "?"
    return f"{reset_time(epoch)} (in {human_duration(max(0.0, left))})"


def adapter_row(tool: str, code: int, body: dict[str, Any]) -> dict[str, Any]:
    status = str(body.get("status") or ("down" if code == 503 else f"HTTP {code}"))
    rl = body.get("rate_limit") if isinstance(body.get("rate_limit"), dict) else None
    return {
        "tool": tool,
        "status": status,
        "http": code,
        "latency_ms": body.get("latency_ms"),
        "error_rate": body.get("error_rate"),
        "invocations": body.get("invocations"),
        "breaker": body.get("circuit_breaker"),
        "rate_limit_remaining": None if rl is None else rl.get("remaining"),
        "rate_limit_reset": None if rl is None else rl.get("reset"),
        "last_error": body.get("last_error"),
    }


def health_check(
    tools_url: str,
    adapters: Sequence[str],
    deadline: Deadline,
    *,
    services: Collection[str] = (),
    check_id: str = "tools.health",
) -> CheckResult:
    """GET /tools/<tool>/health (and the breaker when health does not say) for each adapter."""
    from concurrent.futures import ThreadPoolExecutor

    from somactl.clients.http import NO_RETRY
    from somactl.clients.tools import ToolsClient

    client = ToolsClient(tools_url, deadline, read_retry=NO_RETRY)

    def one(tool: str) -> tuple[dict[str, Any], Any, SomactlError | None]:
        try:
            code, body = client.health(tool)
            row = adapter_row(tool, code, body)
            if row["breaker"] is None:
                row["breaker"] = client.breaker(tool).get("state")
        except SomactlError as exc:
            return {"tool": tool, "status": "error", "error": exc.message}, None, exc
        return row, body, None

    # the adapters side by side (each request is its own client, bounded by the deadline):
    # one after another, four adapters behind a slow tools API took 2 s of a 2 s budget
    with ThreadPoolExecutor(max_workers=max(1, len(adapters))) as pool:
        answers = list(pool.map(one, adapters))
    rows: list[dict[str, Any]] = []
    bodies: dict[str, Any] = {}
    errors: list[SomactlError] = []
    for tool, (row, body, exc) in zip(adapters, answers, strict=True):
        rows.append(row)
        if exc is not None:
            errors.append(exc)
        else:
            bodies[tool] = body
    if errors and len(errors) == len(adapters):
        raise errors[0]
    failing = [r for r in rows if r["status"] in FAILING]
    down = [r for r in rows if r["status"] == "down"]
    limited = [r for r in rows if r.get("rate_limit_remaining") == 0]
    open_breakers = [r for r in rows if r.get("breaker") == "open"]
    status = Status.ok
    if down:
        status = Status.critical
    elif failing or open_breakers or errors:
        status = Status.warn
    parts = []
    for r in rows:
        if r["status"] == "healthy" and r.get("breaker") != "open":
            continue
        bits = []
        if r.get("rate_limit_remaining") == 0:
            bits.append(f"rate limited until {_reset_text(r.get('rate_limit_reset'))}")
        elif isinstance(r.get("error_rate"), (int, float)) and r["error_rate"]:
            bits.append(f"{r['error_rate']:.0%} errors")
        if r.get("breaker"):
            bits.append(f"breaker {r['breaker']}")
        parts.append(f"{r['tool']} {r['status']}" + (f" ({', '.join(bits)})" if bits else ""))
    healthy = [r["tool"] for r in rows if r["status"] == "healthy" and r.get("breaker") != "open"]
    if healthy:
        parts.append(f"{', '.join(healthy)} healthy")
    signals: dict[str, Any] = {
        "adapters_failing": len(failing),
        "adapters_rate_limited": len(limited),
    }
    down_services = [r["tool"] for r in down if r["tool"] in services]
    if down_services:
        signals["service_down"] = down_services
    return CheckResult(
        check_id,
        "Tool adapter health",
        "tools-api",
        status,
        "; ".join(parts),
        evidence={"adapters": rows},
        signals=signals,
        facts={
            "failing_adapters": [r["tool"] for r in failing],
            "rate_limited_adapters": [r["tool"] for r in limited],
            "open_breakers": [r["tool"] for r in open_breakers],
        },
        raw={"health.json": bodies},
    )


def failure_stats(invocations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-tool calls and failures, and the share of workflows that hit a failing adapter.
    Calls short-circuited by an open breaker are contained failures: counted apart."""
    per_tool: dict[str, Counter[str]] = {}
    workflows: set[str] = set()
    failing_workflows: set[str] = set()
    errors: Counter[str] = Counter()
    for inv in invocations:
        tool = str(inv.get("tool") or "?")
        c = per_tool.setdefault(tool, Counter())
        c["calls"] += 1
        wf = str(inv.get("workflow_id") or inv.get("id") or len(workflows))
        workflows.add(wf)
        if inv.get("short_circuited"):
            c["short_circuited"] += 1
            continue
        st = str(inv.get("status") or "?")
        if st != "success":
            c["failures"] += 1
            if st == "rate_limited":
                c["rate_limited"] += 1
            failing_workflows.add(wf)
            if inv.get("error"):
                errors[f"{tool}: {inv['error']}"] += 1
    ratio = len(failing_workflows) / len(workflows) if workflows else 0.0
    return {
        "invocations": len(invocations),
        "workflows": len(workflows),
        "failing_workflows": len(failing_workflows),
        "ratio": round(ratio, 4),
        "per_tool": {t: dict(c) for t, c in sorted(per_tool.items())},
        "top_errors": [{"error": e, "count": n} for e, n in errors.most_common(5)],
    }


def recent_check(
    tools_url: str,
    deadline: Deadline,
    *,
    limit: int = 50,
    tool: str | None = None,
    check_id: str = "tools.recent",
) -> CheckResult:
    from somactl.clients.http import NO_RETRY
    from somactl.clients.tools import ToolsClient

    items = ToolsClient(tools_url, deadline, read_retry=NO_RETRY).recent(limit, tool=tool)
    if tool is not None:
        items = [i for i in items if i.get("tool") == tool]
    stats = failure_stats(items)
    ratio = float(stats["ratio"])
    if not items:
        status = Status.ok
        summary = f"no recent invocations{f' of {tool}' if tool else ''}"
    else:
        status = (
            Status.critical
            if ratio > RECENT_CRITICAL
            else Status.warn
            if ratio >= RECENT_WARN
            else Status.ok
        )
        failing_tools = ", ".join(
            f"{t} {c.get('failures', 0)}/{c['calls']}"
            for t, c in stats["per_tool"].items()
            if c.get("failures")
        )
        summary = (
            f"{stats['failing_workflows']}/{stats['workflows']} workflows ({ratio:.0%}) hit a "
            f"failing adapter in the last {stats['invocations']} invocations"
        )
        if failing_tools:
            summary += f" (failures: {failing_tools})"
        if stats["top_errors"]:
            summary += f"; e.g. {stats['top_errors'][0]['error'][:120]}"
    return CheckResult(
        check_id,
        f"Recent tool invocations{f' of {tool}' if tool else ''}",
        "tools-api",
        status,
        summary,
        evidence=stats,
        signals={"adapter_failure_ratio": ratio} if items else {},
        raw={"recent.json": items},
    )


def rate_limit_check(
    github_url: str, token: str | None, deadline: Deadline, *, check_id: str = "tools.rate-limit"
) -> CheckResult:
    from somactl.clients.github import rate_limit

    data = rate_limit(github_url, token, deadline)
    resources = data.get("resources") or {}
    # a 403 "API rate limit exceeded" names the exhausted resource; /rate_limit itself, core
    resource = str(data.get("exhausted") or "core")
    judged = resources.get(resource) or {}
    limit = int(judged.get("limit") or 0)
    remaining = int(judged.get("remaining") or 0)
    reset = judged.get("reset")
    who = "" if data.get("authenticated") else " (unauthenticated: set a token for 5,000/h)"
    signals: dict[str, Any] = {}
    if (limit or data.get("exhausted")) and remaining == 0:
        status = Status.critical
        summary = f"GitHub rate limit exhausted until {_reset_text(reset)} (resource {resource})"
        signals["adapters_rate_limited"] = 1
    else:
        share = remaining / limit if limit else 1.0
        status = Status.warn if share < LOW_REMAINING else Status.ok
        summary = f"{remaining}/{limit} core requests left, resets {_reset_text(reset)}"
    summary += who
    rows = [
        {
            "resource": name,
            "limit": r.get("limit"),
            "remaining": r.get("remaining"),
            "used": r.get("used"),
            "reset": r.get("reset"),
            "reset_at": _reset_text(r.get("reset")),
        }
        for name, r in sorted(resources.items())
        if isinstance(r, dict)
    ]
    return CheckResult(
        check_id,
        "GitHub rate limit",
        "github",
        status,
        summary,
        evidence={"resources": rows, "authenticated": bool(data.get("authenticated"))},
        signals=signals,
        facts={"github_remaining": remaining, "github_reset": reset},
        raw={"rate_limit.json": data},
    )
