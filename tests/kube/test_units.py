"""Unit tests: selectors, patches, protobuf, HumanDuration, revision logic, bad input over HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

import pytest

from somactl.core.durations import human_duration
from somactl.lab.kube import Cluster, KubeSimulator
from somactl.lab.kube import resources as R
from somactl.lab.kube.controllers import equal_ignore_hash, int_or_percent, template_hash
from somactl.lab.kube.errors import ApiError
from somactl.lab.kube.patch import json_patch, merge_patch, strategic_merge_patch
from somactl.lab.kube.protobuf import decode
from somactl.lab.kube.seed import NAMESPACE, set_image
from somactl.lab.kube.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector,
)

from .conftest import wait_until

# ---- selectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app!=web", {"app": "api"}, True),
        ("app!=web", {}, True),
        ("app in (web,api)", {"app": "api"}, True),
        ("app notin (web,api)", {"app": "db"}, True),
        ("app notin (web,api)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("!canary,tier=be", {"tier": "be"}, True),
        ("app=web,tier=fe", {"app": "web", "tier": "be"}, False),
        ("example.com/team=a", {"example.com/team": "a"}, True),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selector_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["app=(", "app in web", "=x", "app,", "a b", "app in (a", "-x=1"])
def test_label_selector_errors_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_label_selector(bad)
    assert exc.value.code == 400


def test_label_selector_from_spec_and_format() -> None:
    sel = selector_from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
        }
    )
    assert str(sel) == "app=web,tier in (a,b)"
    assert sel.matches({"app": "web", "tier": "a"})


def test_field_selector() -> None:
    fields = R.EVENTS.fields()
    sel = parse_field_selector(
        "involvedObject.kind=Deployment,involvedObject.name!=x", fields, False
    )
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Deployment", "name": "web"}}
    assert sel.matches(ev, fields)
    with pytest.raises(ApiError) as exc:
        parse_field_selector("spec.foo=1", R.DEPLOYMENTS.fields(), True)
    assert exc.value.code == 400
    assert "is not a known field selector" in exc.value.message


# ---- patches -------------------------------------------------------------------------------------


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }


def test_json_patch_ops_and_errors() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": 2},
            {"op": "move", "from": "/b/c", "path": "/d"},
            {"op": "test", "path": "/d", "value": 2},
            {"op": "remove", "path": "/a/0"},
            {"op": "copy", "from": "/d", "path": "/e~1f"},
        ],
    )
    assert out == {"a": [2, 3], "b": {}, "d": 2, "e/f": 2}
    assert doc == {"a": [1, 2], "b": {"c": 1}}
    with pytest.raises(ApiError) as missing:
        json_patch(doc, [{"op": "replace", "path": "/metadata/annotations", "value": {}}])
    assert missing.value.code == 422
    with pytest.raises(ApiError) as malformed:
        json_patch(doc, {"op": "add"})
    assert malformed.value.code == 400
    with pytest.raises(ApiError) as unknown:
        json_patch(doc, [{"op": "frob", "path": "/a"}])
    assert unknown.value.code == 400


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    target = {
        "spec": {
            "containers": [
                {"name": "api", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "s:1"},
            ]
        },
        "metadata": {"finalizers": ["x"]},
    }
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "api"}, {"name": "side"}],
            "containers": [
                {"name": "api", "image": "a:2", "env": [{"name": "B", "value": "2"}]},
                {"name": "side", "$patch": "delete"},
            ],
        },
        "metadata": {"finalizers": ["y"]},
    }
    out = strategic_merge_patch(target, patch)
    assert out["spec"]["containers"] == [
        {
            "name": "api",
            "image": "a:2",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        }
    ]
    assert out["metadata"]["finalizers"] == ["x", "y"]
    replaced = strategic_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"$patch": "replace", "d": 3}})
    assert replaced == {"a": {"d": 3}}
    with pytest.raises(ApiError):
        strategic_merge_patch(target, [1, 2])


# ---- protobuf ------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def test_protobuf_hpa_v1_envelope() -> None:
    meta = _field(1, b"web") + _field(3, b"") + _field(11, _field(1, b"app") + _field(2, b"web"))
    ref = _field(1, b"Deployment") + _field(2, b"web") + _field(3, b"apps/v1")
    spec = _field(1, ref) + _field(2, 3) + _field(3, 10) + _field(4, 70)
    raw = _field(1, meta) + _field(2, spec)
    type_meta = _field(1, b"autoscaling/v1") + _field(2, b"HorizontalPodAutoscaler")
    body = b"k8s\x00" + _field(1, type_meta) + _field(2, raw) + _field(4, b"")
    obj = decode(body)
    assert obj == {
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 3,
            "maxReplicas": 10,
            "targetCPUUtilizationPercentage": 70,
        },
    }
    with pytest.raises(ApiError) as truncated:
        decode(body[:-5])
    assert truncated.value.code == 400
    with pytest.raises(ApiError) as other:
        decode(b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Pod")))
    assert other.value.code == 415


# ---- durations and revisions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (45, "45s"),
        (119, "119s"),
        (330, "5m30s"),
        (600, "10m"),
        (5700, "95m"),
        (11100, "3h5m"),
        (8 * 3600, "8h"),
        (51 * 3600, "2d3h"),
        (10 * 86400, "10d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_template_hash_shape_and_semantic_equality() -> None:
    t1 = {
        "metadata": {"labels": {"app": "x"}, "creationTimestamp": None},
        "spec": {"containers": [{"name": "a", "image": "i", "env": []}]},
    }
    t2 = {
        "metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}},
        "spec": {"containers": [{"name": "a", "image": "i"}]},
    }
    assert equal_ignore_hash(t1, t2)
    h = template_hash(t1)
    assert set(h) <= set("456789bcdf") and 1 <= len(h) <= 10
    assert template_hash(t1) == template_hash(t2["metadata"] and t1)
    assert template_hash(t1, 1) != h
    assert int_or_percent("25%", 3, True) == 1 and int_or_percent("25%", 3, False) == 0


def test_revision_bump_and_history_cleanup() -> None:
    c = Cluster()
    c.create(R.NAMESPACES, "", {"metadata": {"name": "ns"}})
    dep = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]},
            },
        },
    }
    c.create(R.DEPLOYMENTS, "ns", dep)
    c.tick(5)
    for tag in ("2", "3", "4", "1"):
        set_image(c, "ns", "web", f"img:{tag}")
        c.tick(10)
    rss = c.store.select(R.REPLICASETS.key, "ns")
    revs = sorted(
        (
            int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]),
            r["spec"]["template"]["spec"]["containers"][0]["image"],
        )
        for r in rss
    )
    # img:1 was revision 1, came back as 5; history limit 2 keeps two old ReplicaSets
    assert revs == [(3, "img:3"), (4, "img:4"), (5, "img:1")]
    d = c.get(R.DEPLOYMENTS, "ns", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "5"
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"] == 5


# ---- bad input over HTTP -------------------------------------------------------------------------


def _request(
    sim: KubeSimulator,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "")
        if ctype.startswith("application/json") and b"\n{" not in data:
            return resp.status, json.loads(data)
        return resp.status, data.decode()
    finally:
        conn.close()


DEPLOY = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "code", "reason"),
    [
        ("POST", DEPLOY, b"{not json", "application/json", 400, "BadRequest"),
        ("POST", DEPLOY, b"[1]", "application/json", 400, "BadRequest"),
        ("POST", DEPLOY, b"kind: Deployment", "text/yaml", 415, "UnsupportedMediaType"),
        (
            "POST",
            DEPLOY,
            b'{"metadata":{"name":"Bad_Name"},"spec":{}}',
            "application/json",
            422,
            "Invalid",
        ),
        (
            "POST",
            DEPLOY,
            b'{"metadata":{"name":"gateway-api"},"spec":{"selector":{"matchLabels":'
            b'{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c",'
            b'"image":"i"}]}}}}',
            "application/json",
            409,
            "AlreadyExists",
        ),
        ("PATCH", DEPLOY + "/gateway-api", b"{", "application/merge-patch+json", 400, "BadRequest"),
        ("PATCH", DEPLOY + "/gateway-api", b"{}", "application/xml", 415, "UnsupportedMediaType"),
        (
            "PATCH",
            DEPLOY + "/gateway-api",
            b'[{"op":"remove","path":"/spec/nope"}]',
            "application/json-patch+json",
            422,
            "Invalid",
        ),
        (
            "PATCH",
            DEPLOY + "/gateway-api",
            b'{"spec":{"replicas":-1}}',
            "application/merge-patch+json",
            422,
            "Invalid",
        ),
        (
            "PATCH",
            DEPLOY + "/gateway-api",
            b'{"metadata":{"resourceVersion":"1"}}',
            "application/merge-patch+json",
            409,
            "Conflict",
        ),
        ("PUT", DEPLOY + "/gateway-api/scale", b'{"spec":{"replicas":-2}}', "", 422, "Invalid"),
        ("GET", "/apis/apps/v1/namespaces/x/foos", None, "", 404, "NotFound"),
        ("GET", DEPLOY + "?labelSelector=app%3D%28", None, "", 400, "BadRequest"),
        ("GET", DEPLOY + "?watch=maybe", None, "", 400, "BadRequest"),
        ("GET", DEPLOY + "?continue=%%%", None, "", 400, "BadRequest"),
        (
            "POST",
            "/apis/apps/v1/namespaces/nope/deployments",
            b'{"metadata":{"name":"a"},"spec":'
            b'{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},'
            b'"spec":{"containers":[{"name":"c","image":"i"}]}}}}',
            "application/json",
            404,
            "NotFound",
        ),
        ("DELETE", DEPLOY + "/nope", None, "", 404, "NotFound"),
        ("POST", DEPLOY + "?dryRun=Maybe", b"{}", "application/json", 400, "BadRequest"),
    ],
)
def test_bad_input_gets_status_errors(
    sim: KubeSimulator,
    method: str,
    path: str,
    body: bytes | None,
    ctype: str,
    code: int,
    reason: str,
) -> None:
    status, obj = _request(sim, method, path, body, {"Content-Type": ctype} if ctype else {})
    assert status == code
    assert obj["kind"] == "Status" and obj["status"] == "Failure"
    assert (obj["code"], obj["reason"]) == (code, reason)
    assert sim.mutations() == []


def test_dry_run_changes_nothing(sim: KubeSimulator) -> None:
    before = json.dumps(sim.cluster.store.dump(), sort_keys=True)
    status, obj = _request(
        sim,
        "PATCH",
        DEPLOY + "/gateway-api/scale?dryRun=All",
        b'{"spec":{"replicas":9}}',
        {"Content-Type": "application/merge-patch+json"},
    )
    assert (status, obj["spec"]["replicas"]) == (200, 9)
    assert json.dumps(sim.cluster.store.dump(), sort_keys=True) == before
    last = sim.requests[-1]
    assert (last.dry_run, last.mutating, last.mutated) == (True, False, False)
    _, reqs = _request(sim, "GET", "/_sim/requests")
    assert reqs["items"][-1]["params"]["dryRun"] == ["All"]


def test_debug_endpoints(sim: KubeSimulator) -> None:
    t0 = sim.cluster.now()
    status, obj = _request(sim, "POST", "/_sim/tick?seconds=30")
    assert status == 200 and obj["now"] == pytest.approx(t0 + 30)
    status, state = _request(sim, "GET", "/_sim/state")
    assert state["counts"]["apps/deployments"] == 5
    _request(sim, "DELETE", f"{DEPLOY}/redis")
    status, _ = _request(sim, "POST", "/_sim/reset")
    assert status == 200
    assert sim.cluster.store.get(R.DEPLOYMENTS.key, NAMESPACE, "redis") is None  # no seeder given
    assert _request(sim, "POST", "/_sim/tick?seconds=-1")[0] == 400


def test_watch_client_disconnect_leaks_no_thread(sim: KubeSimulator) -> None:
    baseline = threading.active_count()
    socks = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", sim.port))
        s.sendall(
            f"GET {DEPLOY}?watch=true&allowWatchBookmarks=true HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        socks.append(s)
    assert wait_until(lambda: sim.watchers == 3, timeout=5)
    assert socks[0].recv(4096).startswith(b"HTTP/1.1 200")
    for s in socks:
        s.close()
    assert wait_until(lambda: sim.watchers == 0, timeout=5)
    assert wait_until(lambda: threading.active_count() <= baseline, timeout=5)


def test_watch_replays_from_resource_version_and_times_out(sim: KubeSimulator) -> None:
    rv = sim.cluster.store.rv
    sim.cluster.patch_scale(R.DEPLOYMENTS, NAMESPACE, "redis", "merge", {"spec": {"replicas": 2}})
    t0 = time.monotonic()
    _status, body = _request(
        sim,
        "GET",
        f"{DEPLOY}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        "&fieldSelector=metadata.name%3Dredis",
    )
    assert time.monotonic() - t0 < 5
    events = [json.loads(ln) for ln in body.splitlines() if ln.strip()]
    assert events[0]["type"] == "MODIFIED"
    assert events[0]["object"]["spec"]["replicas"] == 2
    assert all(e["object"]["metadata"]["name"] == "redis" for e in events)
