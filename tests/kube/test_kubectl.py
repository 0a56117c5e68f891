"""The referee: the real kubectl 1.32 against the simulator, asserting what a real cluster prints.

Expected texts come from upstream kubectl v0.32 (pkg/cmd/rollout, pkg/polymorphichelpers,
pkg/describe) and apiserver printers; see shared/reference/kubernetes-simulator.md.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from somactl.lab.kube import KubeSimulator
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE, bad_deploy

from .conftest import Kubectl, wait_until

pytestmark = pytest.mark.kubectl

AGE = re.compile(r"^(\d+s|\d+m(\d+s)?|\d+h(\d+m)?|\d+d(\d+h)?|\d+y(\d+d)?)$")
HASH = r"[bcdf4-9]{6,10}"


def table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    rows = [re.split(r"\s{2,}", ln.strip()) for ln in lines]
    return rows[0], rows[1:]


def row(rows: list[list[str]], name: str) -> list[str]:
    return next(r for r in rows if r[0] == name)


def requests_after(sim: KubeSimulator, seq: int) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sim.requests if r.seq > seq and r.mutating]


def last_seq(sim: KubeSimulator) -> int:
    reqs = sim.requests
    return reqs[-1].seq if reqs else 0


# ---- get -----------------------------------------------------------------------------------------


def test_get_deployments_prints_server_side_columns(kubectl: Kubectl) -> None:
    r = kubectl("get", "deploy")
    assert r.rc == 0, r.err
    header, rows = table(r.out)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    gw = row(rows, "gateway-api")
    assert gw[1:4] == ["3/3", "3", "3"]
    assert gw[4] == "3d"
    assert [x[0] for x in rows] == [
        "gateway-api",
        "kamachiq-service",
        "orchestrator",
        "redis",
        "tool-service",
    ]

    wide = kubectl("get", "deploy", "gateway-api", "-o", "wide")
    header, rows = table(wide.out)
    assert header == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert rows[0][5:] == [
        "api",
        "registry.somagent.dev/somagent/gateway-api:1.9.0",
        "app=gateway-api",
    ]


def test_get_replicasets_and_pods(kubectl: Kubectl) -> None:
    r = kubectl("get", "rs", "-l", "app=gateway-api")
    assert r.rc == 0, r.err
    header, rows = table(r.out)
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert len(rows) == 3
    assert sorted(x[1:4] for x in rows) == [["0", "0", "0"], ["0", "0", "0"], ["3", "3", "3"]]
    assert all(re.fullmatch(rf"gateway-api-{HASH}", x[0]) for x in rows)

    p = kubectl("get", "pods", "-l", "app in (gateway-api,postgres)")
    assert p.rc == 0, p.err
    header, rows = table(p.out)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    names = [x[0] for x in rows]
    assert "postgres-0" in names
    gw = [x for x in rows if x[0].startswith("gateway-api-")]
    assert len(gw) == 3
    for x in gw:
        assert re.fullmatch(rf"gateway-api-{HASH}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", x[0])
        assert x[1:4] == ["1/1", "Running", "0"]
        assert AGE.match(x[4])

    none = kubectl("get", "pods", "-l", "app!=gateway-api,app notin (postgres),!nope")
    _, rows = table(none.out)
    assert {x[0].rsplit("-", 2)[0] for x in rows} == {
        "kamachiq-service",
        "orchestrator",
        "redis",
        "tool-service",
    }


def test_get_events_and_hpa_after_autoscale(kubectl: Kubectl, sim: KubeSimulator) -> None:
    seq = last_seq(sim)
    r = kubectl("autoscale", "deploy/orchestrator", "--min=3", "--max=10", "--cpu-percent=70")
    assert (r.rc, r.out) == (0, "horizontalpodautoscaler.autoscaling/orchestrator autoscaled\n")
    posts = [x for x in sim.requests if x.seq > seq and x.method == "POST"]
    assert [x.path for x in posts] == [
        f"/apis/autoscaling/v1/namespaces/{NAMESPACE}/horizontalpodautoscalers"
    ]
    assert posts[0].content_type == "application/vnd.kubernetes.protobuf"
    assert posts[0].params["fieldManager"] == ["kubectl-autoscale"]

    again = kubectl("autoscale", "deploy/orchestrator", "--min=3", "--max=10", "--cpu-percent=70")
    assert again.rc == 1
    assert again.err.strip() == (
        'Error from server (AlreadyExists): horizontalpodautoscalers.autoscaling "orchestrator" '
        "already exists"
    )
    sim.tick(5)
    h = kubectl("get", "hpa")
    header, rows = table(h.out)
    assert header == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert rows[0][:6] == [
        "orchestrator",
        "Deployment/orchestrator",
        "cpu: <unknown>/70%",
        "3",
        "10",
        "3",
    ]

    e = kubectl("get", "events", "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler")
    header, rows = table(e.out)
    assert header == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows[0][1:] == [
        "Normal",
        "SuccessfulRescale",
        "horizontalpodautoscaler/orchestrator",
        "New size: 3; reason: Current number of replicas below Spec.MinReplicas",
    ]
    ev = kubectl("get", "events")
    _, rows = table(ev.out)
    scaling = [x for x in rows if x[2] == "ScalingReplicaSet"]
    assert scaling[-1][3:] == [
        "deployment/orchestrator",
        f"Scaled up replica set {scaling[-1][4].split()[4]} from 2 to 3",
    ]


def test_get_watch_prints_table_rows(kubectl: Kubectl, sim: KubeSimulator) -> None:
    proc = kubectl.popen("get", "deploy", "redis", "-w")
    lines: list[list[str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for ln in proc.stdout:
            if ln.strip():
                lines.append(re.split(r"\s{2,}", ln.strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: sim.watchers == 1 and len(lines) >= 2, timeout=15)
        assert kubectl("scale", "deploy/redis", "--replicas=2").rc == 0
        sim.tick(5)
        assert wait_until(lambda: lines[-1][:4] == ["redis", "2/2", "2", "2"], timeout=10), lines
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
        reader.join(timeout=5)
    assert lines[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1][:2] == ["redis", "1/1"]
    assert lines.count(["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]) == 1
    assert all(x[0] == "redis" for x in lines[1:])
    assert wait_until(lambda: sim.watchers == 0, timeout=5)


# ---- describe ------------------------------------------------------------------------------------


def test_describe_deployment(kubectl: Kubectl) -> None:
    assert kubectl("scale", "deploy/gateway-api", "--replicas=4").rc == 0
    r = kubectl("describe", "deploy", "gateway-api")
    assert r.rc == 0, r.err
    text = r.out
    assert "Name:                   gateway-api\n" in text
    assert f"Namespace:              {NAMESPACE}\n" in text
    assert "Selector:               app=gateway-api\n" in text
    assert "StrategyType:           RollingUpdate\n" in text
    assert "RollingUpdateStrategy:  25% max unavailable, 25% max surge\n" in text
    assert "deployment.kubernetes.io/revision: 3" in text
    assert re.search(
        r"Replicas:\s+4 desired \| 4 updated \| 4 total \| 3 available \| "
        r"1 unavailable",
        text,
    )
    assert re.search(r"Available\s+True\s+MinimumReplicasAvailable", text)
    assert re.search(r"Progressing\s+True\s+(NewReplicaSetAvailable|ReplicaSetUpdated)", text)
    assert re.search(rf"NewReplicaSet:\s+gateway-api-{HASH} \(4/4 replicas created\)", text)
    assert re.search(
        rf"OldReplicaSets:\s+gateway-api-{HASH} \(0/0 replicas created\), "
        rf"gateway-api-{HASH} \(0/0 replicas created\)",
        text,
    )
    assert re.search(
        rf"Normal\s+ScalingReplicaSet\s+\S+\s+deployment-controller\s+Scaled up "
        rf"replica set gateway-api-{HASH} from 3 to 4",
        text,
    )


# ---- scale ---------------------------------------------------------------------------------------


def test_scale_without_and_with_current_replicas(kubectl: Kubectl, sim: KubeSimulator) -> None:
    seq = last_seq(sim)
    r = kubectl("scale", "deploy/gateway-api", "--replicas=5")
    assert (r.rc, r.out, r.err) == (0, "deployment.apps/gateway-api scaled\n", "")
    writes = [x for x in sim.requests if x.seq > seq and x.mutating]
    assert [(x.method, x.path, x.content_type) for x in writes] == [
        (
            "PATCH",
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/gateway-api/scale",
            "application/merge-patch+json",
        )
    ]
    seq = last_seq(sim)
    bad = kubectl("scale", "deploy/gateway-api", "--current-replicas=2", "--replicas=3")
    assert (bad.rc, bad.out, bad.err) == (1, "", "error: Expected replicas to be 2, was 5\n")
    assert requests_after(sim, seq) == []

    ok = kubectl("scale", "deploy/gateway-api", "--current-replicas=5", "--replicas=3")
    assert (ok.rc, ok.out) == (0, "deployment.apps/gateway-api scaled\n")
    assert requests_after(sim, seq) == [
        ("PUT", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/gateway-api/scale")
    ]
    sim.tick(5)
    _header, rows = table(kubectl("get", "deploy", "gateway-api").out)
    assert rows[0][1:4] == ["3/3", "3", "3"]

    missing = kubectl("scale", "deploy/nope", "--replicas=1")
    assert missing.rc == 1
    # kubectl's builder wraps the server's NotFound this way (same against a real cluster)
    assert missing.err == 'error: no objects passed to scale deployments.apps "nope" not found\n'


def test_scale_statefulset(kubectl: Kubectl, sim: KubeSimulator) -> None:
    assert kubectl("scale", "sts/postgres", "--replicas=2").out == (
        "statefulset.apps/postgres scaled\n"
    )
    sim.tick(10)
    header, rows = table(kubectl("get", "sts").out)
    assert header == ["NAME", "READY", "AGE"]
    assert rows[0][:2] == ["postgres", "2/2"]
    _, pods = table(kubectl("get", "pods", "-l", "app=postgres").out)
    assert [x[0] for x in pods] == ["postgres-0", "postgres-1"]


# ---- rollout -------------------------------------------------------------------------------------

HISTORY_123 = (
    "deployment.apps/gateway-api \n"
    "REVISION  CHANGE-CAUSE\n"
    "1         initial production release 1.8.0\n"
    "2         1.8.1: fix session cookie expiry (SOMA-412)\n"
    "3         1.9.0: streaming responses, new rate limiter (SOMA-431)\n"
    "\n"
)


def test_rollout_history_and_revision(kubectl: Kubectl) -> None:
    r = kubectl("rollout", "history", "deploy/gateway-api")
    assert (r.rc, r.out) == (0, HISTORY_123)
    one = kubectl("rollout", "history", "deploy/gateway-api", "--revision=2")
    assert one.rc == 0
    assert one.out.startswith("deployment.apps/gateway-api with revision #2\nPod Template:\n")
    assert "Image:\tregistry.somagent.dev/somagent/gateway-api:1.8.1" in one.out
    assert re.search(rf"pod-template-hash={HASH}", one.out)
    missing = kubectl("rollout", "history", "deploy/gateway-api", "--revision=9")
    assert (missing.rc, missing.err) == (1, "error: unable to find the specified revision\n")


def test_rollout_undo_renumbers_and_skips(kubectl: Kubectl, sim: KubeSimulator) -> None:
    seq = last_seq(sim)
    r = kubectl("rollout", "undo", "deploy/gateway-api")
    assert (r.rc, r.out) == (0, "deployment.apps/gateway-api rolled back\n")
    writes = [x for x in sim.requests if x.seq > seq and x.mutating]
    assert [(x.method, x.content_type) for x in writes] == [
        ("PATCH", "application/json-patch+json")
    ]
    sim.tick(30)
    h = kubectl("rollout", "history", "deploy/gateway-api")
    assert h.out == (
        "deployment.apps/gateway-api \n"
        "REVISION  CHANGE-CAUSE\n"
        "1         initial production release 1.8.0\n"
        "3         1.9.0: streaming responses, new rate limiter (SOMA-431)\n"
        "4         1.8.1: fix session cookie expiry (SOMA-412)\n"
        "\n"
    )
    _, rows = table(kubectl("get", "deploy", "gateway-api", "-o", "wide").out)
    assert rows[0][1] == "3/3"
    assert rows[0][6] == "registry.somagent.dev/somagent/gateway-api:1.8.1"
    rs = [
        x
        for x in sim.cluster.store.select(R.REPLICASETS.key, NAMESPACE)
        if x["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "4"
    ]
    assert rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"

    seq = last_seq(sim)
    skip = kubectl("rollout", "undo", "deploy/gateway-api", "--to-revision=4")
    assert (skip.rc, skip.out) == (
        0,
        "deployment.apps/gateway-api skipped rollback (current template already matches "
        "revision 4)\n",
    )
    gone = kubectl("rollout", "undo", "deploy/gateway-api", "--to-revision=99")
    assert (gone.rc, gone.err) == (1, "error: unable to find specified revision 99 in history\n")
    assert requests_after(sim, seq) == []

    to1 = kubectl("rollout", "undo", "deploy/gateway-api", "--to-revision=1")
    assert to1.out == "deployment.apps/gateway-api rolled back\n"
    sim.tick(30)
    revs = [
        ln.split()[0]
        for ln in kubectl("rollout", "history", "deploy/gateway-api").out.splitlines()[2:]
        if ln.strip()
    ]
    assert revs == ["3", "4", "5"]

    none = kubectl("rollout", "undo", "deploy/redis")
    assert (none.rc, none.err) == (1, 'error: no rollout history found for deployment "redis"\n')


def test_rollout_restart_and_paused(kubectl: Kubectl, sim: KubeSimulator) -> None:
    seq = last_seq(sim)
    r = kubectl("rollout", "restart", "deploy/kamachiq-service")
    assert (r.rc, r.out) == (0, "deployment.apps/kamachiq-service restarted\n")
    writes = [x for x in sim.requests if x.seq > seq and x.mutating]
    assert [(x.method, x.content_type, x.params.get("fieldManager")) for x in writes] == [
        ("PATCH", "application/strategic-merge-patch+json", ["kubectl-rollout"])
    ]
    d = sim.cluster.store.get(R.DEPLOYMENTS.key, NAMESPACE, "kamachiq-service")
    assert d is not None
    ann = d["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ann["kubectl.kubernetes.io/restartedAt"]
    )
    assert kubectl("rollout", "pause", "deploy/kamachiq-service").out == (
        "deployment.apps/kamachiq-service paused\n"
    )
    paused = kubectl("rollout", "restart", "deploy/kamachiq-service")
    assert (paused.rc, paused.err) == (
        1,
        'error: deployments.apps "kamachiq-service" can\'t restart paused deployment (run '
        "rollout resume first)\n",
    )
    undo = kubectl("rollout", "undo", "deploy/kamachiq-service")
    assert (undo.rc, undo.err) == (
        1,
        "error: you cannot rollback a paused deployment; resume it first with 'kubectl "
        "rollout resume' and try again\n",
    )


def test_rollout_status_to_completion(
    kubectl: Kubectl, sim: KubeSimulator, ticker: Callable[..., None]
) -> None:
    r = kubectl(
        "set", "image", "deploy/gateway-api", "api=registry.somagent.dev/somagent/gateway-api:2.0.0"
    )
    assert r.out == "deployment.apps/gateway-api image updated\n"
    ticker()
    s = kubectl("rollout", "status", "deploy/gateway-api", "--timeout=60s", timeout=90)
    assert s.rc == 0, s.err
    lines = s.out.splitlines()
    assert lines[-1] == 'deployment "gateway-api" successfully rolled out'
    assert all(
        ln.startswith('Waiting for deployment "gateway-api" rollout to finish: ')
        for ln in lines[:-1]
    )


def test_rollout_status_reports_progress_deadline(
    kubectl: Kubectl, sim: KubeSimulator, ticker: Callable[..., None]
) -> None:
    assert (
        kubectl("patch", "deploy/orchestrator", "-p", '{"spec":{"progressDeadlineSeconds":30}}').rc
        == 0
    )
    bad_deploy(sim.cluster, NAMESPACE, "orchestrator", "crashloop")
    ticker()
    s = kubectl("rollout", "status", "deploy/orchestrator", "--timeout=60s", timeout=90)
    expected = 'error: deployment "orchestrator" exceeded its progress deadline\n'
    assert (s.rc, s.err) == (1, expected)


# ---- logs and bad deploys -------------------------------------------------------------------


def test_logs_tail(kubectl: Kubectl, sim: KubeSimulator) -> None:
    sim.tick(30)
    r = kubectl("logs", "deploy/gateway-api", "--tail=5")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 5
    access = re.compile(r'^INFO: {5}10\.244\.\d+\.\d+:\d+ - "(GET|POST) /\S+ HTTP/1\.1" \d{3} .+$')
    assert all(access.match(ln) for ln in lines), lines
    assert re.fullmatch(rf"Found 3 pods, using pod/gateway-api-{HASH}-\w{{5}}\n", r.err)
    ts = kubectl("logs", "deploy/gateway-api", "--tail=2", "--timestamps")
    assert all(
        re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z INFO", ln) for ln in ts.out.splitlines()
    )


def test_crashloop_pods_and_logs(kubectl: Kubectl, sim: KubeSimulator) -> None:
    bad_deploy(sim.cluster, NAMESPACE, "kamachiq-service", "crashloop")
    sim.tick(45)
    _, rows = table(kubectl("get", "pods", "-l", "app=kamachiq-service").out)
    bad = [x for x in rows if x[2] != "Running"]
    assert len(bad) == 1
    assert bad[0][1:3] == ["0/1", "CrashLoopBackOff"]
    assert re.fullmatch(r"[2-9] \(\d+s ago\)", bad[0][3])
    logs = kubectl("logs", bad[0][0], "--previous")
    assert logs.rc == 0
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in logs.out
    assert logs.out.splitlines()[-1] == "ERROR:    Application startup failed. Exiting."
    _, ev = table(
        kubectl(
            "get",
            "events",
            "--field-selector",
            f"involvedObject.name={bad[0][0]},reason=BackOff",
            "-o",
            "wide",
        ).out
    )
    assert ev[0][1:3] == ["Warning", "BackOff"]
    assert int(ev[0][-2]) >= 2  # aggregated: count grows instead of new events


# ---- network policies ----------------------------------------------------------------------------

NETPOL = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: gateway-ingress
spec:
  podSelector:
    matchLabels:
      app: gateway-api
  ingress:
  - from:
    - podSelector: {}
    ports:
    - port: 8080
"""


