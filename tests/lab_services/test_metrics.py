"""The service stand-ins' /metrics, against the simulated Kubernetes API (real HTTP both ways)."""

from __future__ import annotations

import math
import subprocess
import time
from typing import Any

import httpx
import pytest

from somactl.lab.kube import Cluster, KubeSimulator
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE, bad_deploy, scale, seed, set_behavior, set_image
from somactl.lab.services import ServicesHandle, start_services
from somactl.lab.services.exposition import parse_exposition
from somactl.lab.services.kubestate import pod_view
from tests.helpers import require_binary, wait_until
from tests.lab_services.conftest import request_totals, scrape, state

Samples = dict[str, list[tuple[dict[str, str], float]]]
SERVICES = ("gateway-api", "orchestrator", "kamachiq-service")
MIB = 1024 * 1024


def set_mode(client: httpx.Client, url: str, **mode: Any) -> dict[str, Any]:
    resp = client.post(f"{url}/_lab/mode", json=mode)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def window(client: httpx.Client, url: str, min_requests: int = 200) -> tuple[Samples, Samples]:
    """Two scrapes at least `min_requests` simulated requests apart."""
    first = scrape(client, url)
    total0, _ = request_totals(first)
    holder: dict[str, Samples] = {}

    def enough() -> bool:
        holder["s"] = scrape(client, url)
        return request_totals(holder["s"])[0] - total0 >= min_requests

    wait_until(enough, timeout=10, interval=0.05, message=f"{min_requests} requests")
    return first, holder["s"]


def error_ratio(a: Samples, b: Samples) -> float:
    (t0, e0), (t1, e1) = request_totals(a), request_totals(b)
    return (e1 - e0) / (t1 - t0)


def p95(a: Samples, b: Samples) -> float:
    """histogram_quantile(0.95, increase(..._bucket)) between two scrapes, as Prometheus does."""

    def buckets(s: Samples) -> dict[float, float]:
        return {float(lbl["le"]): v for lbl, v in s["http_request_duration_seconds_bucket"]}

    ba, bb = buckets(a), buckets(b)
    delta = sorted((le, bb[le] - ba.get(le, 0.0)) for le in bb)
    total = delta[-1][1]
    rank = 0.95 * total
    prev_le, prev_cum = 0.0, 0.0
    for le, cum in delta:
        if cum >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_cum) / max(cum - prev_cum, 1e-9)
        prev_le, prev_cum = le, cum
    return prev_le


def value(s: Samples, name: str, **labels: str) -> float:
    rows = [v for lbl, v in s.get(name, []) if all(lbl.get(k) == x for k, x in labels.items())]
    assert rows, f"no {name}{labels}"
    return sum(rows)


# ---- exposition ----------------------------------------------------------------------


def test_exposition_is_valid_prometheus_text(lab: ServicesHandle, client: httpx.Client) -> None:
    promtool = require_binary("promtool", "prometheus")
    for name in (*SERVICES, "tools"):
        resp = client.get(f"{lab.url(name)}/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=resp.content,
            capture_output=True,
            timeout=20,
            check=False,
        )
        assert checked.returncode == 0, (name, checked.stdout, checked.stderr)
        samples = parse_exposition(resp.text)
        for family in (
            "http_requests_total",
            "http_request_duration_seconds_bucket",
            "http_request_duration_seconds_sum",
            "http_request_duration_seconds_count",
        ):
            assert family in samples, (name, family)
        assert {"service", "method", "status"} <= set(samples["http_requests_total"][0][0])
        # cumulative buckets ending in +Inf == _count
        les = [(float(lbl["le"]), v) for lbl, v in samples["http_request_duration_seconds_bucket"]]
        assert [v for _, v in les] == sorted(v for _, v in les)
        assert math.isinf(les[-1][0])
        assert les[-1][1] == samples["http_request_duration_seconds_count"][0][1]
        if name != "tools":
            assert samples["process_resident_memory_bytes"][0][1] > 50 * MIB
    gw = parse_exposition(client.get(f"{lab.url('gateway-api')}/metrics").text)
    assert {lbl["status"] for lbl, _ in gw["gateway_requests_total"]} >= {"200", "500"}
    orch = parse_exposition(client.get(f"{lab.url('orchestrator')}/metrics").text)
    assert "gateway_requests_total" not in orch


def test_parser_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_exposition('ok_total{a="1"} 3\nnot a sample\n')
    with pytest.raises(ValueError, match="bad value"):
        parse_exposition("x_total abc\n")
    assert parse_exposition('m{a="q\\"x"} +Inf\n') == {"m": [({"a": 'q"x'}, math.inf)]}


def test_counters_advance_at_20_to_50_requests_per_second(
    lab: ServicesHandle, client: httpx.Client
) -> None:
    url = lab.url("gateway-api")
    t0 = time.monotonic()
    total0, _ = request_totals(scrape(client, url))
    wait_until(lambda: time.monotonic() - t0 >= 1.0, timeout=3)
    total1, _ = request_totals(scrape(client, url))
    rate = (total1 - total0) / (time.monotonic() - t0)
    assert 15 <= rate <= 60, rate


