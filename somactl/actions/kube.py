"""Kubernetes building blocks for the workload actions: semantic template equality (kubectl's
`equalIgnoreHash`), pod-template diffs, precondition fingerprints, owned ReplicaSets, HPAs and
the rollout-status predicate of `kubectl rollout status`. Pure functions plus thin reads."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from somactl.clients.kube import KubeClient, label_selector
from somactl.core.errors import UsageError

CHANGE_CAUSE = "kubernetes.io/change-cause"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
MANAGED_BY = "app.kubernetes.io/managed-by"
FIELD_MANAGER = "somactl"
# kubectl rollback.go `annotationsToSkip`: these keep the deployment's values on a rollback.
ROLLBACK_SKIP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)

JSON = dict[str, Any]

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_name(name: str, what: str = "name") -> str:
    """A Kubernetes object name (DNS-1123 subdomain), or a usage error before any request."""
    if not name or len(name) > 253 or not _DNS1123.match(name):
        raise UsageError(
            f"{what} {name!r} is not a valid Kubernetes name",
            "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        )
    return name


@dataclass(frozen=True)
class Workload:
    """A deployment or statefulset in one namespace."""

    kind: str  # "deployment" | "statefulset"
    name: str

    @property
    def plural(self) -> str:
        return f"{self.kind}s"

    @property
    def kind_title(self) -> str:
        return "Deployment" if self.kind == "deployment" else "StatefulSet"

    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def target(self, client: KubeClient) -> str:
        return f"{self.kind}/{self.name} ({client.namespace})"

    def path(self, client: KubeClient) -> str:
        return client.ns_path("apps/v1", self.plural, self.name)

    def get(self, client: KubeClient) -> JSON:
        return client.get("apps/v1", self.plural, self.name)


def meta(obj: JSON) -> JSON:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def annotations_of(obj: JSON) -> dict[str, str]:
    a = meta(obj).get("annotations")
    return dict(a) if isinstance(a, dict) else {}


def rv(obj: JSON) -> str:
    return str(meta(obj).get("resourceVersion") or "")


def revision(obj: JSON) -> int:
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


# --- semantic equality -------------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")


def parse_quantity(value: Any) -> Decimal | None:
    """A resource.Quantity's value (`500m` -> 0.5, `1Gi` -> 1073741824), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value.strip())
    if not m:
        return None
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        return None
    suffix = m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _DECIMAL[suffix]


def normalize(obj: Any, *, _in_resources: bool = False) -> Any:
    """apiequality.Semantic's view: None, "", {} and [] equal absent; quantities by value."""
    if isinstance(obj, dict):
        out: JSON = {}
        for k, v in obj.items():
            in_res = _in_resources or k in ("limits", "requests")
            nv = normalize(v, _in_resources=in_res)
            if nv is None or nv in ("", {}, []):
                continue
            out[k] = nv
        return out
    if isinstance(obj, list):
        return [normalize(v, _in_resources=_in_resources) for v in obj]
    if _in_resources:
        q = parse_quantity(obj)
        if q is not None:
            return format(q.normalize(), "f")
    return obj


def without_hash(template: Any) -> JSON:
    t = copy.deepcopy(template) if isinstance(template, dict) else {}
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: Any, b: Any) -> bool:
    """kubectl's `equalIgnoreHash`: equal pod templates once the hash label is dropped."""
    return bool(normalize(without_hash(a)) == normalize(without_hash(b)))


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(obj: JSON) -> str:
    """What an approval covers: spec, labels and annotations (not status, not resourceVersion).

    Status writes bump the resourceVersion many times a minute during an incident; comparing
    this instead tells a real edit ("another actor changed it") from the controllers' churn."""
    m = meta(obj)
    body = {
        "spec": normalize(obj.get("spec") or {}),
        "labels": m.get("labels") or {},
        "annotations": m.get("annotations") or {},
        "uid": m.get("uid"),
    }
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def changed_parts(old: JSON, new: JSON) -> list[str]:
    """Which approved parts differ (for the `state changed since plan` message)."""
    parts = []
    if meta(old).get("uid") != meta(new).get("uid"):
        parts.append("the object was deleted and re-created")
    o_spec, n_spec = normalize(old.get("spec") or {}), normalize(new.get("spec") or {})
    if o_spec.get("replicas") != n_spec.get("replicas"):
        parts.append(f"replicas {o_spec.get('replicas')}→{n_spec.get('replicas')}")
    if o_spec.get("template") != n_spec.get("template"):
        parts.append("the pod template changed")
    rest_o = {k: v for k, v in o_spec.items() if k not in ("replicas", "template")}
    rest_n = {k: v for k, v in n_spec.items() if k not in ("replicas", "template")}
    if rest_o != rest_n:
        parts.append("the spec changed")
    if (meta(old).get("annotations") or {}) != (meta(new).get("annotations") or {}):
        parts.append("annotations changed")
    if (meta(old).get("labels") or {}) != (meta(new).get("labels") or {}):
        parts.append("labels changed")
    return parts


