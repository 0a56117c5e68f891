"""The Prometheus query check against a stub of Prometheus' HTTP API on loopback (the real
Prometheus is exercised by the lab scenario tests)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from somactl.checks.base import Status
from somactl.checks.prom import PromQuery, query_check
from somactl.core.deadline import Deadline


class Stub:
    def __init__(self) -> None:
        self.value: str | None = "0.2"
        self.recent: str | None = None  # the answer to a query over the last 2 minutes
        self.seen: list[tuple[str, str]] = []

    def answer(self, path: str, query: str) -> dict[str, Any]:
        self.seen.append((path, query))
        if "[120s]" in query:
            value = self.recent
            result = [] if value is None else [{"metric": {}, "value": [time.time(), value]}]
            return {"status": "success", "data": {"resultType": "vector", "result": result}}
        if path.endswith("/query_range"):
            now = time.time()
            values = [[now - 60 * (30 - i), str(i / 30)] for i in range(31)]
            result = [] if self.value is None else [{"metric": {}, "values": values}]
            return {"status": "success", "data": {"resultType": "matrix", "result": result}}
        result = [] if self.value is None else [{"metric": {}, "value": [time.time(), self.value]}]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def prom() -> Iterator[tuple[str, Stub]]:
    stub = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            q = parse_qs(parts.query).get("query", [""])[0]
            body = json.dumps(stub.answer(parts.path, q)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", stub
    server.shutdown()
    server.server_close()


ERRORS = PromQuery(
    "prom.error-rate",
    "Error rate",
    'sum(rate(x{status="500"}[5m])) / sum(rate(x[5m]))',
    "ratio",
    "above",
    0.01,
    0.05,
    signal="error_rate",
    executed="(A) or (0 * (B))",
)


def test_a_value_over_the_critical_line_with_its_30_minute_series(
    prom: tuple[str, Stub],
) -> None:
    url, stub = prom
    r = query_check(url, ERRORS, Deadline(10))
    assert r.status is Status.critical
    assert r.summary == "20% (warn 1.0%, critical 5.0%); rising over 30 min"
    assert r.signals == {"error_rate": 0.2}
    assert len(r.evidence["series"]) == 31
    assert r.evidence["executed"] == "(A) or (0 * (B))"
    assert {q for _, q in stub.seen} == {"(A) or (0 * (B))"}  # the executed form is what is sent
    assert {p for p, _ in stub.seen} == {"/api/v1/query", "/api/v1/query_range"}


def test_signals_are_clamped_for_non_user_facing_services(prom: tuple[str, Stub]) -> None:
    url, stub = prom
    stub.value = "1"
    q = PromQuery("p", "P", "x", "ratio", "above", 0.01, 0.05, signal="error_rate", signal_max=0.98)
    assert query_check(url, q, Deadline(10), with_range=False).signals == {"error_rate": 0.98}
    stub.value = "0"
    q = PromQuery("a", "A", "x", "ratio", "below", 1, 0.5, signal="availability", signal_min=0.01)
    r = query_check(url, q, Deadline(10), with_range=False)
    assert r.status is Status.critical
    assert r.signals == {"availability": 0.01}


def test_no_data_is_unknown_and_no_traffic_is_not_an_error(prom: tuple[str, Stub]) -> None:
    url, stub = prom
    stub.value = None
    r = query_check(url, ERRORS, Deadline(10))
    assert (r.status, r.error_code) == (Status.unknown, 9)
    assert r.summary.startswith("no data for sum(rate(")
    optional = PromQuery("k8s.memory", "M", "x", "ratio", "above", 0.8, 0.9, no_data_ok=True)
    assert query_check(url, optional, Deadline(10)).status is Status.ok
    stub.value = "NaN"
    r = query_check(url, ERRORS, Deadline(10), with_range=False)
    assert (r.status, r.signals) == (Status.ok, {})
    assert r.summary.startswith("no traffic (0/0)")
    stub.value = "+Inf"
    r = query_check(url, ERRORS, Deadline(10), with_range=False)
    assert r.status is Status.ok and "infinite" in r.summary


WINDOWED = dataclasses.replace(ERRORS, executed=None)  # the runbook's [5m] query as sent


def test_over_a_threshold_the_last_minutes_are_read_too(prom: tuple[str, Stub]) -> None:
    url, stub = prom
    stub.recent = "0"  # fixed two minutes ago: the 5-minute rate still says 20%
    r = query_check(url, WINDOWED, Deadline(10), with_range=False)
    assert r.status is Status.critical  # the runbook's window decides
    assert r.signals == {"error_rate": 0.2}
    assert r.summary == (
        "20% (warn 1.0%, critical 5.0%); last 2m: 0.0%, under the thresholds "
        "(the 5m window still holds earlier minutes)"
    )
    assert r.evidence["recent"] == {"seconds": 120, "value": 0.0, "status": "ok"}
    assert ("/api/v1/query", 'sum(rate(x{status="500"}[120s])) / sum(rate(x[120s]))') in stub.seen
    stub.recent = "0.5"  # still broken
    r = query_check(url, WINDOWED, Deadline(10), with_range=False)
    assert r.summary == "20% (warn 1.0%, critical 5.0%); last 2m: 50%"
    assert r.evidence["recent"]["status"] == "critical"
    stub.recent = None  # no data for the last minutes: the runbook's value alone
    r = query_check(url, WINDOWED, Deadline(10), with_range=False)
    assert "recent" not in r.evidence and r.summary == "20% (warn 1.0%, critical 5.0%)"


def test_a_summed_rate_is_read_without_its_vector_0(prom: tuple[str, Stub]) -> None:
    """`or vector(0)` reads 0 for a target nobody scraped in the window: a dead gateway would
    look recovered. The last minutes are read from the runbook's own query, empty when dead."""
    url, stub = prom
    rate = 'sum(rate(gw{code="500"}[5m]))'
    q = dataclasses.replace(
        ERRORS, promql=rate, executed=f"({rate}) or vector(0)", unit="per_second", warn=1,
        critical=10,
    )  # fmt: skip
    stub.value = "12"
    r = query_check(url, q, Deadline(10), with_range=False)
    assert r.status is Status.critical and "recent" not in r.evidence, r.summary
    assert [qq for _, qq in stub.seen][-1] == 'sum(rate(gw{code="500"}[120s]))'


def test_the_extra_query_never_costs_the_finding_its_deadline(prom: tuple[str, Stub]) -> None:
    url, stub = prom
    stub.recent = "0"
    deadline = Deadline(0.6)  # the first answer leaves less than the 0.5 s the finding keeps
    r = query_check(url, WINDOWED, deadline, with_range=False)
    assert r.status is Status.critical and "recent" not in r.evidence
    assert len(stub.seen) == 1


def test_a_healthy_value_costs_no_second_query(prom: tuple[str, Stub]) -> None:
    url, stub = prom
    stub.value, stub.recent = "0.001", "0.9"
    r = query_check(url, WINDOWED, Deadline(10), with_range=False)
    assert r.status is Status.ok and "recent" not in r.evidence
    assert len(stub.seen) == 1
