"""GitHub's rate limit: `GET /rate_limit` (it does not count against the limit).

The token comes from settings (env or a 0600 file), is registered for redaction and never
printed. A limited GitHub is reported with its reset time; we never sleep until the reset and
never loop: continuing while limited can get an integration banned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from somactl.clients.http import NO_RETRY, request, status_error
from somactl.core.deadline import Deadline
from somactl.core.errors import UnreachableError
from somactl.core.redact import register_secret

SERVICE = "GitHub"
SECONDARY_WAIT = 60.0  # seconds: GitHub's minimum wait after a secondary limit without retry-after


def rate_limit(base_url: str, token: str | None, deadline: Deadline) -> dict[str, Any]:
    """The `resources` of /rate_limit plus headers; raises somactl errors on failure.

    A 403/429 saying the limit is exhausted (remaining 0) is returned, not raised: `exhausted`
    names the resource, `resources` holds it as the headers describe it."""
    headers = {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"}
    if token:
        register_secret(token)
        headers["authorization"] = f"Bearer {token}"
    resp = request(
        "GET",
        base_url.rstrip("/") + "/rate_limit",
        service=SERVICE,
        deadline=deadline,
        idempotent=True,
        headers=headers,
        retry=NO_RETRY,
    )
    body = resp.json()
    if resp.status in (403, 429) and resp.headers.get("x-ratelimit-remaining") == "0":
        # "API rate limit exceeded": an answer about the limit, not a failure to read it. The
        # headers carry what /rate_limit would have said of the exhausted resource.
        resource = resp.headers.get("x-ratelimit-resource") or "core"
        return {
            "resources": {
                resource: {
                    "limit": _int(resp.headers.get("x-ratelimit-limit")),
                    "remaining": 0,
                    "used": _int(resp.headers.get("x-ratelimit-used")),
                    "reset": _int(resp.headers.get("x-ratelimit-reset")),
                }
            },
            "exhausted": resource,
            "http_status": resp.status,
            "authenticated": token is not None,
            "retry_after": resp.retry_after,
            "headers": {k: v for k, v in resp.headers.items() if k.startswith("x-ratelimit-")},
        }
    message = str(body.get("message") or "") if isinstance(body, dict) else ""
    if resp.status == 429 or (resp.status == 403 and "secondary rate limit" in message.lower()):
        # A secondary limit: GitHub's rule is to obey retry-after, else wait at least a minute;
        # never wait here (this is a read for a person) and never loop.
        wait = resp.retry_after if resp.retry_after is not None else SECONDARY_WAIT
        why = "its retry-after" if resp.retry_after is not None else "no retry-after: GitHub's rule"
        raise UnreachableError(
            f"{SERVICE}: secondary rate limit (HTTP {resp.status}); "
            f"wait at least {wait:g}s before the next GitHub call ({why})",
            "do not retry sooner: it prolongs the limit and can get the integration banned; "
            "`somactl mitigate circuit-breaker enable github` pauses the adapter meanwhile",
        )
    if not resp.ok or not isinstance(body, dict):
        raise status_error(resp, service=SERVICE, detail=message or "rate_limit")
    resources = body.get("resources") or {}
    return {
        "resources": resources,
        "authenticated": token is not None,
        "retry_after": resp.retry_after,
        "headers": {k: v for k, v in resp.headers.items() if k.startswith("x-ratelimit-")},
    }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def reset_time(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%H:%MZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
