"""A SomaGent service as Prometheus sees it: traffic counters, latency, memory, following k8s state.

Each stand-in simulates 20-50 requests per second on a background clock and records them as if
the service had served them. What the traffic looks like follows the service's Deployment in
the simulated Kubernetes API (see kubestate) and the lab's mode (`POST /_lab/mode`):

* no ready pod -> every request is a 5xx (500/502/503); crash-looping pods next to ready ones ->
  that share of 5xx; a ready pod with the simulator's `error-logs` behaviour -> a third of its
  share fails;
* `load: high` -> three times the traffic and a p95 above 5 s, until the deployment has at least
  `relief_replicas` ready pods (10 by default: the runbook's "scale horizontally");
* memory (`process_resident_memory_bytes`) is the largest working set the simulator reports for
  the service's running pods, so a leaking pod grows it until OOMKilled.

`up` is Prometheus' own: the scrape succeeds unless the mode's `scrape` policy says otherwise
(`auto`: fail while the deployment has no pod at all, i.e. there is no process to scrape).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from somactl.lab.services.exposition import CONTENT_TYPE, Exposition, Histogram
from somactl.lab.services.httpbase import (
    HTTPError,
    Request,
    Response,
    Router,
    json_response,
)
from somactl.lab.services.kubestate import DeploymentView, KubeWatcher

MIB = 1024 * 1024
LOADS = ("normal", "high")
SCRAPE_POLICIES = ("auto", "ready", "up", "down")
# The status codes a failing SomaGent service answers, and their shares (500 dominates so the
# runbook's `gateway_requests_total{status="500"}` query sees the outage).
ERROR_MIX: tuple[tuple[int, float], ...] = ((500, 0.5), (502, 0.2), (503, 0.3))
OK_STATUSES = (200, 201, 404)
ALL_STATUSES = (200, 201, 404, 500, 502, 503, 504)
METHODS = ("GET", "POST")
ERROR_LOGS_RATIO = 0.33  # the simulator's `error-logs` behaviour fails a third of requests
HIGH_LOAD_FACTOR = 3.0


@dataclass(frozen=True)
class ServiceProfile:
    """Per-service constants: traffic and footprint when healthy."""

    rps_low: float = 20.0
    rps_high: float = 50.0
    median_latency: float = 0.06
    latency_sigma: float = 0.8
    base_memory_mib: float = 180.0


PROFILES: dict[str, ServiceProfile] = {
    "gateway-api": ServiceProfile(30.0, 50.0, 0.045, 0.8, 160.0),
    "orchestrator": ServiceProfile(20.0, 35.0, 0.08, 0.8, 240.0),
    "kamachiq-service": ServiceProfile(20.0, 30.0, 0.12, 0.7, 300.0),
}


@dataclass(frozen=True)
class Mode:
    """What the lab's scenarios set on a service, besides its Kubernetes state."""

    load: str = "normal"
    error_rate: float | None = None  # overrides what the deployment state implies
    scrape: str = "auto"
    relief_replicas: int | None = 10
    leak_mib_per_second: float = 0.0  # only when the simulator reports no memory figure
    rps: float | None = None  # overrides the 20-50 req/s random walk

    def updated(self, body: dict[str, Any]) -> Mode:
        unknown = set(body) - set(asdict(self))
        if unknown:
            raise HTTPError(
                400,
                f"unknown mode field(s): {', '.join(sorted(unknown))}",
                fields=sorted(asdict(self)),
            )
        out = self
        if "load" in body:
            if body["load"] not in LOADS:
                raise HTTPError(400, f"load must be one of {', '.join(LOADS)}")
            out = replace(out, load=str(body["load"]))
        if "error_rate" in body:
            v = body["error_rate"]
            if v is not None and (not _is_number(v) or not 0.0 <= float(v) <= 1.0):
                raise HTTPError(400, "error_rate must be a number in 0.0..1.0 or null")
            out = replace(out, error_rate=None if v is None else float(v))
        if "scrape" in body:
            if body["scrape"] not in SCRAPE_POLICIES:
                raise HTTPError(400, f"scrape must be one of {', '.join(SCRAPE_POLICIES)}")
            out = replace(out, scrape=str(body["scrape"]))
        if "relief_replicas" in body:
            v = body["relief_replicas"]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise HTTPError(400, "relief_replicas must be an integer >= 1 or null")
            out = replace(out, relief_replicas=v)
        if "leak_mib_per_second" in body:
            v = body["leak_mib_per_second"]
            if not _is_number(v) or float(v) < 0:
                raise HTTPError(400, "leak_mib_per_second must be a number >= 0")
            out = replace(out, leak_mib_per_second=float(v))
        if "rps" in body:
            v = body["rps"]
            if v is not None and (not _is_number(v) or not 0 <= float(v) <= 10000):
                raise HTTPError(400, "rps must be a number in 0..10000 or null")
            out = replace(out, rps=None if v is None else float(v))
        return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Condition:
    """What the traffic looks like right now (derived from mode + deployment view)."""

    error_ratio: float
    overloaded: bool
    scrape_ok: bool
    reason: str


