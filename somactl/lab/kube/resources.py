"""The API surface: which resources exist, how discovery describes them, version conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from somactl.lab.kube.selectors import FieldGetter
from somactl.lab.kube.util import get_path

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Subresource:
    name: str
    group: str
    version: str
    kind: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]  # preferred first
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = tuple(VERBS)
    extra_fields: dict[str, FieldGetter] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.group or 'core'}/{self.plural}"

    def api_version(self, version: str | None = None) -> str:
        v = version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v

    def fields(self) -> dict[str, FieldGetter]:
        base: dict[str, FieldGetter] = {
            "metadata.name": lambda o: str(get_path(o, "metadata", "name") or ""),
            "metadata.namespace": lambda o: str(get_path(o, "metadata", "namespace") or ""),
        }
        base.update(self.extra_fields)
        return base


def _getter(*keys: str) -> FieldGetter:
    def get(obj: dict[str, Any]) -> str:
        v = get_path(obj, *keys)
        if v is None:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return get


def _status(group: str, version: str, kind: str) -> Subresource:
    return Subresource("status", group, version, kind, ("get", "patch", "update"))


def _scale() -> Subresource:
    return Subresource("scale", "autoscaling", "v1", "Scale", ("get", "patch", "update"))


NAMESPACES = ResourceType(
    "",
    ("v1",),
    "namespaces",
    "namespace",
    "Namespace",
    False,
    ("ns",),
    subresources=(_status("", "v1", "Namespace"),),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    extra_fields={"status.phase": _getter("status", "phase")},
)
PODS = ResourceType(
    "",
    ("v1",),
    "pods",
    "pod",
    "Pod",
    True,
    ("po",),
    ("all",),
    (
        Subresource("log", "", "v1", "Pod", ("get",)),
        _status("", "v1", "Pod"),
    ),
    extra_fields={
        "status.phase": _getter("status", "phase"),
        "spec.nodeName": _getter("spec", "nodeName"),
        "spec.restartPolicy": _getter("spec", "restartPolicy"),
        "spec.schedulerName": _getter("spec", "schedulerName"),
        "spec.serviceAccountName": _getter("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: "true" if get_path(o, "spec", "hostNetwork") else "false",
        "status.podIP": _getter("status", "podIP"),
        "status.nominatedNodeName": _getter("status", "nominatedNodeName"),
    },
)
EVENTS = ResourceType(
    "",
    ("v1",),
    "events",
    "event",
    "Event",
    True,
    ("ev",),
    extra_fields={
        **{
            f"involvedObject.{k}": _getter("involvedObject", k)
            for k in (
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            )
        },
        "reason": _getter("reason"),
        "reportingComponent": _getter("reportingComponent"),
        "source": _getter("source", "component"),
        "type": _getter("type"),
    },
)
DEPLOYMENTS = ResourceType(
    "apps",
    ("v1",),
    "deployments",
    "deployment",
    "Deployment",
    True,
    ("deploy",),
    ("all",),
    (_scale(), _status("apps", "v1", "Deployment")),
)
REPLICASETS = ResourceType(
    "apps",
    ("v1",),
    "replicasets",
    "replicaset",
    "ReplicaSet",
    True,
    ("rs",),
    ("all",),
    (_scale(), _status("apps", "v1", "ReplicaSet")),
)
STATEFULSETS = ResourceType(
    "apps",
    ("v1",),
    "statefulsets",
    "statefulset",
    "StatefulSet",
    True,
    ("sts",),
    ("all",),
    (_scale(), _status("apps", "v1", "StatefulSet")),
)
HPAS = ResourceType(
    "autoscaling",
    ("v2", "v1"),
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    "HorizontalPodAutoscaler",
    True,
    ("hpa",),
    ("all",),
    (_status("autoscaling", "v2", "HorizontalPodAutoscaler"),),
)
NETWORKPOLICIES = ResourceType(
    "networking.k8s.io",
    ("v1",),
    "networkpolicies",
    "networkpolicy",
    "NetworkPolicy",
    True,
    ("netpol",),
)

ALL: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    EVENTS,
    DEPLOYMENTS,
    REPLICASETS,
    STATEFULSETS,
    HPAS,
    NETWORKPOLICIES,
)

GROUP_ORDER = ("apps", "autoscaling", "networking.k8s.io")


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in ALL:
        if rt.group == group and rt.plural == plural and version in rt.versions:
            return rt
    return None


def group_versions(group: str) -> tuple[str, ...]:
    for rt in ALL:
        if rt.group == group:
            return rt.versions
    return ()


def resources_in(group: str, version: str) -> list[ResourceType]:
    return [rt for rt in ALL if rt.group == group and version in rt.versions]


def _sub_kind(rt: ResourceType, sub: Subresource, version: str) -> tuple[str, str, str]:
    if sub.name == "status":
        return rt.group, version, rt.kind
    return sub.group, sub.version, sub.kind


# ---- discovery ---------------------------------------------------------------------------------


def _agg_version(group: str, version: str) -> dict[str, Any]:
    resources = []
    for rt in resources_in(group, version):
        entry: dict[str, Any] = {
            "resource": rt.plural,
            "responseKind": {"group": rt.group, "version": version, "kind": rt.kind},
            "scope": "Namespaced" if rt.namespaced else "Cluster",
            "singularResource": rt.singular,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        subs = []
        for sub in rt.subresources:
            g, v, k = _sub_kind(rt, sub, version)
            subs.append(
                {
                    "subresource": sub.name,
                    "responseKind": {"group": g, "version": v, "kind": k},
                    "verbs": list(sub.verbs),
                }
            )
        if subs:
            entry["subresources"] = subs
        resources.append(entry)
    return {"version": version, "resources": resources, "freshness": "Current"}


def aggregated_discovery(core: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    groups = [""] if core else list(GROUP_ORDER)
    for g in groups:
        meta: dict[str, Any] = {"creationTimestamp": None}
        if g:
            meta = {"name": g, "creationTimestamp": None}
        items.append(
            {"metadata": meta, "versions": [_agg_version(g, v) for v in group_versions(g)]}
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


def legacy_api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_entry(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in group_versions(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def legacy_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g) for g in GROUP_ORDER],
    }


def legacy_group(group: str) -> dict[str, Any] | None:
    if group not in GROUP_ORDER:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def legacy_resource_list(group: str, version: str) -> dict[str, Any] | None:
    rts = resources_in(group, version)
    if not rts:
        return None
    resources: list[dict[str, Any]] = []
    for rt in rts:
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            g, v, k = _sub_kind(rt, sub, version)
            sub_entry: dict[str, Any] = {
                "name": f"{rt.plural}/{sub.name}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": k,
                "verbs": list(sub.verbs),
            }
            if sub.name == "scale":
                sub_entry["group"] = g
                sub_entry["version"] = v
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "emulationMajor": "1",
    "emulationMinor": "32",
    "gitVersion": "v1.32.4-somactl-lab",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:01:00Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}


# ---- HPA version conversion --------------------------------------------------------------------


def hpa_to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """The stored (v2) HPA as autoscaling/v1."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    v1spec: dict[str, Any] = {"scaleTargetRef": spec.get("scaleTargetRef", {})}
    if "minReplicas" in spec:
        v1spec["minReplicas"] = spec["minReplicas"]
    v1spec["maxReplicas"] = spec.get("maxReplicas", 0)
    for m in spec.get("metrics") or []:
        res = m.get("resource") or {}
        target = res.get("target") or {}
        if (
            m.get("type") == "Resource"
            and res.get("name") == "cpu"
            and ("averageUtilization" in target)
        ):
            v1spec["targetCPUUtilizationPercentage"] = target["averageUtilization"]
    v1status: dict[str, Any] = {}
    for k in ("observedGeneration", "lastScaleTime"):
        if k in status:
            v1status[k] = status[k]
    v1status["currentReplicas"] = status.get("currentReplicas", 0)
    v1status["desiredReplicas"] = status.get("desiredReplicas", 0)
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v1"
    out["spec"] = v1spec
    out["status"] = v1status
    return out


def hpa_from_v1(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    v2spec: dict[str, Any] = {"scaleTargetRef": spec.get("scaleTargetRef", {})}
    if "minReplicas" in spec:
        v2spec["minReplicas"] = spec["minReplicas"]
    if "maxReplicas" in spec:
        v2spec["maxReplicas"] = spec["maxReplicas"]
    cpu = spec.get("targetCPUUtilizationPercentage")
    if cpu is not None:
        v2spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu},
                },
            }
        ]
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v2"
    out["spec"] = v2spec
    if "status" in obj:
        out["status"] = {
            k: v
            for k, v in (obj.get("status") or {}).items()
            if k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
        }
    return out


def to_version(rt: ResourceType, obj: dict[str, Any], version: str) -> dict[str, Any]:
    if rt is HPAS and version == "v1":
        return hpa_to_v1(obj)
    return obj


def from_version(rt: ResourceType, obj: dict[str, Any], version: str) -> dict[str, Any]:
    if rt is HPAS and version == "v1":
        return hpa_from_v1(obj)
    return obj