# ---- following the deployment ---------------------------------------------------------------


def test_healthy_deployment_serves_no_5xx(lab: ServicesHandle, client: httpx.Client) -> None:
    url = lab.url("gateway-api")
    st = wait_until(lambda: (s := state(client, url))["kube"]["ready"] == 3 and s)
    assert st["kube"]["image"].endswith("gateway-api:1.9.0")
    set_mode(client, url, rps=2000)
    a, b = window(client, url)
    assert error_ratio(a, b) == 0.0
    assert client.get(f"{url}/health").status_code == 200


def test_no_ready_pod_is_100_percent_5xx_and_rollback_heals(
    lab: ServicesHandle, kube: KubeSimulator, client: httpx.Client
) -> None:
    url = lab.url("gateway-api")
    c = kube.cluster
    c.patch(
        R.DEPLOYMENTS,
        NAMESPACE,
        "gateway-api",
        "strategic",
        {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}},
    )
    bad_deploy(c, NAMESPACE, "gateway-api")
    kube.tick(40)
    wait_until(
        lambda: (s := state(client, url)["kube"])["ready"] == 0 and s["crashing"] == 3,
        message="three crash-looping pods, none ready",
    )
    set_mode(client, url, rps=2000)
    a, b = window(client, url)
    assert error_ratio(a, b) == 1.0
    assert value(b, "gateway_requests_total", status="500") > value(
        a, "gateway_requests_total", status="500"
    )
    assert value(b, "lab_error_ratio") == 1.0
    assert client.get(f"{url}/health").status_code == 503
    # the pods still exist, so the scrape (Prometheus' `up`) succeeds and shows the 5xx
    assert client.get(f"{url}/metrics").status_code == 200

    set_image(c, NAMESPACE, "gateway-api", "registry.somagent.dev/somagent/gateway-api:1.9.0")
    kube.tick(40)
    wait_until(lambda: state(client, url)["kube"]["ready"] == 3, message="rolled back")
    a, b = window(client, url)
    assert error_ratio(a, b) == 0.0


def test_one_crash_looping_pod_next_to_three_ready_is_a_quarter(
    lab: ServicesHandle, kube: KubeSimulator, client: httpx.Client
) -> None:
    url = lab.url("gateway-api")
    bad_deploy(kube.cluster, NAMESPACE, "gateway-api")  # RollingUpdate: stuck at 3 old + 1 new
    kube.tick(40)
    st = wait_until(lambda: (s := state(client, url))["kube"]["crashing"] == 1 and s)
    assert st["kube"]["ready"] == 3
    assert st["condition"]["error_ratio"] == 0.25
    set_mode(client, url, rps=5000)
    a, b = window(client, url, min_requests=1500)
    assert abs(error_ratio(a, b) - 0.25) < 0.06


def test_scaled_to_zero_fails_the_scrape_unless_told_otherwise(
    lab: ServicesHandle, kube: KubeSimulator, client: httpx.Client
) -> None:
    url = lab.url("kamachiq-service")
    scale(kube.cluster, NAMESPACE, "kamachiq-service", 0)
    kube.tick(45)  # past the 30 s termination grace period
    wait_until(lambda: not state(client, url)["kube"]["pods"], message="no pods left")
    resp = client.get(f"{url}/metrics")
    assert resp.status_code == 503  # Prometheus records up == 0
    set_mode(client, url, scrape="up", rps=2000)
    a, b = window(client, url)
    assert error_ratio(a, b) == 1.0
    set_mode(client, url, scrape="down")
    assert client.get(f"{url}/metrics").status_code == 503


def test_a_leaking_pod_grows_memory_until_oomkilled(
    lab: ServicesHandle, kube: KubeSimulator, client: httpx.Client
) -> None:
    url = lab.url("orchestrator")
    set_behavior(kube.cluster, NAMESPACE, "orchestrator", "leak")
    kube.tick(30)
    wait_until(
        lambda: all(
            p["behavior"] == "leak" and p["ready"] for p in state(client, url)["kube"]["pods"]
        ),
        message="leak rollout",
    )
    before = value(scrape(client, url), "process_resident_memory_bytes")
    kube.tick(30)  # 2 MiB/s

    def grown() -> float:
        now = value(scrape(client, url), "process_resident_memory_bytes")
        return now if now >= before + 40 * MIB else 0.0

    wait_until(grown, message="memory grew by 40 MiB")
    s = scrape(client, url)
    assert (
        value(s, "container_spec_memory_limit_bytes") / len(s["container_spec_memory_limit_bytes"])
        == 1024 * MIB
    )
    assert len(s["container_memory_working_set_bytes"]) == 2
    kube.tick(500)  # past the 1 GiB limit: OOMKilled, restarted
    wait_until(
        lambda: value(scrape(client, url), "kube_pod_container_status_restarts_total") >= 2,
        message="OOMKilled restarts",
    )
    assert any(p["oom_killed"] for p in state(client, url)["kube"]["pods"])