def condition(mode: Mode, view: DeploymentView) -> Condition:
    ready = view.ready
    overloaded = mode.load == "high" and (
        mode.relief_replicas is None or ready < mode.relief_replicas
    )
    if mode.scrape == "up":
        scrape_ok = True
    elif mode.scrape == "down":
        scrape_ok = False
    elif mode.scrape == "ready":
        scrape_ok = not view.known or ready > 0
    else:
        scrape_ok = not view.known or bool(view.live_pods)
    if mode.error_rate is not None:
        return Condition(mode.error_rate, overloaded, scrape_ok, "lab override")
    if not view.known:
        return Condition(0.0, overloaded, scrape_ok, "no Kubernetes state yet")
    if not view.exists and not view.live_pods:
        return Condition(1.0, overloaded, scrape_ok, "deployment not found")
    if ready == 0:
        return Condition(1.0, overloaded, scrape_ok, "no ready pods")
    bad = view.crashing
    erroring = sum(1 for p in view.live_pods if p.ready and p.behavior == "error-logs")
    ratio = (bad + ERROR_LOGS_RATIO * erroring) / (ready + bad)
    reason = f"{ready} ready, {bad} crash-looping" if bad else f"{ready} ready"
    if erroring:
        reason += f", {erroring} failing a third of requests"
    return Condition(min(1.0, ratio), overloaded, scrape_ok, reason)


