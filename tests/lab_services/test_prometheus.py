"""The runbook's PromQL against a real Prometheus scraping the stand-ins (one job per service)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from somactl.lab.kube import KubeSimulator
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE, bad_deploy, scale
from somactl.lab.runtime.prometheus import PrometheusInstance, start_prometheus
from somactl.lab.services import ServicesHandle
from tests.helpers import require_binary, wait_until
from tests.lab_services.conftest import state

pytestmark = pytest.mark.integration

JOBS = ("gateway-api", "orchestrator", "kamachiq-service")


@pytest.fixture
def prometheus(lab: ServicesHandle, tmp_path: Path) -> Iterator[PrometheusInstance]:
    require_binary("prometheus", "prometheus")
    jobs = {name: [f"127.0.0.1:{lab.metrics_ports[name]}"] for name in JOBS}
    jobs["tool-service"] = [f"127.0.0.1:{lab.tools_port}"]
    prom = start_prometheus(tmp_path / "prometheus", jobs, scrape_interval="1s")
    try:
        yield prom
    finally:
        prom.stop()


def scalar(prom: PrometheusInstance, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_runbook_queries_see_the_broken_deployments(
    lab: ServicesHandle,
    kube: KubeSimulator,
    client: httpx.Client,
    request: pytest.FixtureRequest,
) -> None:
    c = kube.cluster
    # gateway-api: a bad deploy that takes every pod down (Recreate) -> 100 % 5xx
    c.patch(
        R.DEPLOYMENTS,
        NAMESPACE,
        "gateway-api",
        "strategic",
        {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}},
    )
    bad_deploy(c, NAMESPACE, "gateway-api")
    # kamachiq-service: scaled to zero -> nothing to scrape -> up == 0
    scale(c, NAMESPACE, "kamachiq-service", 0)
    kube.tick(45)
    client.post(f"{lab.url('orchestrator')}/_lab/mode", json={"load": "high"}).raise_for_status()
    wait_until(lambda: state(client, lab.url("gateway-api"))["kube"]["ready"] == 0)
    wait_until(lambda: not state(client, lab.url("kamachiq-service"))["kube"]["pods"])

    prom: PrometheusInstance = request.getfixturevalue("prometheus")
    up = wait_until(
        lambda: (
            len(r := prom.query('up{job=~"gateway-api|orchestrator|kamachiq-service"}')) == 3
            and {x["metric"]["job"]: x["value"][1] for x in r}
        ),
        timeout=20,
        message="three scraped jobs",
    )
    assert up == {"gateway-api": "1", "orchestrator": "1", "kamachiq-service": "0"}

    def two_samples() -> bool:
        v = scalar(prom, 'rate(gateway_requests_total{status="500"}[5m])')
        return v is not None and v > 0

    wait_until(two_samples, timeout=15, message="a 500 rate on the gateway")
    error_ratio = scalar(
        prom,
        'sum(rate(http_requests_total{job="gateway-api",status=~"5.."}[5m])) '
        '/ sum(rate(http_requests_total{job="gateway-api"}[5m]))',
    )
    assert error_ratio == 1.0
    p95 = wait_until(
        lambda: scalar(
            prom,
            "histogram_quantile(0.95, sum by (le) "
            '(rate(http_request_duration_seconds_bucket{job="orchestrator"}[5m])))',
        ),
        timeout=10,
        message="an orchestrator p95",
    )
    assert p95 > 5.0
    # overloaded, not broken: only the ~2 % of requests that time out are 5xx
    orchestrator_errors = scalar(
        prom,
        'sum(rate(http_requests_total{job="orchestrator",status=~"5.."}[5m])) '
        '/ sum(rate(http_requests_total{job="orchestrator"}[5m]))',
    )
    assert orchestrator_errors is not None and orchestrator_errors < 0.05
    assert scalar(prom, 'up{job="tool-service"}') == 1.0
