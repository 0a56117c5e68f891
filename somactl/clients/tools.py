"""The SomaGent tools API (the runbook's http://localhost:8003): adapter health, recent
invocations, circuit breakers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from somactl.clients.http import RetryPolicy, request, status_error
from somactl.core.deadline import Deadline
from somactl.core.errors import UsageError

SERVICE = "tools API"
_TOOL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_tool_name(tool: str) -> str:
    if not _TOOL.match(tool):
        raise UsageError(f"tool name {tool!r} is not valid (lower-case letters, digits, - and _)")
    return tool


class ToolsClient:
    def __init__(
        self, base_url: str, deadline: Deadline, *, read_retry: RetryPolicy | None = None
    ) -> None:
        """`read_retry` overrides the retries of reads (diagnosis passes NO_RETRY: a check
        reports what it sees within its budget instead of backing off)."""
        self.base = base_url.rstrip("/")
        self.deadline = deadline
        self.read_retry = read_retry

    def _get(self, path: str) -> tuple[int, Any]:
        resp = request(
            "GET",
            self.base + path,
            service=SERVICE,
            deadline=self.deadline,
            idempotent=True,
            retry=self.read_retry if self.read_retry is not None else RetryPolicy(),
        )
        return resp.status, resp.json()

    def health(self, tool: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 healthy or degraded, 503 down; other statuses raise."""
        status, body = self._get(f"/tools/{quote(check_tool_name(tool))}/health")
        if status in (200, 503) and isinstance(body, dict):
            return status, body
        if status == 404:
            raise UsageError(f"{SERVICE}: no tool adapter named {tool!r}")
        raise _error(status, body, "health")

    def recent(self, limit: int = 50, tool: str | None = None) -> list[dict[str, Any]]:
        """The most recent invocations, newest first (of `tool` only, when given)."""
        if not 1 <= limit <= 1000:
            raise UsageError(f"--limit must be between 1 and 1000 (got {limit})")
        query = f"limit={limit}" + (f"&tool={quote(check_tool_name(tool))}" if tool else "")
        status, body = self._get(f"/tools/recent?{query}")
        if status != 200:
            raise _error(status, body, "recent invocations")
        items = body.get("invocations", body) if isinstance(body, dict) else body
        return list(items) if isinstance(items, list) else []

    def breaker(self, tool: str) -> dict[str, Any]:
        status, body = self._get(f"/tools/{quote(check_tool_name(tool))}/circuit-breaker")
        if status == 404:
            raise UsageError(f"{SERVICE}: no tool adapter named {tool!r}")
        if status != 200 or not isinstance(body, dict):
            raise _error(status, body, "circuit breaker")
        return body

    def set_breaker(self, tool: str, enable: bool) -> tuple[dict[str, Any], int]:
        """Open (enable) or close the breaker: idempotent, so retried on 429/503 within the
        deadline, honouring Retry-After. Returns (new state, attempts)."""
        verb = "enable" if enable else "disable"
        resp = request(
            "POST",
            f"{self.base}/tools/{quote(check_tool_name(tool))}/circuit-breaker/{verb}",
            service=SERVICE,
            deadline=self.deadline,
            idempotent=True,
            retry=RetryPolicy(attempts=3, max_retry_after=30.0),
        )
        body = resp.json()
        if resp.status == 404:
            raise UsageError(f"{SERVICE}: no tool adapter named {tool!r}")
        if not resp.ok or not isinstance(body, dict):
            raise status_error(resp, service=SERVICE, detail=f"circuit-breaker {verb}")
        return body, resp.attempts


def _error(status: int, body: Any, what: str) -> Exception:
    from somactl.clients.http import HttpResponse

    detail = body.get("error") if isinstance(body, dict) else None
    return status_error(
        HttpResponse(status=status, headers={}, body=b"", attempts=1, elapsed=0.0),
        service=SERVICE,
        detail=f"{what}: {detail}" if detail else what,
    )