# --- pod-template diff -------------------------------------------------------------------------


def _containers(template: JSON) -> dict[str, JSON]:
    spec = template.get("spec") or {}
    out: dict[str, JSON] = {}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict) and c.get("name"):
                label = c["name"] if key == "containers" else f"{c['name']} (init)"
                out[label] = c
    return out


def _env(container: JSON) -> dict[str, str]:
    out = {}
    for e in container.get("env") or []:
        if not isinstance(e, dict) or "name" not in e:
            continue
        if "valueFrom" in e:
            out[str(e["name"])] = "from " + canonical(e["valueFrom"])
        else:
            out[str(e["name"])] = str(e.get("value", ""))
    return out


def _resources(container: JSON) -> dict[str, str]:
    res = container.get("resources") or {}
    out = {}
    for section in ("requests", "limits"):
        for name, value in (res.get(section) or {}).items():
            out[f"{section}.{name}"] = str(value)
    return out


def _paths(a: Any, b: Any, prefix: str) -> list[str]:
    """Dotted paths where two normalized JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _paths(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "."]


def template_diff(current: JSON, target: JSON) -> tuple[list[str], JSON]:
    """(display lines, structured diff) from the current pod template to the target one:
    images, env and resources per container, then any other field that differs."""
    cur, tgt = normalize(without_hash(current)), normalize(without_hash(target))
    lines: list[str] = []
    data: JSON = {"containers": {}, "other": []}
    # values as written (1Gi, not 1073741824); comparisons on the normalized form
    cc, tc = _containers(without_hash(current)), _containers(without_hash(target))
    for name in sorted(set(cc) | set(tc)):
        a, b = cc.get(name), tc.get(name)
        if a is None or b is None:
            change = "added" if a is None else "removed"
            lines.append(f"container {name}: {change}")
            data["containers"][name] = {"change": change}
            continue
        entry: JSON = {}
        if a.get("image") != b.get("image"):
            entry["image"] = [a.get("image"), b.get("image")]
            lines.append(f"container {name}: image {a.get('image')} → {b.get('image')}")
        ea, eb = _env(a), _env(b)
        for key in sorted(set(ea) | set(eb)):
            if ea.get(key) != eb.get(key):
                entry.setdefault("env", {})[key] = [ea.get(key), eb.get(key)]
                lines.append(
                    f"container {name}: env {key} {ea.get(key, '(unset)')} → "
                    f"{eb.get(key, '(unset)')}"
                )
        ra, rb = _resources(a), _resources(b)
        for key in sorted(set(ra) | set(rb)):
            if normalize({"limits": {"x": ra.get(key)}}) != normalize(
                {"limits": {"x": rb.get(key)}}
            ):
                entry.setdefault("resources", {})[key] = [ra.get(key), rb.get(key)]
                lines.append(
                    f"container {name}: resources.{key} {ra.get(key, '(unset)')} → "
                    f"{rb.get(key, '(unset)')}"
                )
        rest_a = normalize({k: v for k, v in a.items() if k not in ("image", "env", "resources")})
        rest_b = normalize({k: v for k, v in b.items() if k not in ("image", "env", "resources")})
        for path in _paths(rest_a, rest_b, ""):
            entry.setdefault("other", []).append(path)
            lines.append(f"container {name}: {path} differs")
        if entry:
            data["containers"][name] = entry
    strip = {"containers", "initContainers"}
    rest_cur = {
        "metadata": cur.get("metadata") or {},
        "spec": {k: v for k, v in (cur.get("spec") or {}).items() if k not in strip},
    }
    rest_tgt = {
        "metadata": tgt.get("metadata") or {},
        "spec": {k: v for k, v in (tgt.get("spec") or {}).items() if k not in strip},
    }
    for path in _paths(rest_cur, rest_tgt, ""):
        data["other"].append(path)
        lines.append(f"template: {path} differs")
    return lines, data


def images(template: JSON) -> list[str]:
    return [str(c.get("image")) for c in _containers(template).values() if c.get("image")]


# --- reads -------------------------------------------------------------------------------------


def selector_of(obj: JSON) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    labels = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    parts = [label_selector(labels)] if labels else []
    for e in exprs:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(p for p in parts if p)


def owned_replicasets(client: KubeClient, deployment: JSON) -> list[JSON]:
    """kubectl's GetAllReplicaSets: RSs matching the selector, controlled by this deployment."""
    uid = meta(deployment).get("uid")
    items = client.list("apps/v1", "replicasets", label_selector=selector_of(deployment) or None)
    owned = []
    for rs in items:
        for ref in meta(rs).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("uid") == uid:
                owned.append(rs)
                break
    return owned