def test_high_load_pushes_p95_past_5s_until_scaled_out(
    lab: ServicesHandle, kube: KubeSimulator, client: httpx.Client
) -> None:
    url = lab.url("gateway-api")
    set_mode(client, url, rps=1000)
    a, b = window(client, url)
    assert p95(a, b) < 1.0
    mode = set_mode(client, url, load="high")
    assert mode["relief_replicas"] == 10
    a, b = window(client, url, min_requests=400)
    assert p95(a, b) > 5.0
    assert state(client, url)["condition"]["overloaded"] is True
    # the runbook's mitigation: kubectl scale --replicas=10
    scale(kube.cluster, NAMESPACE, "gateway-api", 10)
    kube.tick(20)
    wait_until(lambda: state(client, url)["kube"]["ready"] == 10, message="10 ready replicas")
    a, b = window(client, url, min_requests=400)
    assert p95(a, b) < 1.0
    set_mode(client, url, load="normal")


def test_unreachable_api_keeps_the_last_state(client: httpx.Client) -> None:
    cluster = Cluster()
    seed(cluster, end_at=time.time() - 600)
    sim = KubeSimulator(cluster).start()
    stopped = False
    handle = start_services(
        kube_api=sim.url, namespace=NAMESPACE, poll_interval=0.1, services=("gateway-api",)
    )
    try:
        url = handle.url("gateway-api")
        cluster.patch(
            R.DEPLOYMENTS,
            NAMESPACE,
            "gateway-api",
            "strategic",
            {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}},
        )
        bad_deploy(cluster, NAMESPACE, "gateway-api")
        sim.tick(40)
        wait_until(lambda: state(client, url)["kube"]["ready"] == 0)
        sim.stop()
        stopped = True
        st = wait_until(
            lambda: (s := state(client, url))["kube"]["api_up"] is False and s,
            message="the watcher noticed the API is gone",
        )
        assert st["kube"]["failures"] >= 1
        assert st["condition"]["error_ratio"] == 1.0
        s = scrape(client, url)
        assert value(s, "lab_kube_api_up") == 0.0
        assert value(s, "lab_error_ratio") == 1.0
    finally:
        handle.stop()
        if not stopped:
            sim.stop()


# ---- controls ----------------------------------------------------------------------


def test_mode_control_validates_and_overrides(lab: ServicesHandle, client: httpx.Client) -> None:
    url = lab.url("orchestrator")
    for bad in (
        {"load": "extreme"},
        {"error_rate": 1.5},
        {"error_rate": "x"},
        {"scrape": "maybe"},
        {"relief_replicas": 0},
        {"bogus": 1},
    ):
        resp = client.post(f"{url}/_lab/mode", json=bad)
        assert resp.status_code == 400, bad
        assert "error" in resp.json()
    assert client.post(f"{url}/_lab/mode", content=b"{not json").status_code == 400
    assert client.get(f"{url}/_lab/mode").json()["error_rate"] is None
    set_mode(client, url, error_rate=0.5, rps=3000)
    st = state(client, url)
    assert st["condition"] == {
        "error_ratio": 0.5,
        "overloaded": False,
        "scrape_ok": True,
        "reason": "lab override",
    }
    a, b = window(client, url, min_requests=1500)
    assert abs(error_ratio(a, b) - 0.5) < 0.07
    reset = client.post(f"{url}/_lab/reset").json()
    assert reset["error_rate"] is None and reset["load"] == "normal"
    assert client.get(f"{url}/nope").status_code == 404
    assert client.delete(f"{url}/metrics").status_code == 405


def test_pod_view_reads_the_kubernetes_pod_shape() -> None:
    pod = {
        "metadata": {
            "name": "gateway-api-abc-12345",
            "annotations": {"somactl.lab/memory-working-set-bytes": "157286400"},
        },
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": "r/gateway-api:1.9.0",
                    "resources": {"limits": {"memory": "512Mi"}},
                }
            ]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "api",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                }
            ],
        },
    }
    v = pod_view(pod)
    assert (v.ready, v.crashing, v.oom_killed, v.restarts) == (False, True, True, 4)
    assert (v.memory_bytes, v.memory_limit_bytes) == (150 * MIB, 512 * MIB)
    assert v.behavior == "healthy"
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "api", "ready": True, "restartCount": 0, "state": {"running": {}}}
        ],
    }
    pod["spec"]["containers"][0]["image"] = "r/gateway-api:1.9.0-errors"
    v = pod_view(pod)
    assert (v.ready, v.crashing, v.behavior) == (True, False, "error-logs")
