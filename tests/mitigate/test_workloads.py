"""scale, restart, autoscale, redis-restart against the simulated API (reliability cases 10-15)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from somactl.actions.base import Actor
from somactl.actions.kube import CHANGE_CAUSE, RESTARTED_AT, Workload
from somactl.actions.restart import RestartAction
from somactl.clients.kube import KubeClient, KubeTarget
from somactl.core.deadline import Deadline
from somactl.core.errors import PreconditionError
from somactl.lab.kube import KubeSimulator
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE
from tests.mitigate.conftest import (
    ACTOR,
    Env,
    Pty,
    Run,
    deployment,
    last_seq,
    mutations_since,
    writes_since,
)

GW = "gateway-api"


def add_hpa(sim: KubeSimulator, name: str = GW, lo: int = 3, hi: int = 10) -> None:
    sim.cluster.create(
        R.HPAS,
        NAMESPACE,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": lo,
                "maxReplicas": hi,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        },
    )


def replicas(sim: KubeSimulator, name: str = GW) -> int:
    return int(deployment(sim, name)["spec"]["replicas"])


def set_replicas(sim: KubeSimulator, n: int, name: str = GW) -> None:
    sim.cluster.patch_scale(R.DEPLOYMENTS, NAMESPACE, name, "merge", {"spec": {"replicas": n}})


# --- scale ---------------------------------------------------------------------------------------


def test_scale_puts_scale_with_resource_version_and_sets_change_cause(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    seq = last_seq(sim)
    r = cli("mitigate", "scale", GW, "--replicas", "5", "--yes", "--verify", "0")
    assert r.rc == 0, r.err
    assert "scale deployment/gateway-api from 3 to 5 replicas" in r.out
    assert replicas(sim) == 5
    puts = [x for x in sim.requests if x.seq > seq and x.method == "PUT"]
    assert [p.path.rsplit("/", 1)[-1] for p in puts] == ["scale"]
    assert deployment(sim, GW)["metadata"]["annotations"][CHANGE_CAUSE] == (
        f"somactl: scale to 5 replicas by {ACTOR}"
    )
    again = cli("mitigate", "scale", GW, "--replicas", "5", "--yes", "--verify", "0")
    assert again.rc == 0 and "already has 5 replicas" in again.out


def test_case11_hpa_will_override_refused_unless_override(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    add_hpa(sim)
    sim.tick(5)
    seq = last_seq(sim)
    for n, words in (("0", "stops autoscaling"), ("1", "will override this and scale")):
        r = cli("mitigate", "scale", GW, "--replicas", n, "--yes", "--verify", "0")
        assert r.rc == 5, r.err
        assert "HPA gateway-api (min 3, max 10)" in r.err and words in r.err
        assert "--override-hpa" in r.err
    assert mutations_since(sim, seq) == []
    assert replicas(sim) == 3
    j = cli("-o", "json", "mitigate", "scale", GW, "--replicas", "0", "--dry-run")
    assert json.loads(j.out)["data"]["plan"]["details"]["hpa"][0]["min"] == 3
    ok = cli(
        "mitigate", "scale", GW, "--replicas", "12", "--override-hpa", "--yes", "--verify", "0"
    )
    assert ok.rc == 0, ok.err
    assert "will override this and scale deployment/gateway-api back to 10" in ok.out


@pytest.mark.parametrize("value", ["-1", "abc", "99999999999", "1001"])
def test_case12_bad_replicas_are_usage_errors_without_a_network_call(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], value: str
) -> None:
    seq = last_seq(sim)
    r = cli("mitigate", "scale", GW, "--replicas", value, "--yes")
    assert r.rc == 2, r.err
    assert "--replicas" in r.err
    if value != "abc":
        assert f"--replicas must be between 0 and 1000 (got {value})" in r.err
    assert [x for x in sim.requests if x.seq > seq] == []  # not even a GET


def test_scale_to_zero_needs_the_typed_name(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty]
) -> None:
    seq = last_seq(sim)
    p = spawn(kenv, "mitigate", "scale", "orchestrator", "--replicas", "0", "--verify", "0")
    p.expect("Type the name 'orchestrator' to scale deployment/orchestrator to 0 replicas: ")
    p.send("yes\n")
    r = p.finish()
    assert r.rc == 4 and "the name did not match 'orchestrator'" in r.err
    assert mutations_since(sim, seq) == []
    p = spawn(kenv, "mitigate", "scale", "orchestrator", "--replicas", "0", "--verify", "0")
    p.expect("Type the name 'orchestrator'")
    p.send("orchestrator\n")
    r = p.finish()
    assert r.rc == 0, r.err
    assert replicas(sim, "orchestrator") == 0


def test_case13_replicas_changed_between_plan_and_consent(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty]
) -> None:
    set_replicas(sim, 10)
    sim.tick(30)
    seq = last_seq(sim)
    p = spawn(kenv, "mitigate", "scale", GW, "--replicas", "4", "--verify", "0")
    p.expect("Type 'yes' to scale deployment/gateway-api to 4 replicas")
    set_replicas(sim, 12)  # someone (or something) scaled it meanwhile
    p.send("yes\n")
    r = p.finish()
    assert r.rc == 5, r.err
    assert "expected replicas 10, found 12" in r.err
    assert mutations_since(sim, seq) == []
    assert replicas(sim) == 12


# --- restart -----------------------------------------------------------------------------------


def test_restart_sets_restarted_at_and_rolls_the_pods(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], ticker: Callable[..., Any]
) -> None:
    ticker(2.0)
    r = cli("mitigate", "restart", "orchestrator", "--yes", "--verify", "60s")
    assert r.rc == 0, r.err
    d = deployment(sim, "orchestrator")
    assert RESTARTED_AT in d["spec"]["template"]["metadata"]["annotations"]
    assert d["metadata"]["annotations"][CHANGE_CAUSE] == f"somactl: restart by {ACTOR}"
    assert 'CONTAINED: deployment "orchestrator" successfully rolled out' in r.out
    assert "still there: fresh pods clear a leak or a stuck state" in r.out


def test_case10_second_restart_within_the_same_second_is_refused(
    sim: KubeSimulator, kenv: Env
) -> None:
    """kubectl: an empty patch -> "restart has already been triggered within the past second"."""
    fixed = datetime(2026, 11, 26, 18, 51, 48, 300000, tzinfo=UTC)
    client = KubeClient(KubeTarget(kenv.vars["SOMACTL_KUBECONFIG"], None, NAMESPACE), Deadline(10))
    seq = last_seq(sim)

    def action() -> RestartAction:
        return RestartAction(
            client, Workload("deployment", "orchestrator"), actor=Actor("t"), clock=lambda: fixed
        )

    first = action()
    out = first.apply(first.plan())
    assert out.status == "applied" and out.details["restartedAt"] == "2026-11-26T18:51:48Z"
    second = action()
    plan = second.plan()
    with pytest.raises(PreconditionError) as info:
        second.apply(plan)
    assert info.value.code == 5
    assert "already triggered within the past second" in info.value.message
    assert len(mutations_since(sim, seq)) == 1  # no duplicate rollout


def test_database_restart_is_the_statefulset_behind_its_typed_name(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty], cli: Callable[..., Run]
) -> None:
    seq = last_seq(sim)
    r = cli("mitigate", "restart", "postgres", "--yes", "--verify", "0", "--dry-run")
    assert r.rc == 0 and "consent" not in r.out
    assert "restart statefulset/postgres" in r.out
    p = spawn(kenv, "mitigate", "restart", "postgres", "--verify", "0")
    p.expect("Type the name 'postgres' to restart statefulset/postgres: ")
    p.send("yes\n")
    assert p.finish().rc == 4
    assert mutations_since(sim, seq) == []
    p = spawn(kenv, "mitigate", "restart", "postgres", "--verify", "0")
    p.expect("Type the name 'postgres'")
    p.send("postgres\n")
    done = p.finish()
    assert done.rc == 0, done.err
    writes = mutations_since(sim, seq)
    assert writes == [("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/postgres")]
    sts = sim.cluster.get(R.STATEFULSETS, NAMESPACE, "postgres")
    assert RESTARTED_AT in sts["spec"]["template"]["metadata"]["annotations"]


def test_redis_restart_restarts_the_redis_deployment(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    seq = last_seq(sim)
    r = cli("mitigate", "redis-restart", "--yes", "--verify", "0")
    assert r.rc == 0, r.err
    assert mutations_since(sim, seq) == [
        ("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/redis")
    ]


# --- autoscale ---------------------------------------------------------------------------------


def test_autoscale_creates_an_autoscaling_v2_hpa(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    r = cli(
        "mitigate", "autoscale", GW, "--min", "3", "--max", "10", "--cpu-percent", "70", "--yes",
        "--verify", "0",
    )  # fmt: skip
    assert r.rc == 0, r.err
    h = sim.cluster.get(R.HPAS, NAMESPACE, GW)
    assert h["spec"]["minReplicas"] == 3 and h["spec"]["maxReplicas"] == 10
    metric = h["spec"]["metrics"][0]["resource"]
    assert metric == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert h["metadata"]["annotations"][CHANGE_CAUSE].startswith("somactl: autoscale min 3")
    posts = [x for x in sim.requests if x.method == "POST"]
    assert posts[-1].path == f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers"


def test_case14_max_below_min_is_a_usage_error_without_a_network_call(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    seq = last_seq(sim)
    r = cli("mitigate", "autoscale", GW, "--min", "5", "--max", "3", "--yes")
    assert r.rc == 2
    assert "--max must be ≥ --min (max 3, min 5)" in r.err
    assert [x for x in sim.requests if x.seq > seq] == []


def test_case15_existing_hpa_is_shown_and_needs_replace(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    add_hpa(sim, lo=2, hi=6)
    sim.tick(5)
    seq = last_seq(sim)
    r = cli("mitigate", "autoscale", GW, "--max", "10", "--yes", "--verify", "0")
    assert r.rc == 5
    assert "existing HPA gateway-api: min 2, max 6, target CPU 80%" in r.out
    assert "min: 2 → 3" in r.out and "max: 6 → 10" in r.out and "cpu_percent: 80 → 70" in r.out
    assert "already has HPA gateway-api" in r.err and "--replace" in r.err
    assert mutations_since(sim, seq) == []
    ok = cli("mitigate", "autoscale", GW, "--max", "10", "--replace", "--yes", "--verify", "1s")
    assert ok.rc == 0, ok.err
    h = sim.cluster.get(R.HPAS, NAMESPACE, GW)
    assert (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) == (3, 10)
    assert [m[0] for m in mutations_since(sim, seq)] == ["PUT"]
    assert "RECOVERED: HPA gateway-api: min 3, max 10, CPU 70%" in ok.out


def test_server_dry_run_of_scale_restart_autoscale_persists_nothing(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    """Reliability case 5 for the other Kubernetes actions."""
    seq = last_seq(sim)
    before = json.dumps(deployment(sim, GW), sort_keys=True)
    for argv in (
        ("scale", GW, "--replicas", "6"),
        ("restart", GW),
        ("autoscale", GW),
    ):
        r = cli("mitigate", *argv, "--dry-run=server")
        assert r.rc == 0, r.err
        assert "(server dry run)" in r.out
    writes = writes_since(sim, seq)
    assert writes and all("dryRun=All" in q for _, _, q in writes)
    assert mutations_since(sim, seq) == []
    assert json.dumps(deployment(sim, GW), sort_keys=True) == before
    assert sim.cluster.store.get(R.HPAS.key, NAMESPACE, GW) is None
