"""Server-side defaulting and the validation that answers 422, per resource.

Defaulting matters because `kubectl describe` prints the defaulted fields and because the
rollback algorithm compares pod templates: the deployment's and its ReplicaSets' templates must
be defaulted identically.
"""

from __future__ import annotations

import re
from typing import Any

from somactl.lab.kube import resources as R
from somactl.lab.kube.errors import ApiError, invalid
from somactl.lab.kube.selectors import selector_from_label_selector

_DNS_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Causes = list[tuple[str, str, str]]


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(c: Any) -> None:
    if not isinstance(c, dict):
        return
    image = str(c.get("image", ""))
    tail = image.rsplit("/", 1)[-1]
    if "imagePullPolicy" not in c:
        latest = "@" not in tail and (":" not in tail or tail.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(name))


def default_pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    for c in spec.get("initContainers") or []:
        _default_container(c)
    for c in spec.get("containers") or []:
        _default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")


def default_template(template: Any) -> None:
    if not isinstance(template, dict):
        return
    template.setdefault("metadata", {})
    template.setdefault("spec", {})
    default_pod_spec(template["spec"])


def _default_deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_template(spec.setdefault("template", {}))


def _default_replicaset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    default_template(spec.setdefault("template", {}))


def _default_statefulset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault(
        "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
    )
    default_template(spec.setdefault("template", {}))


def _default_pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault(
        "tolerations",
        [
            {
                "key": f"node.kubernetes.io/{k}",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
            for k in ("not-ready", "unreachable")
        ],
    )
    obj.setdefault("status", {}).setdefault("phase", "Pending")
    obj["status"].setdefault("qosClass", _qos_class(spec))


def _qos_class(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    if not containers:
        return "BestEffort"
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_hpa(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ]


def _default_netpol(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in (rule or {}).get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _default_namespace(obj: dict[str, Any]) -> None:
    name = obj.get("metadata", {}).get("name", "")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


DEFAULTERS = {
    R.DEPLOYMENTS.key: _default_deployment,
    R.REPLICASETS.key: _default_replicaset,
    R.STATEFULSETS.key: _default_statefulset,
    R.PODS.key: _default_pod,
    R.HPAS.key: _default_hpa,
    R.NETWORKPOLICIES.key: _default_netpol,
    R.NAMESPACES.key: _default_namespace,
}


def apply_defaults(rt: R.ResourceType, obj: dict[str, Any]) -> None:
    fn = DEFAULTERS.get(rt.key)
    if fn is not None:
        fn(obj)


# ---- validation --------------------------------------------------------------------------------


def _int_field(causes: Causes, path: str, value: Any, minimum: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        causes.append((path, "FieldValueInvalid", f"Invalid value: {value!r}: must be an integer"))
    elif value < minimum:
        causes.append(
            (
                path,
                "FieldValueInvalid",
                f"Invalid value: {value}: must be greater than or equal to {minimum}",
            )
        )


def _go_map(labels: dict[str, Any]) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return "map[string]string{" + inner + "}"


def _validate_template(causes: Causes, spec: dict[str, Any], prefix: str) -> None:
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    containers = pod_spec.get("containers")
    if not containers:
        causes.append(
            (f"{prefix}.template.spec.containers", "FieldValueRequired", "Required value")
        )
        return
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            causes.append(
                (
                    f"{prefix}.template.spec.containers[{i}]",
                    "FieldValueInvalid",
                    "Invalid value: must be an object",
                )
            )
            continue
        if not c.get("name"):
            causes.append(
                (
                    f"{prefix}.template.spec.containers[{i}].name",
                    "FieldValueRequired",
                    "Required value",
                )
            )
        if not c.get("image"):
            causes.append(
                (
                    f"{prefix}.template.spec.containers[{i}].image",
                    "FieldValueRequired",
                    "Required value",
                )
            )


def _validate_workload(causes: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec") or {}
    _int_field(causes, "spec.replicas", spec.get("replicas"), 0)
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(("spec.selector", "FieldValueRequired", "Required value"))
    else:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        try:
            sel = selector_from_label_selector(selector)
        except ApiError:
            causes.append(("spec.selector", "FieldValueInvalid", "Invalid value: invalid selector"))
        else:
            if not sel.matches(labels):
                causes.append(
                    (
                        "spec.template.metadata.labels",
                        "FieldValueInvalid",
                        f"Invalid value: {_go_map(labels)}: `selector` does not match template "
                        "`labels`",
                    )
                )
    _validate_template(causes, spec, "spec")


def _validate_hpa(causes: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        causes.append(("spec.scaleTargetRef.kind", "FieldValueRequired", "Required value"))
    if not ref.get("name"):
        causes.append(("spec.scaleTargetRef.name", "FieldValueRequired", "Required value"))
    max_r = spec.get("maxReplicas")
    _int_field(causes, "spec.maxReplicas", max_r if max_r is not None else 0, 1)
    min_r = spec.get("minReplicas")
    _int_field(causes, "spec.minReplicas", min_r, 1)
    if isinstance(min_r, int) and isinstance(max_r, int) and min_r > max_r >= 1:
        causes.append(
            (
                "spec.minReplicas",
                "FieldValueInvalid",
                f"Invalid value: {min_r}: must be less than or equal to maxReplicas",
            )
        )


def validate(rt: R.ResourceType, obj: dict[str, Any]) -> None:
    """Raise a 422 Invalid ApiError listing every problem, like the apiserver."""
    causes: Causes = []
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    pattern = _DNS_LABEL if rt in (R.NAMESPACES,) else _DNS_SUB
    if not name:
        causes.append(
            (
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required",
            )
        )
    elif len(name) > 253 or not pattern.match(name):
        what = "RFC 1123 label" if pattern is _DNS_LABEL else "RFC 1123 subdomain"
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                "character",
            )
        )
    for key in ("labels", "annotations"):
        m = meta.get(key)
        if m is not None and (
            not isinstance(m, dict) or not all(isinstance(v, str) for v in m.values())
        ):
            causes.append(
                (f"metadata.{key}", "FieldValueInvalid", "Invalid value: must be a map of strings")
            )
    if rt in (R.DEPLOYMENTS, R.REPLICASETS, R.STATEFULSETS):
        _validate_workload(causes, obj)
    elif rt is R.PODS:
        containers = (obj.get("spec") or {}).get("containers")
        if not containers:
            causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    elif rt is R.HPAS:
        _validate_hpa(causes, obj)
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)
