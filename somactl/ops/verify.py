"""After a mitigation: is the service better? Error rate and p95 from Prometheus (the runbook's
own queries and thresholds), measured before the action and again after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from somactl.checks.prom import with_window
from somactl.core.deadline import Deadline
from somactl.core.errors import SomactlError
from somactl.runbook.schema import Query, Runbook

SIGNALS = (("error-rate", "error_rate"), ("p95-latency", "p95_seconds"))
MEASURE_TIMEOUT = 5.0
MIN_WINDOW = 10.0  # seconds: the shortest rate window asked for after a fix


@dataclass
class ServiceMetrics:
    """The service's error-rate and p95 queries, ready to measure."""

    prometheus_url: str
    queries: dict[str, tuple[Query, str]] = field(default_factory=dict)  # signal -> (query, promql)

    @classmethod
    def for_service(
        cls, runbook: Runbook, service: str, namespace: str, prometheus_url: str | None
    ) -> ServiceMetrics | None:
        if not prometheus_url:
            return None
        svc = runbook.service(service)
        queries = {}
        for qid, signal in SIGNALS:
            if qid in svc.queries:
                q = runbook.query(qid)
                queries[signal] = (q, q.for_job(svc.job, namespace))
        return cls(prometheus_url, queries) if queries else None

    def measure(
        self, seconds: float = MEASURE_TIMEOUT, window: float | None = None
    ) -> dict[str, Any]:
        """{signal: value or None, "levels": {signal: ok|warn|critical}, "error": ...}.

        `window` (seconds) replaces the queries' range selectors (see `with_window`).
        """
        from somactl.clients.prometheus import PromClient, PromTarget, scalar

        out: dict[str, Any] = {}
        levels: dict[str, str] = {}
        try:
            prom = PromClient(PromTarget(self.prometheus_url), Deadline(seconds))
            for signal, (query, promql) in self.queries.items():
                text = promql if window is None else with_window(promql, window)
                value = scalar(prom.query(text))
                out[signal] = value
                if value is not None:
                    levels[signal] = query.level(value)
        except SomactlError as exc:
            out["error"] = exc.message
        out["levels"] = levels
        return out

    @staticmethod
    def healthy(sample: dict[str, Any]) -> bool | None:
        """True when every measured signal is below its warn threshold; None: nothing measured."""
        levels = sample.get("levels") or {}
        if not levels:
            return None
        return all(level == "ok" for level in levels.values())
