"""Fixtures: the simulated Kubernetes API in-process, and the stand-ins pointed at it.

Everything binds 127.0.0.1 on free ports. The simulator's clock only moves when a test ticks it,
so the deployment states are exact; the stand-ins poll it every 0.1 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from somactl.lab.kube import Cluster, KubeSimulator
from somactl.lab.kube.seed import NAMESPACE, seed
from somactl.lab.services import ServicesHandle, start_services
from somactl.lab.services.exposition import parse_exposition

GITHUB_TOKEN = "ghp_labservicestesttoken0001"


@pytest.fixture
def kube() -> Iterator[KubeSimulator]:
    cluster = Cluster()
    # Settled in the past so that ticking never pushes the simulator past the wall clock.
    seed(cluster, end_at=time.time() - 600)
    server = KubeSimulator(cluster).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab(kube: KubeSimulator) -> Iterator[ServicesHandle]:
    handle = start_services(
        kube_api=kube.url,
        namespace=NAMESPACE,
        poll_interval=0.1,
        seed=7,
        github_token=GITHUB_TOKEN,
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def scrape(client: httpx.Client, url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    resp = client.get(f"{url}/metrics")
    assert resp.status_code == 200, resp.text
    return parse_exposition(resp.text)


def request_totals(samples: dict[str, list[tuple[dict[str, str], float]]]) -> tuple[float, float]:
    """(all requests, 5xx requests) from http_requests_total."""
    rows = samples["http_requests_total"]
    total = sum(v for _, v in rows)
    errors = sum(v for labels, v in rows if labels["status"].startswith("5"))
    return total, errors


def state(client: httpx.Client, url: str) -> dict[str, Any]:
    resp = client.get(f"{url}/_lab/state")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data