def new_replicaset(deployment: JSON, replicasets: list[JSON]) -> JSON | None:
    """The oldest RS whose template equals the deployment's (deploymentutil.FindNewReplicaSet)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    matches = [
        rs
        for rs in replicasets
        if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template)
    ]
    matches.sort(key=lambda rs: (str(meta(rs).get("creationTimestamp") or ""), meta(rs)["name"]))
    return matches[0] if matches else None


def hpas_for(client: KubeClient, workload: Workload) -> list[JSON]:
    """autoscaling/v2 HPAs whose scaleTargetRef is this workload."""
    out = []
    for h in client.list("autoscaling/v2", "horizontalpodautoscalers"):
        ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == workload.kind_title and ref.get("name") == workload.name:
            out.append(h)
    return out


def hpa_summary(h: JSON) -> JSON:
    spec = h.get("spec") or {}
    cpu = None
    for m in spec.get("metrics") or []:
        res = (m or {}).get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            cpu = (res.get("target") or {}).get("averageUtilization")
    return {
        "name": meta(h).get("name"),
        "min": spec.get("minReplicas", 1),
        "max": spec.get("maxReplicas"),
        "cpu_percent": cpu,
        "current": (h.get("status") or {}).get("currentReplicas"),
    }


# --- rollout status ----------------------------------------------------------------------------


def _condition(obj: JSON, ctype: str) -> JSON:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def rollout_status(workload: Workload, obj: JSON) -> tuple[str, str]:
    """("done" | "progressing" | "failed", kubectl's message) for one observation."""
    m, spec, status = meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    name = workload.name
    generation = int(m.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if generation > observed:
        return "progressing", "Waiting for deployment spec update to be observed..."
    replicas = spec.get("replicas")
    if workload.kind == "statefulset":
        want = int(replicas if replicas is not None else 1)
        ready = int(status.get("readyReplicas") or 0)
        if ready < want:
            return "progressing", f"Waiting for {want - ready} pods to be ready..."
        upd, cur = status.get("updateRevision"), status.get("currentRevision")
        if upd != cur:
            return (
                "progressing",
                f"waiting for statefulset rolling update to complete "
                f"{int(status.get('updatedReplicas') or 0)} pods at revision {upd}...",
            )
        return (
            "done",
            f"statefulset rolling update complete {want} pods at revision {cur}...",
        )
    if _condition(obj, "Progressing").get("reason") == "ProgressDeadlineExceeded":
        return "failed", f'deployment "{name}" exceeded its progress deadline'
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if replicas is not None and updated < int(replicas):
        return (
            "progressing",
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {replicas} '
            "new replicas have been updated...",
        )
    if total > updated:
        return (
            "progressing",
            f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas '
            "are pending termination...",
        )
    if available < updated:
        return (
            "progressing",
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available...",
        )
    return "done", f'deployment "{name}" successfully rolled out'


def ready_text(workload: Workload, obj: JSON) -> str:
    status = obj.get("status") or {}
    spec_r = (obj.get("spec") or {}).get("replicas")
    want = 1 if spec_r is None else int(spec_r)
    return f"{int(status.get('readyReplicas') or 0)}/{want}"