def test_networkpolicy_apply_create_get_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    f = tmp_path / "np.yaml"
    f.write_text(NETPOL)
    r = kubectl("apply", "--validate=false", "-f", str(f))
    assert (r.rc, r.out) == (0, "networkpolicy.networking.k8s.io/gateway-ingress created\n")
    header, rows = table(kubectl("get", "netpol").out)
    assert header == ["NAME", "POD-SELECTOR", "AGE"]
    assert rows[0][:2] == ["gateway-ingress", "app=gateway-api"]
    assert kubectl("get", "netpol", "-l", "team=none").err == (
        f"No resources found in {NAMESPACE} namespace.\n"
    )
    d = kubectl("delete", "netpol", "gateway-ingress")
    assert (d.rc, d.out) == (0, 'networkpolicy.networking.k8s.io "gateway-ingress" deleted\n')
    g = kubectl("get", "netpol", "gateway-ingress")
    assert (g.rc, g.err) == (
        1,
        "Error from server (NotFound): networkpolicies.networking.k8s.io "
        '"gateway-ingress" not found\n',
    )
    f.write_text(
        NETPOL.replace("gateway-ingress", "deny-all").replace(
            "    matchLabels:\n      app: gateway-api\n", "    {}\n"
        )
    )
    c = kubectl("create", "--validate=false", "-f", str(f))
    assert (c.rc, c.out) == (0, "networkpolicy.networking.k8s.io/deny-all created\n")
    _, rows = table(kubectl("get", "networkpolicies").out)
    assert rows[0][:2] == ["deny-all", "<none>"]
    dup = kubectl("create", "--validate=false", "-f", str(f))
    assert (dup.rc, dup.err) == (
        1,
        'Error from server (AlreadyExists): error when creating "'
        f'{f}": networkpolicies.networking.k8s.io "deny-all" already '
        "exists\n",
    )


def test_unknown_resource_and_version(kubectl: Kubectl) -> None:
    r = kubectl("get", "foo")
    assert (r.rc, r.err) == (1, 'error: the server doesn\'t have a resource type "foo"\n')
    v = kubectl("version", "-o", "json")
    assert '"gitVersion": "v1.32.4-somactl-lab"' in v.out
