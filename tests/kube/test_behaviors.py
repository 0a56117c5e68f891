"""Pod behaviours: each bad deploy looks like one (status, restarts, memory, logs)."""

from __future__ import annotations

from typing import Any

import pytest

from somactl.lab.kube import MEMORY_ANNOTATION, Cluster
from somactl.lab.kube import resources as R
from somactl.lab.kube.api import Api, Request
from somactl.lab.kube.behaviors import Behavior, behavior_for, register_behavior
from somactl.lab.kube.seed import NAMESPACE, bad_deploy, seed, set_behavior


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    seed(c)
    return c


def _pods(c: Cluster, app: str) -> list[dict[str, Any]]:
    return [
        p
        for p in c.store.select(R.PODS.key, NAMESPACE)
        if p["metadata"]["labels"].get("app") == app
    ]


def _new_pod(c: Cluster, app: str) -> dict[str, Any]:
    d = c.get(R.DEPLOYMENTS, NAMESPACE, app)
    h = next(
        rs
        for rs in c.store.select(R.REPLICASETS.key, NAMESPACE)
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        and rs["metadata"]["labels"]["app"] == app
    )["metadata"]["labels"]["pod-template-hash"]
    return next(p for p in _pods(c, app) if p["metadata"]["labels"]["pod-template-hash"] == h)


def _logs(c: Cluster, pod: dict[str, Any], **params: str) -> tuple[int, str]:
    q = {k: [v] for k, v in params.items()}
    resp = Api(c).handle(
        Request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}/log", q, {})
    )
    return resp.status, resp.body.decode()


def test_image_and_annotation_select_behaviours() -> None:
    assert behavior_for({}, "x:bad").name == "crashloop"
    assert behavior_for({}, "x:1.2-crashloop").name == "crashloop"
    assert behavior_for({}, "x:1.2-oom").name == "oom"
    assert behavior_for({}, "x:1.2").name == "healthy"
    assert behavior_for({"somactl.lab/behavior": "leak"}, "x:1.2").name == "leak"
    register_behavior(Behavior("flaky-test", "test only", ready_delay=None))
    assert behavior_for({"somactl.lab/behavior": "flaky-test"}, "x").name == "flaky-test"


def test_oom_behaviour(cluster: Cluster) -> None:
    bad_deploy(cluster, NAMESPACE, "orchestrator", "oom")
    cluster.tick(20)
    pod = _new_pod(cluster, "orchestrator")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    assert cs["restartCount"] >= 1 and cs["ready"] is False
    status, text = _logs(cluster, pod, previous="true")
    assert status == 200 and "rss=" in text


def test_leak_grows_memory_then_oomkills_at_the_limit(cluster: Cluster) -> None:
    set_behavior(cluster, NAMESPACE, "redis", "leak")  # limit 256Mi
    cluster.tick(10)
    pod = _new_pod(cluster, "redis")
    first = int(pod["metadata"]["annotations"][MEMORY_ANNOTATION])
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    cluster.tick(30)
    pod = _new_pod(cluster, "redis")
    assert int(pod["metadata"]["annotations"][MEMORY_ANNOTATION]) > first + 40 * 2**20
    cluster.tick(60)
    cs = _new_pod(cluster, "redis")["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert cs["restartCount"] == 1


def test_slow_start_is_not_ready_for_90_seconds(cluster: Cluster) -> None:
    set_behavior(cluster, NAMESPACE, "kamachiq-service", "slow-start")
    cluster.tick(60)
    pod = _new_pod(cluster, "kamachiq-service")
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    d = cluster.get(R.DEPLOYMENTS, NAMESPACE, "kamachiq-service")
    assert d["status"]["updatedReplicas"] == 1
    unhealthy = [
        e for e in cluster.store.select(R.EVENTS.key, NAMESPACE) if e["reason"] == "Unhealthy"
    ]
    assert unhealthy and unhealthy[0]["type"] == "Warning"
    cluster.tick(60)
    assert _new_pod(cluster, "kamachiq-service")["status"]["containerStatuses"][0]["ready"]


def test_error_logs_have_5xx_and_tracebacks(cluster: Cluster) -> None:
    set_behavior(cluster, NAMESPACE, "gateway-api", "error-logs")
    cluster.tick(120)
    pod = _new_pod(cluster, "gateway-api")
    status, text = _logs(cluster, pod, tailLines="300")
    assert status == 200
    assert " 500 Internal Server Error" in text or " 502 Bad Gateway" in text
    assert "Traceback (most recent call last):" in text
    assert len(text.splitlines()) == 300
    status, waiting = _logs(cluster, pod, container="nope")
    assert status == 400 and "is not valid for pod" in waiting