class ServiceSim:
    """Counters and histograms of one service, advanced by `advance()` (thread-safe)."""

    def __init__(
        self,
        name: str,
        *,
        watcher: KubeWatcher | None = None,
        profile: ServiceProfile | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.watcher = watcher
        self.profile = profile or PROFILES.get(name, ServiceProfile())
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.Lock()
        self.mode = Mode()
        self._last = clock()
        self._carry = 0.0
        self._rps = (self.profile.rps_low + self.profile.rps_high) / 2
        self.requests: dict[tuple[str, int], int] = {
            (m, s): 0 for m in METHODS for s in ALL_STATUSES
        }
        self.hist = Histogram()
        self.started_at = time.time()
        self._leak_since: float | None = None
        self.scrapes = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, interval: float = 0.25) -> None:
        """Advance the traffic on a background clock, so a state change lands when it happens."""

        def run() -> None:
            while not self._stop.wait(interval):
                self.advance()

        self._ticker = threading.Thread(target=run, name=f"traffic-{self.name}", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None

    # -- state ------------------------------------------------------------------------------

    @property
    def view(self) -> DeploymentView:
        return self.watcher.view if self.watcher is not None else DeploymentView()

    def condition(self) -> Condition:
        return condition(self.mode, self.view)

    def set_mode(self, body: dict[str, Any]) -> Mode:
        with self._lock:
            self._advance_locked()
            new = self.mode.updated(body)
            if new.leak_mib_per_second > 0 and self.mode.leak_mib_per_second == 0:
                self._leak_since = time.time()
            if new.leak_mib_per_second == 0:
                self._leak_since = None
            self.mode = new
            return new

    def reset(self) -> Mode:
        return self.set_mode(asdict(Mode()))

    # -- traffic ----------------------------------------------------------------------------

    def advance(self) -> None:
        with self._lock:
            self._advance_locked()

    def _advance_locked(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        if dt <= 0:
            return
        # Whole seconds at most per step of the random walk; long gaps are simulated in bulk.
        cond = self.condition()
        self._rps = min(
            self.profile.rps_high, max(self.profile.rps_low, self._rps + self._rng.uniform(-3, 3))
        )
        rps = self.mode.rps if self.mode.rps is not None else self._rps
        if self.mode.load == "high":
            rps *= HIGH_LOAD_FACTOR
        self._carry += rps * dt
        n = int(self._carry)
        self._carry -= n
        # A scrape after a long pause must not take seconds: cap per-request sampling.
        for _ in range(min(n, 20000)):
            self._one_request(cond)

    def _one_request(self, cond: Condition) -> None:
        rng = self._rng
        method = "GET" if rng.random() < 0.7 else "POST"
        if rng.random() < cond.error_ratio:
            r = rng.random()
            status = 503
            acc = 0.0
            for code, share in ERROR_MIX:
                acc += share
                if r < acc:
                    status = code
                    break
            duration = (
                rng.uniform(0.001, 0.02)
                if cond.error_ratio >= 1.0
                else (rng.lognormvariate(math.log(self.profile.median_latency), 0.5))
            )
        elif cond.overloaded:
            status = 504 if rng.random() < 0.02 else (200 if method == "GET" else 201)
            duration = rng.lognormvariate(math.log(3.0), 0.6)
        else:
            status = 404 if rng.random() < 0.01 else (200 if method == "GET" else 201)
            duration = rng.lognormvariate(
                math.log(self.profile.median_latency), self.profile.latency_sigma
            )
        self.requests[(method, status)] = self.requests.get((method, status), 0) + 1
        self.hist.observe(duration)

    # -- memory -----------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        running = [
            p for p in self.view.live_pods if p.memory_bytes is not None and p.phase == "Running"
        ]
        if running:
            return max(int(p.memory_bytes or 0) for p in running)
        base = self.profile.base_memory_mib * MIB
        if self._leak_since is not None:
            base += self.mode.leak_mib_per_second * MIB * max(0.0, time.time() - self._leak_since)
        return int(base)

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> str:
        with self._lock:
            self._advance_locked()
            requests = dict(self.requests)
            self.scrapes += 1
        cond = self.condition()
        view = self.view
        svc = {"service": self.name}
        e = Exposition()
        e.simple(
            "http_requests_total",
            "counter",
            "HTTP requests served, by method and status.",
            (
                ({**svc, "method": m, "status": str(s)}, float(n))
                for (m, s), n in sorted(requests.items())
            ),
        )
        e.histogram(
            "http_request_duration_seconds",
            "HTTP request latency in seconds.",
            [(svc, self.hist)],
        )
        if self.name == "gateway-api":
            by_status: dict[int, int] = {}
            for (_, s), n in requests.items():
                by_status[s] = by_status.get(s, 0) + n
            e.simple(
                "gateway_requests_total",
                "counter",
                "Requests through the gateway, by HTTP status.",
                (({"status": str(s)}, float(n)) for s, n in sorted(by_status.items())),
            )
        e.simple(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            [({}, float(self.memory_bytes()))],
        )
        e.simple(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            [({}, float(int(self.started_at)))],
        )
        pods = [p for p in view.live_pods if p.memory_bytes is not None]
        if pods:
            e.simple(
                "container_memory_working_set_bytes",
                "gauge",
                "Current working set of the service's containers in bytes (from the simulator).",
                (
                    (
                        {"namespace": self._namespace(), "pod": p.name, "container": p.container},
                        float(p.memory_bytes or 0),
                    )
                    for p in pods
                ),
            )
        limited = [p for p in view.live_pods if p.memory_limit_bytes is not None]
        if limited:
            e.simple(
                "container_spec_memory_limit_bytes",
                "gauge",
                "Memory limit of the service's containers in bytes.",
                (
                    (
                        {"namespace": self._namespace(), "pod": p.name, "container": p.container},
                        float(p.memory_limit_bytes or 0),
                    )
                    for p in limited
                ),
            )
        if view.live_pods:
            e.simple(
                "kube_pod_container_status_restarts_total",
                "counter",
                "Container restarts of the service's pods.",
                (
                    (
                        {"namespace": self._namespace(), "pod": p.name, "container": p.container},
                        float(p.restarts),
                    )
                    for p in view.live_pods
                ),
            )
        e.simple(
            "lab_ready_pods",
            "gauge",
            "Ready pods of the deployment (lab).",
            [(svc, float(view.ready))],
        )
        e.simple(
            "lab_error_ratio",
            "gauge",
            "Share of simulated requests failing (lab).",
            [(svc, cond.error_ratio)],
        )
        e.simple(
            "lab_overloaded",
            "gauge",
            "1 while the service is overloaded (lab).",
            [(svc, 1.0 if cond.overloaded else 0.0)],
        )
        api_up = self.watcher.api_up if self.watcher is not None else False
        e.simple(
            "lab_kube_api_up",
            "gauge",
            "1 if the last poll of the Kubernetes API succeeded (lab).",
            [(svc, 1.0 if api_up else 0.0)],
        )
        return e.text()

    def _namespace(self) -> str:
        return self.watcher.source.namespace if self.watcher is not None else ""

    def state_json(self) -> dict[str, Any]:
        self.advance()
        cond = self.condition()
        view = self.view
        watcher = self.watcher
        with self._lock:
            total = sum(self.requests.values())
            errors = sum(n for (_, s), n in self.requests.items() if s >= 500)
        return {
            "service": self.name,
            "mode": asdict(self.mode),
            "condition": asdict(cond),
            "p95_seconds": _finite(self.hist.quantile(0.95)),
            "requests_total": total,
            "errors_total": errors,
            "memory_bytes": self.memory_bytes(),
            "kube": {
                "api_up": watcher.api_up if watcher else False,
                "polls": watcher.polls if watcher else 0,
                "failures": watcher.failures if watcher else 0,
                "last_error": watcher.last_error if watcher else None,
                "known": view.known,
                "exists": view.exists,
                "replicas": view.replicas,
                "ready": view.ready,
                "crashing": view.crashing,
                "revision": view.revision,
                "image": view.image,
                "pods": [asdict(p) for p in view.pods],
            },
        }


def _finite(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)


class MetricsApp:
    """HTTP face of a ServiceSim: /metrics, /health and the /_lab/ controls."""

    def __init__(self, sim: ServiceSim) -> None:
        self.sim = sim
        self.name = sim.name
        r = Router()
        r.add("GET", "/metrics", self._metrics)
        r.add("GET", "/health", self._health)
        r.add("GET", "/_lab/state", lambda req, m: json_response(200, self.sim.state_json()))
        r.add("GET", "/_lab/mode", lambda req, m: json_response(200, asdict(self.sim.mode)))
        r.add("POST", "/_lab/mode", self._set_mode)
        r.add("POST", "/_lab/reset", self._reset)
        self.router = r

    def handle(self, req: Request) -> Response:
        return self.router.dispatch(req)

    def _metrics(self, req: Request, m: Any) -> Response:
        cond = self.sim.condition()
        if not cond.scrape_ok:
            self.sim.advance()
            return Response(
                503, f"{self.name} is down: {cond.reason}\n".encode(), "text/plain; charset=utf-8"
            )
        return Response(200, self.sim.render().encode(), CONTENT_TYPE)

    def _health(self, req: Request, m: Any) -> Response:
        cond = self.sim.condition()
        healthy = cond.error_ratio < 0.5 and cond.scrape_ok
        return json_response(
            200 if healthy else 503,
            {
                "service": self.name,
                "status": "ok" if healthy else "unavailable",
                "reason": cond.reason,
            },
        )

    def _set_mode(self, req: Request, m: Any) -> Response:
        mode = self.sim.set_mode(req.json())
        return json_response(200, asdict(mode))

    def _reset(self, req: Request, m: Any) -> Response:
        return json_response(200, asdict(self.sim.reset()))
