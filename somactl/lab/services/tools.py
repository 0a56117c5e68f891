"""The tools API the runbook calls on port 8003, with simulated adapter traffic behind it.

Public routes (the runbook's):
  GET  /tools/{tool}/health                    200 healthy|degraded, 503 down
  GET  /tools/recent?limit=N[&tool=T]          most recent invocations first; 1 <= N <= 1000
  GET  /tools/{tool}/circuit-breaker           {"tool","state":"closed|open","since","reason"}
  POST /tools/{tool}/circuit-breaker/enable    open the breaker: calls short-circuit
  POST /tools/{tool}/circuit-breaker/disable   close it
plus GET /tools, GET /health and GET /metrics (the `tool-service` job: its
http_requests_total / latency histogram are the adapters' invocations).

A generator thread invokes the adapters a few times a second as workflows would. The github
adapter spends the GitHub stand-in's core rate limit in-process, so exhausting that stand-in
rate-limits the adapter, exactly as with the real API.
"""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from somactl.lab.services.exposition import CONTENT_TYPE, Exposition, Histogram
from somactl.lab.services.github import AUTHENTICATED, GitHubSim
from somactl.lab.services.httpbase import (
    HTTPError,
    Request,
    Response,
    Router,
    json_response,
)

DEFAULT_ADAPTERS = ("github", "notion", "slack", "jira")
MAX_HISTORY = 5000
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
HEALTH_WINDOW = 300.0
SHORT_CIRCUIT_ERROR = "circuit breaker open: call short-circuited"


@dataclass(frozen=True)
class AdapterProfile:
    rate: float  # invocations per second from the generator
    latency_ms: float  # median duration of a successful call
    failure: str  # what a failure looks like for this provider
    failure_ms: float  # how long a failing call takes
    rate_limited: str  # what a rate-limited call says


PROFILES: dict[str, AdapterProfile] = {
    "github": AdapterProfile(
        0.5,
        180.0,
        "502 Bad Gateway from api.github.com",
        1200.0,
        "403 API rate limit exceeded (x-ratelimit-remaining: 0)",
    ),
    "notion": AdapterProfile(
        0.4,
        320.0,
        "504 Gateway Timeout from api.notion.com",
        10000.0,
        "429 rate_limited from api.notion.com",
    ),
    "slack": AdapterProfile(
        0.6,
        90.0,
        "500 internal_error from slack.com/api",
        800.0,
        "429 ratelimited from slack.com/api (Retry-After: 30)",
    ),
    "jira": AdapterProfile(
        0.3,
        260.0,
        "503 Service Unavailable from jira (upstream timeout)",
        5000.0,
        "429 Too Many Requests from jira (Retry-After: 60)",
    ),
}
GENERIC = AdapterProfile(
    0.3, 200.0, "502 Bad Gateway from upstream", 1000.0, "429 Too Many Requests from upstream"
)


def iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class Adapter:
    name: str
    profile: AdapterProfile
    error_rate: float = 0.0
    error: str | None = None
    rate_limited_until: float | None = None
    breaker_open: bool = False
    breaker_since: float = field(default_factory=time.time)
    breaker_reason: str | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None


@dataclass(frozen=True)
class Invocation:
    id: str
    tool: str
    workflow_id: str
    operation: str
    status: str  # success | failure | rate_limited
    duration_ms: float
    error: str | None
    timestamp: float
    short_circuited: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "workflow_id": self.workflow_id,
            "operation": self.operation,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "timestamp": iso(self.timestamp),
            "short_circuited": self.short_circuited,
        }


OPERATIONS: dict[str, tuple[str, ...]] = {
    "github": ("get_repo", "create_issue", "list_pulls", "comment_pr", "search_code"),
    "notion": ("sync_page", "query_database", "append_block"),
    "slack": ("post_message", "update_message", "list_channels"),
    "jira": ("create_ticket", "transition_issue", "search_issues"),
}


