"""The official Python client (kubernetes 35.x) against the simulator: the calls somactl makes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from somactl.lab.kube import KubeSimulator
from somactl.lab.kube.seed import NAMESPACE

NS = NAMESPACE


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


def test_list_with_label_and_field_selectors(api: Any, sim: KubeSimulator) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    pods = core.list_namespaced_pod(NS, label_selector="app=gateway-api")
    assert len(pods.items) == 3
    assert all(p.status.phase == "Running" for p in pods.items)
    assert all(p.metadata.owner_references[0].controller for p in pods.items)
    assert int(pods.metadata.resource_version) > 0
    deps = apps.list_namespaced_deployment(NS, label_selector="app in (redis,orchestrator)")
    assert sorted(d.metadata.name for d in deps.items) == ["orchestrator", "redis"]
    rs = apps.list_namespaced_replica_set(NS, label_selector="app=gateway-api")
    revisions = sorted(
        int(r.metadata.annotations["deployment.kubernetes.io/revision"]) for r in rs.items
    )
    assert revisions == [1, 2, 3]
    one = core.list_namespaced_pod(NS, field_selector="metadata.name=postgres-0")
    assert [p.metadata.name for p in one.items] == ["postgres-0"]
    running = core.list_namespaced_pod(NS, field_selector="status.phase!=Running")
    assert running.items == []
    apps.patch_namespaced_deployment_scale("redis", NS, {"spec": {"replicas": 2}})
    ev = core.list_namespaced_event(
        NS, field_selector="involvedObject.name=redis,involvedObject.kind=Deployment"
    )
    assert ev.items[-1].reason == "ScalingReplicaSet"
    assert ev.items[-1].message.startswith("Scaled up replica set redis-")
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod(NS, label_selector="app==(")
    assert bad.value.status == 400
    with pytest.raises(ApiException) as badfield:
        core.list_namespaced_pod(NS, field_selector="spec.nope=1")
    assert badfield.value.status == 400
    assert "field label not supported: spec.nope" in badfield.value.body


def test_scale_read_patch_and_stale_put_conflicts(api: Any, sim: KubeSimulator) -> None:
    apps = client.AppsV1Api(api)
    scale = apps.read_namespaced_deployment_scale("gateway-api", NS)
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == (
        "Scale",
        3,
        "app=gateway-api",
    )
    patched = apps.patch_namespaced_deployment_scale("gateway-api", NS, {"spec": {"replicas": 4}})
    assert patched.spec.replicas == 4
    assert sim.requests[-1].content_type == "application/strategic-merge-patch+json"
    d = apps.read_namespaced_deployment("gateway-api", NS)
    assert d.spec.replicas == 4
    assert d.status.observed_generation == d.metadata.generation
    # a PUT with the resourceVersion read before the patch is stale: 409 Conflict
    scale.spec.replicas = 2
    with pytest.raises(ApiException) as stale:
        apps.replace_namespaced_deployment_scale("gateway-api", NS, scale)
    assert stale.value.status == 409
    assert "the object has been modified" in stale.value.body
    fresh = apps.read_namespaced_deployment_scale("gateway-api", NS)
    fresh.spec.replicas = 2
    assert apps.replace_namespaced_deployment_scale("gateway-api", NS, fresh).spec.replicas == 2


def test_restart_patch_rolls_out(api: Any, sim: KubeSimulator) -> None:
    apps = client.AppsV1Api(api)
    ts = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": ts}}}
        }
    }
    apps.patch_namespaced_deployment("orchestrator", NS, body, field_manager="kubectl-rollout")
    sim.tick(30)
    d = apps.read_namespaced_deployment("orchestrator", NS)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert d.status.updated_replicas == d.status.available_replicas == 2
    assert d.status.observed_generation == d.metadata.generation
    conds = {c.type: c.reason for c in d.status.conditions}
    assert conds == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }


def _clean_template(template: dict[str, Any]) -> dict[str, Any]:
    labels = dict(template["metadata"].get("labels") or {})
    labels.pop("pod-template-hash", None)
    return {**template, "metadata": {**template["metadata"], "labels": labels}}


def test_json_patch_rollback_like_kubectl(api: Any, sim: KubeSimulator) -> None:
    apps = client.AppsV1Api(api)
    d = apps.read_namespaced_deployment("gateway-api", NS)
    rss = apps.list_namespaced_replica_set(NS, label_selector="app=gateway-api").items
    owned = [
        r
        for r in rss
        if any(o.controller and o.uid == d.metadata.uid for o in r.metadata.owner_references)
    ]
    target = next(
        r for r in owned if r.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    )
    template = _clean_template(api.sanitize_for_serialization(target.spec.template))
    annotations = dict(d.metadata.annotations)
    annotations["kubernetes.io/change-cause"] = target.metadata.annotations[
        "kubernetes.io/change-cause"
    ]
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    apps.patch_namespaced_deployment("gateway-api", NS, patch)
    assert sim.requests[-1].content_type == "application/json-patch+json"
    sim.tick(30)
    d = apps.read_namespaced_deployment("gateway-api", NS)
    assert d.spec.template.spec.containers[0].image.endswith("gateway-api:1.8.0")
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "4"
    # no spurious new ReplicaSet: the rollback reused revision 1's (now 4)
    assert len(apps.list_namespaced_replica_set(NS, label_selector="app=gateway-api").items) == 3
    with pytest.raises(ApiException) as missing_path:
        apps.patch_namespaced_deployment(
            "gateway-api", NS, [{"op": "replace", "path": "/spec/nope/x", "value": 1}]
        )
    assert missing_path.value.status == 422


def test_hpa_v2_create_reads_back_as_v1(api: Any, sim: KubeSimulator) -> None:
    v2 = client.AutoscalingV2Api(api)
    v1 = client.AutoscalingV1Api(api)
    hpa = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="gateway-api"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="gateway-api"
            ),
            min_replicas=4,
            max_replicas=10,
            metrics=[
                client.V2MetricSpec(
                    type="Resource",
                    resource=client.V2ResourceMetricSource(
                        name="cpu",
                        target=client.V2MetricTarget(type="Utilization", average_utilization=70),
                    ),
                )
            ],
        ),
    )
    created = v2.create_namespaced_horizontal_pod_autoscaler(NS, hpa)
    assert created.spec.metrics[0].resource.target.average_utilization == 70
    back = v1.read_namespaced_horizontal_pod_autoscaler("gateway-api", NS)
    assert (
        back.spec.target_cpu_utilization_percentage,
        back.spec.min_replicas,
        back.spec.max_replicas,
    ) == (70, 4, 10)
    sim.tick(3)
    d = client.AppsV1Api(api).read_namespaced_deployment("gateway-api", NS)
    assert d.spec.replicas == 4
    with pytest.raises(ApiException) as dup:
        v2.create_namespaced_horizontal_pod_autoscaler(NS, hpa)
    assert dup.value.status == 409


def test_logs_and_not_found(api: Any, sim: KubeSimulator) -> None:
    core = client.CoreV1Api(api)
    sim.tick(60)
    pod = core.list_namespaced_pod(NS, label_selector="app=orchestrator").items[0]
    text = core.read_namespaced_pod_log(
        pod.metadata.name, NS, container="orchestrator", tail_lines=20
    )
    assert isinstance(text, str)
    assert len(text.splitlines()) == 20
    limited = core.read_namespaced_pod_log(pod.metadata.name, NS, limit_bytes=10)
    assert len(limited.encode()) <= 10
    recent = core.read_namespaced_pod_log(pod.metadata.name, NS, since_seconds=5)
    assert 0 < len(recent.splitlines()) <= 10
    with pytest.raises(ApiException) as prev:
        core.read_namespaced_pod_log(pod.metadata.name, NS, previous=True)
    assert prev.value.status == 400
    with pytest.raises(ApiException) as nf:
        client.AppsV1Api(api).read_namespaced_deployment("nope", NS)
    assert nf.value.status == 404
    assert '"reason":"NotFound"' in nf.value.body


def test_watch_stream_sees_rollout(api: Any, sim: KubeSimulator) -> None:
    from kubernetes import watch

    apps = client.AppsV1Api(api)
    apps.patch_namespaced_deployment_scale("redis", NS, {"spec": {"replicas": 3}})
    sim.tick(10)
    seen = []
    w = watch.Watch()
    for ev in w.stream(
        apps.list_namespaced_deployment, NS, field_selector="metadata.name=redis", timeout_seconds=2
    ):
        seen.append((ev["type"], ev["object"].status.ready_replicas))
        if ev["object"].status.ready_replicas == 3:
            w.stop()
    assert seen[-1] == ("ADDED", 3)
