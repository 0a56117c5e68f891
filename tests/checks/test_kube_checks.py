"""The Kubernetes checks against the simulated API (in-process, its clock ticked by the test)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from somactl.checks.base import Status
from somactl.checks.kube import (
    KubeSession,
    Workload,
    logs_check,
    pods_check,
    recent_rollouts_check,
    rollout_check,
)
from somactl.clients.kube import KubeTarget
from somactl.core.deadline import Deadline
from somactl.core.errors import UnreachableError
from somactl.lab.kube import KubeSimulator, write_kubeconfig
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE, bad_deploy, scale, set_behavior

GATEWAY = Workload("gateway-api", "deployment", "gateway-api")


def session(target: KubeTarget, seconds: float = 10.0) -> KubeSession:
    return KubeSession(target, Deadline(seconds))


def test_a_healthy_gateway_is_ok_everywhere(kube_target: KubeTarget) -> None:
    s = session(kube_target)
    pods = pods_check(s, GATEWAY, down_service="gateway-api")
    assert (pods.status, pods.summary) == (Status.ok, "3/3 ready")
    assert pods.signals == {}
    assert pods.evidence["statuses"] == {"Running": 3}
    logs = logs_check(s, GATEWAY, tail=50)
    assert logs.status is Status.ok
    assert logs.evidence["error_lines"] == 0 and logs.evidence["lines"] > 0
    rollout = rollout_check(s, GATEWAY)
    assert rollout.status is Status.ok
    assert rollout.evidence["state"] == "complete"
    assert rollout.evidence["current_revision"] == 3
    assert rollout.facts["recent_deploy"] is False
    assert [r["revision"] for r in rollout.evidence["revisions"]] == [1, 2, 3]
    recent = recent_rollouts_check(s)
    assert (recent.status, recent.summary) == (Status.ok, "no rollouts in the last hour")


def test_a_crash_looping_recreate_deploy_is_critical_with_rollback_facts(
    sim: KubeSimulator, kube_target: KubeTarget
) -> None:
    cluster = sim.cluster
    cluster.patch(
        R.DEPLOYMENTS,
        NAMESPACE,
        "gateway-api",
        "strategic",
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        },
    )
    bad_deploy(cluster, NAMESPACE, "gateway-api", change_cause="deploy 1.9.0-crashloop (SOMA-1)")
    sim.tick(40)
    s = session(kube_target)
    pods = pods_check(s, GATEWAY, down_service="gateway-api")
    assert pods.status is Status.critical
    assert pods.summary.startswith("0/3 ready: no pod is ready; 3 CrashLoopBackOff")
    assert pods.signals == {"service_down": ["gateway-api"]}
    assert pods.facts["crashloop"] is True
    assert pods.evidence["warning_event_count"] > 0
    assert {e["reason"] for e in pods.evidence["warning_events"]} >= {"BackOff"}
    logs = logs_check(s, GATEWAY, tail=200)
    assert logs.status is Status.warn
    assert logs.evidence["previous"] is True
    assert logs.evidence["worst"] == "ConnectionRefusedError: [Errno 111] Connection refused"
    rollout = rollout_check(s, GATEWAY)
    assert rollout.facts["recent_deploy"] is True
    assert (rollout.facts["current_revision"], rollout.facts["previous_revision"]) == (4, 3)
    assert rollout.facts["change_cause"] == "deploy 1.9.0-crashloop (SOMA-1)"
    assert rollout.status is Status.warn  # 0 of 3 new pods available: still progressing
    recent = recent_rollouts_check(s)
    assert [c["workload"] for c in recent.evidence["rollouts"]] == ["gateway-api"]
    assert recent.evidence["rollouts"][0]["revision"] == 4


def test_a_leaking_service_shows_oomkills_as_memory_at_its_limit(
    sim: KubeSimulator, kube_target: KubeTarget
) -> None:
    set_behavior(sim.cluster, NAMESPACE, "orchestrator", "leak")
    sim.tick(900, step=5)
    orch = Workload("orchestrator", "deployment", "orchestrator")
    pods = pods_check(session(kube_target), orch, down_service="orchestrator")
    assert pods.status is Status.warn
    assert "OOMKilled in the last hour" in pods.summary
    assert pods.facts["oom_killed"] is True
    assert pods.signals["memory_ratio"] == 1.0


def test_scaled_to_zero_is_a_service_down(sim: KubeSimulator, kube_target: KubeTarget) -> None:
    scale(sim.cluster, NAMESPACE, "orchestrator", 0)
    sim.tick(30)
    orch = Workload("orchestrator", "deployment", "orchestrator")
    pods = pods_check(session(kube_target), orch, down_service="orchestrator")
    assert pods.status is Status.critical
    assert pods.summary.startswith("0/0 ready: scaled to 0 replicas")
    assert pods.signals == {"service_down": ["orchestrator"]}
    s = session(kube_target)
    assert logs_check(s, orch, tail=10).status is Status.unknown


def test_statefulset_rollout_state(kube_target: KubeTarget) -> None:
    pg = Workload("postgres", "statefulset", "postgres")
    s = session(kube_target)
    r = rollout_check(s, pg)
    assert r.status is Status.ok
    assert r.evidence["state"] == "complete"
    assert pods_check(s, pg, down_service="postgres").summary == "1/1 ready"


def test_pods_are_listed_page_by_page(sim: KubeSimulator, kube_target: KubeTarget) -> None:
    scale(sim.cluster, NAMESPACE, "gateway-api", 1200)
    sim.tick(10)
    s = session(kube_target, 30.0)
    sim.clear_requests()
    pods = s.pods(GATEWAY)
    pages = [r for r in sim.requests if r.path.endswith("/pods")]
    assert len(pods) == 1200
    assert len(pages) == 3  # limit=500: 500 + 500 + 200
    assert all("limit=500" in r.query for r in pages)


def test_an_unreachable_api_server_fails_fast_without_the_clients_retries(tmp_path: Path) -> None:
    # a port that refuses connections: the kubernetes client's default retries take ~9 s
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}", NAMESPACE)
    s = session(KubeTarget(str(path), None, NAMESPACE), 10.0)
    t0 = time.monotonic()
    with pytest.raises(UnreachableError, match=r"kubernetes: connection refused \(127\.0\.0\.1"):
        pods_check(s, GATEWAY, down_service="gateway-api")
    assert time.monotonic() - t0 < 2.0