class ToolsSim:
    """Adapters, invocation history and breakers (thread-safe)."""

    def __init__(
        self,
        adapters: Sequence[str] = DEFAULT_ADAPTERS,
        *,
        github: GitHubSim | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        rate_scale: float = 1.0,
    ) -> None:
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self.github = github
        self.adapters: dict[str, Adapter] = {
            name: Adapter(name, PROFILES.get(name, GENERIC), breaker_since=clock())
            for name in adapters
        }
        self.history: collections.deque[Invocation] = collections.deque(maxlen=MAX_HISTORY)
        self._seq = 0
        self.rate_scale = rate_scale
        self.generator_enabled = True
        self._carry: dict[str, float] = dict.fromkeys(self.adapters, 0.0)
        self._workflows = [self._new_workflow() for _ in range(8)]
        # tool-service's own request metrics: one HTTP request per invocation
        self.counts: dict[tuple[str, str], int] = {
            (t, s): 0 for t in self.adapters for s in ("success", "failure", "rate_limited")
        }
        self.hist: dict[str, Histogram] = {t: Histogram() for t in self.adapters}
        self.all_hist = Histogram()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tick = time.monotonic()

    def now(self) -> float:
        return self._clock()

    def adapter(self, name: str) -> Adapter:
        a = self.adapters.get(name)
        if a is None:
            raise HTTPError(404, f"unknown tool {name!r}", tools=sorted(self.adapters))
        return a

    def _new_workflow(self) -> str:
        return f"wf-{self._rng.getrandbits(32):08x}"

    # -- invocations ------------------------------------------------------------------------

    def invoke(self, name: str) -> Invocation:
        """One call through the adapter, recorded in the history."""
        rng = self._rng
        with self._lock:
            a = self.adapter(name)
            now = self.now()
            if rng.random() < 0.1:
                self._workflows[rng.randrange(len(self._workflows))] = self._new_workflow()
            workflow = rng.choice(self._workflows)
            op = rng.choice(OPERATIONS.get(name, ("call",)))
            p = a.profile
            short = False
            error: str | None = None
            if a.breaker_open:
                status, duration, error, short = (
                    "failure",
                    rng.uniform(0.05, 0.4),
                    (SHORT_CIRCUIT_ERROR),
                    True,
                )
            elif (reason := self._rate_limited(a, now)) is not None:
                status, duration, error = "rate_limited", rng.uniform(40, 120), reason
            elif rng.random() < a.error_rate:
                status = "failure"
                duration = max(1.0, rng.gauss(p.failure_ms, p.failure_ms * 0.05))
                error = a.error or p.failure
            else:
                status = "success"
                duration = rng.lognormvariate(math.log(p.latency_ms), 0.5)
            self._seq += 1
            inv = Invocation(
                id=f"inv-{self._seq:08d}",
                tool=name,
                workflow_id=workflow,
                operation=op,
                status=status,
                duration_ms=round(duration, 1),
                error=error,
                timestamp=now,
                short_circuited=short,
            )
            self.history.append(inv)
            self.counts[(name, status)] = self.counts.get((name, status), 0) + 1
            self.hist[name].observe(duration / 1000.0)
            self.all_hist.observe(duration / 1000.0)
            if status == "success":
                a.last_success_at = now
            elif not short:
                a.last_error, a.last_error_at = error, now
            return inv

    def _rate_limited(self, a: Adapter, now: float) -> str | None:
        if a.name == "github" and self.github is not None:
            outcome, bucket = self.github.consume(AUTHENTICATED, "core")
            if outcome == "exhausted":
                return (
                    f"403 API rate limit exceeded (x-ratelimit-remaining: 0, resets at "
                    f"{iso(bucket['reset'])})"
                )
            if outcome == "secondary":
                return "429 secondary rate limit exceeded (retry-after)"
            return None
        if a.rate_limited_until is not None:
            if now < a.rate_limited_until:
                return f"{a.profile.rate_limited} (resets at {iso(a.rate_limited_until)})"
            a.rate_limited_until = None
        return None

    def tick(self, dt: float) -> int:
        """Generate the invocations of `dt` seconds of workflow traffic."""
        if not self.generator_enabled:
            return 0
        n_total = 0
        for name, a in list(self.adapters.items()):
            self._carry[name] += a.profile.rate * self.rate_scale * dt
            n = int(self._carry[name])
            self._carry[name] -= n
            for _ in range(n):
                self.invoke(name)
            n_total += n
        return n_total

    def start(self, interval: float = 0.2) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                now = time.monotonic()
                dt, self._last_tick = now - self._last_tick, now
                self.tick(min(dt, 10.0))

        self._last_tick = time.monotonic()
        self._thread = threading.Thread(target=run, name="tools-generator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- views ------------------------------------------------------------------------------

    def recent(
        self, limit: int, tool: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            out: list[dict[str, Any]] = []
            for inv in reversed(self.history):
                if tool is not None and inv.tool != tool:
                    continue
                if status is not None and inv.status != status:
                    continue
                out.append(inv.as_json())
                if len(out) >= limit:
                    break
            return out

    def health(self, name: str) -> dict[str, Any]:
        """An active probe of the provider plus the adapter's recent record."""
        with self._lock:
            a = self.adapter(name)
            now = self.now()
            rate_limit = self._rate_limit_info(a, now)
            limited = rate_limit is not None and rate_limit["remaining"] == 0
            window = [
                i
                for i in self.history
                if i.tool == name and i.timestamp >= now - HEALTH_WINDOW and not i.short_circuited
            ]
            failed = sum(1 for i in window if i.status != "success")
            p = a.profile
            if limited:
                status = "down"
                latency = self._rng.uniform(40, 120)
            elif a.error_rate >= 0.5:
                status = "down"
                latency = p.failure_ms
            elif a.error_rate >= 0.05:
                status = "degraded"
                latency = p.latency_ms * 2
            else:
                status = "healthy"
                latency = self._rng.lognormvariate(math.log(p.latency_ms), 0.3)
            out: dict[str, Any] = {
                "tool": name,
                "status": status,
                "latency_ms": round(latency, 1),
                "last_error": a.last_error,
                "last_error_at": iso(a.last_error_at) if a.last_error_at else None,
                "last_success_at": iso(a.last_success_at) if a.last_success_at else None,
                "error_rate": round(failed / len(window), 4) if window else 0.0,
                "invocations": len(window),
                "window_seconds": int(HEALTH_WINDOW),
                "circuit_breaker": "open" if a.breaker_open else "closed",
                "checked_at": iso(now),
            }
            if rate_limit is not None:
                out["rate_limit"] = rate_limit
            return out

    def _rate_limit_info(self, a: Adapter, now: float) -> dict[str, Any] | None:
        if a.name == "github" and self.github is not None:
            b = self.github.bucket_json(AUTHENTICATED, "core")
            return {
                "limit": b["limit"],
                "remaining": b["remaining"],
                "used": b["used"],
                "reset": b["reset"],
                "reset_at": iso(b["reset"]),
            }
        if a.rate_limited_until is not None and now < a.rate_limited_until:
            return {
                "limit": None,
                "remaining": 0,
                "used": None,
                "reset": int(a.rate_limited_until),
                "reset_at": iso(a.rate_limited_until),
            }
        return None

    def breaker(self, name: str) -> dict[str, Any]:
        with self._lock:
            a = self.adapter(name)
            return {
                "tool": name,
                "state": "open" if a.breaker_open else "closed",
                "since": iso(a.breaker_since),
                "reason": a.breaker_reason,
            }

    def set_breaker(self, name: str, open_: bool, reason: str | None) -> dict[str, Any]:
        with self._lock:
            a = self.adapter(name)
            if a.breaker_open != open_:
                a.breaker_open = open_
                a.breaker_since = self.now()
                a.breaker_reason = reason or (
                    "enabled via the tools API" if open_ else "disabled via the tools API"
                )
            elif reason:
                a.breaker_reason = reason
            return self.breaker(name)

    # -- lab control ------------------------------------------------------------------------

    def fail(self, name: str, error_rate: float, error: str | None) -> dict[str, Any]:
        with self._lock:
            a = self.adapter(name)
            a.error_rate = error_rate
            a.error = error
            return self.adapter_state(name)

    def rate_limit(self, name: str, reset_in: float) -> dict[str, Any]:
        with self._lock:
            a = self.adapter(name)
            if a.name == "github" and self.github is not None:
                self.github.exhaust("core", reset_in)
            else:
                a.rate_limited_until = self.now() + reset_in
            return self.adapter_state(name)

    def recover(self, name: str) -> dict[str, Any]:
        with self._lock:
            a = self.adapter(name)
            a.error_rate = 0.0
            a.error = None
            a.rate_limited_until = None
            if a.name == "github" and self.github is not None:
                self.github.restore()
            return self.adapter_state(name)

    def reset(self, clear_history: bool) -> None:
        with self._lock:
            for name, a in self.adapters.items():
                self.recover(name)
                a.last_error = a.last_error_at = None
                if a.breaker_open:
                    self.set_breaker(name, False, "lab reset")
            if clear_history:
                self.history.clear()
            self.generator_enabled = True

    def adapter_state(self, name: str) -> dict[str, Any]:
        a = self.adapter(name)
        return {
            "tool": name,
            "error_rate": a.error_rate,
            "error": a.error,
            "rate_limited_until": iso(a.rate_limited_until) if a.rate_limited_until else None,
            "breaker": self.breaker(name),
            "health": self.health(name)["status"],
        }

    def state_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "generator": {"enabled": self.generator_enabled, "rate_scale": self.rate_scale},
                "invocations": self._seq,
                "adapters": [self.adapter_state(n) for n in self.adapters],
            }

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> str:
        with self._lock:
            counts = dict(self.counts)
            health = {n: self.health(n)["status"] for n in self.adapters}
            breakers = {n: a.breaker_open for n, a in self.adapters.items()}
        http_status = {"success": "200", "failure": "502", "rate_limited": "429"}
        per_status: dict[str, int] = {}
        for (_, s), n in counts.items():
            per_status[http_status[s]] = per_status.get(http_status[s], 0) + n
        svc = {"service": "tool-service"}
        e = Exposition()
        e.simple(
            "http_requests_total",
            "counter",
            "Tool invocation requests served, by method and status.",
            (
                ({**svc, "method": "POST", "status": s}, float(n))
                for s, n in sorted(per_status.items())
            ),
        )
        e.histogram(
            "http_request_duration_seconds",
            "Tool invocation latency in seconds.",
            [(svc, self.all_hist)],
        )
        e.simple(
            "tool_invocations_total",
            "counter",
            "Tool adapter invocations by outcome.",
            (({"tool": t, "status": s}, float(n)) for (t, s), n in sorted(counts.items())),
        )
        e.histogram(
            "tool_invocation_duration_seconds",
            "Tool adapter call duration in seconds.",
            [({"tool": t}, h) for t, h in sorted(self.hist.items())],
        )
        e.simple(
            "tool_adapter_up",
            "gauge",
            "1 unless the adapter's health is down.",
            (({"tool": t}, 0.0 if s == "down" else 1.0) for t, s in sorted(health.items())),
        )
        e.simple(
            "tool_circuit_breaker_open",
            "gauge",
            "1 while the adapter's breaker is open.",
            (({"tool": t}, 1.0 if o else 0.0) for t, o in sorted(breakers.items())),
        )
        return e.text()


def _limit(req: Request) -> int:
    raw = req.param("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(
            400,
            f"limit must be an integer between 1 and {MAX_LIMIT}, got {raw!r}",
            parameter="limit",
        ) from None
    if not 1 <= value <= MAX_LIMIT:
        raise HTTPError(
            400, f"limit must be between 1 and {MAX_LIMIT}, got {value}", parameter="limit"
        )
    return value


class ToolsApp:
    name = "tools"

    def __init__(self, sim: ToolsSim) -> None:
        self.sim = sim
        r = Router()
        t = r"(?P<tool>[^/]+)"
        r.add("GET", "/health", lambda req, m: json_response(200, {"status": "ok"}))
        r.add("GET", "/metrics", self._metrics)
        r.add("GET", "/tools", self._tools)
        r.add("GET", "/tools/recent", self._recent)
        r.add("GET", f"/tools/{t}/health", self._health)
        r.add("GET", f"/tools/{t}/circuit-breaker", self._breaker)
        r.add("POST", f"/tools/{t}/circuit-breaker/(?P<action>enable|disable)", self._set_breaker)
        r.add("GET", "/_lab/state", lambda req, m: json_response(200, self.sim.state_json()))
        r.add("POST", "/_lab/reset", self._reset)
        r.add("POST", "/_lab/generator", self._generator)
        r.add("POST", "/_lab/tools/invoke", self._invoke)
        r.add("POST", f"/_lab/tools/{t}/fail", self._fail)
        r.add("POST", f"/_lab/tools/{t}/rate-limit", self._rate_limit)
        r.add("POST", f"/_lab/tools/{t}/recover", self._recover)
        self.router = r

    def handle(self, req: Request) -> Response:
        return self.router.dispatch(req)

    def _metrics(self, req: Request, m: Any) -> Response:
        return Response(200, self.sim.render().encode(), CONTENT_TYPE)

    def _tools(self, req: Request, m: Any) -> Response:
        return json_response(200, {"tools": [self.sim.health(n) for n in self.sim.adapters]})

    def _recent(self, req: Request, m: Any) -> Response:
        limit = _limit(req)
        tool = req.param("tool")
        if tool is not None:
            self.sim.adapter(tool)
        status = req.param("status")
        if status is not None and status not in ("success", "failure", "rate_limited"):
            raise HTTPError(400, "status must be success, failure or rate_limited")
        return json_response(200, self.sim.recent(limit, tool, status))

    def _health(self, req: Request, m: Any) -> Response:
        h = self.sim.health(m.group("tool"))
        return json_response(503 if h["status"] == "down" else 200, h)

    def _breaker(self, req: Request, m: Any) -> Response:
        return json_response(200, self.sim.breaker(m.group("tool")))

    def _set_breaker(self, req: Request, m: Any) -> Response:
        tool = m.group("tool")
        self.sim.adapter(tool)
        reason = req.json().get("reason") if req.body.strip() else None
        state = self.sim.set_breaker(
            tool, m.group("action") == "enable", str(reason) if reason else None
        )
        return json_response(200, state)

    # -- lab --------------------------------------------------------------------------------

    def _reset(self, req: Request, m: Any) -> Response:
        body = req.json()
        self.sim.reset(bool(body.get("clear_history", False)))
        return json_response(200, self.sim.state_json())

    def _generator(self, req: Request, m: Any) -> Response:
        body = req.json()
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise HTTPError(400, "enabled must be true or false")
            self.sim.generator_enabled = body["enabled"]
        if "rate_scale" in body:
            v = body["rate_scale"]
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 100:
                raise HTTPError(400, "rate_scale must be a number in 0..100")
            self.sim.rate_scale = float(v)
        return json_response(200, self.sim.state_json()["generator"])

    def _invoke(self, req: Request, m: Any) -> Response:
        body = req.json()
        count = body.get("count", 1)
        tool = body.get("tool")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1000:
            raise HTTPError(400, "count must be an integer in 1..1000")
        tools = [self.sim.adapter(str(tool)).name] if tool is not None else list(self.sim.adapters)
        out = [self.sim.invoke(tools[i % len(tools)]).as_json() for i in range(count)]
        return json_response(200, out)

    def _fail(self, req: Request, m: Any) -> Response:
        body = req.json()
        rate = body.get("error_rate", 1.0)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise HTTPError(400, "error_rate must be a number in 0.0..1.0")
        error = body.get("error")
        return json_response(
            200, self.sim.fail(m.group("tool"), float(rate), str(error) if error else None)
        )

    def _rate_limit(self, req: Request, m: Any) -> Response:
        body = req.json()
        minutes = body.get("reset_in_minutes", 60)
        if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes < 0:
            raise HTTPError(400, "reset_in_minutes must be a number >= 0")
        return json_response(200, self.sim.rate_limit(m.group("tool"), float(minutes) * 60))

    def _recover(self, req: Request, m: Any) -> Response:
        return json_response(200, self.sim.recover(m.group("tool")))
