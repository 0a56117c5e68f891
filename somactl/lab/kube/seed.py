"""The seed: a SomaGent production namespace, plus helpers the lab uses to break and heal it.

Everything goes through the same `Cluster` methods the HTTP API calls (create / patch / scale),
so a "bad deploy" made here is indistinguishable from one made with kubectl.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from somactl.lab.kube import resources as R
from somactl.lab.kube.behaviors import BEHAVIOR_ANNOTATION
from somactl.lab.kube.cluster import Cluster

NAMESPACE = "somagent-production"
CHANGE_CAUSE = "kubernetes.io/change-cause"
REGISTRY = "registry.somagent.dev/somagent"
# behaviour -> image tag suffix that selects it (see behaviors.register_image_rule)
BAD_TAG_SUFFIX = {
    "crashloop": "-crashloop",
    "oom": "-oom",
    "slow-start": "-slow",
    "leak": "-leak",
    "error-logs": "-errors",
}


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    replicas: int
    port: int
    container: str = "app"
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"
    env: tuple[tuple[str, str], ...] = ()
    kind: str = "Deployment"
    probe_path: str | None = "/healthz"
    history: tuple[tuple[str, str], ...] = ()  # earlier (image, change-cause) revisions
    change_cause: str = ""
    labels: dict[str, str] = field(default_factory=dict)


_COMMON_ENV = (
    ("SOMAGENT_ENV", "production"),
    ("LOG_LEVEL", "info"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.observability:4317"),
)

SERVICES: list[Service] = [
    Service(
        "gateway-api",
        f"{REGISTRY}/gateway-api:1.9.0",
        3,
        8080,
        container="api",
        env=(
            *_COMMON_ENV,
            ("ORCHESTRATOR_URL", "http://orchestrator:8081"),
            ("REDIS_URL", "redis://redis:6379/0"),
        ),
        history=(
            (f"{REGISTRY}/gateway-api:1.8.0", "initial production release 1.8.0"),
            (f"{REGISTRY}/gateway-api:1.8.1", "1.8.1: fix session cookie expiry (SOMA-412)"),
        ),
        change_cause="1.9.0: streaming responses, new rate limiter (SOMA-431)",
    ),
    Service(
        "orchestrator",
        f"{REGISTRY}/orchestrator:2.4.1",
        2,
        8081,
        container="orchestrator",
        cpu_request="500m",
        memory_request="512Mi",
        cpu_limit="2",
        memory_limit="1Gi",
        env=(
            *_COMMON_ENV,
            ("KAMACHIQ_URL", "http://kamachiq-service:8082"),
            ("DATABASE_URL", "postgres://somagent@postgres-0.postgres:5432/somagent"),
        ),
        change_cause="2.4.1: agent planner timeouts (SOMA-398)",
    ),
    Service(
        "kamachiq-service",
        f"{REGISTRY}/kamachiq-service:0.12.3",
        2,
        8082,
        container="kamachiq",
        env=(*_COMMON_ENV, ("QUEUE_URL", "redis://redis:6379/2")),
        change_cause="0.12.3: queue retry with jitter",
    ),
    Service(
        "tool-service",
        f"{REGISTRY}/tool-service:1.3.2",
        2,
        8003,
        container="tools",
        env=(
            *_COMMON_ENV,
            ("GITHUB_API_URL", "https://api.github.com"),
            ("NOTION_API_URL", "https://api.notion.com"),
            ("CIRCUIT_BREAKER_STORE", "redis://redis:6379/3"),
        ),
        probe_path="/health",
        change_cause="1.3.2: circuit breakers per adapter (SOMA-402)",
    ),
    Service(
        "redis",
        "redis:7.2.5-alpine",
        1,
        6379,
        container="redis",
        cpu_request="100m",
        memory_request="128Mi",
        cpu_limit="500m",
        memory_limit="256Mi",
        probe_path=None,
    ),
    Service(
        "postgres",
        "postgres:16.4",
        1,
        5432,
        container="postgres",
        cpu_request="500m",
        memory_request="1Gi",
        cpu_limit="2",
        memory_limit="2Gi",
        kind="StatefulSet",
        env=(
            ("POSTGRES_DB", "somagent"),
            ("POSTGRES_USER", "somagent"),
            ("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ),
        probe_path=None,
    ),
]


def pod_template(svc: Service, image: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": svc.container,
        "image": image,
        "ports": [{"name": "http" if svc.probe_path else svc.container, "containerPort": svc.port}],
        "env": [{"name": k, "value": v} for k, v in svc.env],
        "resources": {
            "requests": {"cpu": svc.cpu_request, "memory": svc.memory_request},
            "limits": {"cpu": svc.cpu_limit, "memory": svc.memory_limit},
        },
    }
    if not container["env"]:
        del container["env"]
    if svc.probe_path:
        container["readinessProbe"] = {
            "httpGet": {"path": svc.probe_path, "port": svc.port},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
        }
        container["livenessProbe"] = {
            "httpGet": {"path": svc.probe_path, "port": svc.port},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
        }
    labels = {"app": svc.name, "app.kubernetes.io/part-of": "somagent", **svc.labels}
    return {"metadata": {"labels": labels}, "spec": {"containers": [container]}}


def workload(svc: Service, image: str, change_cause: str) -> dict[str, Any]:
    labels = {"app": svc.name, "app.kubernetes.io/part-of": "somagent", **svc.labels}
    meta: dict[str, Any] = {"name": svc.name, "namespace": NAMESPACE, "labels": labels}
    if change_cause:
        meta["annotations"] = {CHANGE_CAUSE: change_cause}
    spec: dict[str, Any] = {
        "replicas": svc.replicas,
        "selector": {"matchLabels": {"app": svc.name}},
        "template": pod_template(svc, image),
    }
    if svc.kind == "StatefulSet":
        spec["serviceName"] = svc.name
    api = "apps/v1"
    return {"apiVersion": api, "kind": svc.kind, "metadata": meta, "spec": spec}


def _rt(kind: str) -> R.ResourceType:
    return R.STATEFULSETS if kind == "StatefulSet" else R.DEPLOYMENTS


def ensure_namespace(cluster: Cluster, name: str) -> None:
    if cluster.store.get(R.NAMESPACES.key, "", name) is None:
        cluster.create(R.NAMESPACES, "", {"metadata": {"name": name}})


def set_image(
    cluster: Cluster,
    namespace: str,
    name: str,
    image: str,
    container: str | None = None,
    change_cause: str | None = None,
    kind: str = "Deployment",
) -> dict[str, Any]:
    """`kubectl set image` (+ annotate change-cause): one strategic-merge PATCH."""
    rt = _rt(kind)
    current = cluster.get(rt, namespace, name)
    containers = current["spec"]["template"]["spec"]["containers"]
    cname = container or containers[0]["name"]
    patch: dict[str, Any] = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": c["name"]} for c in containers],
                    "containers": [{"name": cname, "image": image}],
                }
            }
        }
    }
    if change_cause is not None:
        patch["metadata"] = {"annotations": {CHANGE_CAUSE: change_cause}}
    return cluster.patch(rt, namespace, name, "strategic", patch)


def set_behavior(
    cluster: Cluster, namespace: str, name: str, behavior: str | None, kind: str = "Deployment"
) -> dict[str, Any]:
    """Choose a pod behaviour through the template annotation (None removes it): a rollout."""
    patch = {"spec": {"template": {"metadata": {"annotations": {BEHAVIOR_ANNOTATION: behavior}}}}}
    return cluster.patch(_rt(kind), namespace, name, "strategic", patch)


def bad_deploy(
    cluster: Cluster,
    namespace: str,
    name: str,
    behavior: str = "crashloop",
    change_cause: str | None = None,
) -> dict[str, Any]:
    """Roll out a broken image (`<tag>-crashloop`, `-oom`, ...) like a real bad deploy."""
    current = cluster.get(R.DEPLOYMENTS, namespace, name)
    image = str(current["spec"]["template"]["spec"]["containers"][0]["image"])
    repo, _, tag = image.rpartition(":")
    if not repo:
        repo, tag = image, "latest"
    for suffix in BAD_TAG_SUFFIX.values():
        if tag.endswith(suffix):
            tag = tag[: -len(suffix)]
    new_image = f"{repo}:{tag}{BAD_TAG_SUFFIX[behavior]}"
    cause = change_cause if change_cause is not None else f"deploy {new_image.rsplit('/', 1)[-1]}"
    return set_image(cluster, namespace, name, new_image, change_cause=cause)


def scale(
    cluster: Cluster, namespace: str, name: str, replicas: int, kind: str = "Deployment"
) -> dict[str, Any]:
    return cluster.patch_scale(
        _rt(kind), namespace, name, "merge", {"spec": {"replicas": replicas}}
    )


def seed(
    cluster: Cluster, *, end_at: float | None = None, services: list[Service] | None = None
) -> None:
    """Build the production namespace with three days of history, settled at `end_at`."""
    end = time.time() if end_at is None else end_at
    services = SERVICES if services is None else services
    cluster.clock.set(end - 3 * 86400)
    for ns in ("default", "kube-system", NAMESPACE):
        ensure_namespace(cluster, ns)
    for svc in services:
        image, cause = svc.history[0] if svc.history else (svc.image, svc.change_cause)
        cluster.create(_rt(svc.kind), NAMESPACE, workload(svc, image, cause))
    cluster.tick(20)
    for svc in services:
        for image, cause in [*svc.history[1:], (svc.image, svc.change_cause)][: len(svc.history)]:
            cluster.jump(86400 / max(1, len(svc.history)))
            set_image(cluster, NAMESPACE, svc.name, image, change_cause=cause, kind=svc.kind)
            cluster.tick(20)
    remaining = end - cluster.now() - 60
    if remaining > 0:
        cluster.jump(remaining)
    cluster.tick(max(0.0, end - cluster.now()))
