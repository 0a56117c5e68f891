"""Server-side printing: `meta.k8s.io/v1 Table` rows as upstream pkg/printers builds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from somactl.core.durations import human_duration
from somactl.lab.kube import resources as R
from somactl.lab.kube.selectors import format_label_selector, selector_from_label_selector
from somactl.lab.kube.util import get_path, parse_time

Row = list[Any]
Printer = Callable[[dict[str, Any], float], Row]

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated."
)
_AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created."
)


def _col(
    name: str, typ: str = "string", priority: int = 0, doc: str = "", fmt: str = ""
) -> dict[str, Any]:
    return {"name": name, "type": typ, "format": fmt, "description": doc, "priority": priority}


NAME = _col("Name", fmt="name", doc=_NAME_DOC)
AGE = _col("Age", doc=_AGE_DOC)


def since(ts: Any, now: float) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration(now - t)


def _age(obj: dict[str, Any], now: float) -> str:
    return since(get_path(obj, "metadata", "creationTimestamp"), now)


def _containers(template_spec: Any) -> tuple[str, str]:
    cs = (template_spec or {}).get("containers") or []
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(
        str(c.get("image", "")) for c in cs
    )


def print_pod(pod: dict[str, Any], now: float) -> Row:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: float | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        term_last = (cs.get("lastState") or {}).get("terminated")
        if term_last:
            t = parse_time(term_last.get("finishedAt"))
            if t is not None and (last_restart is None or t > last_restart):
                last_restart = t
        state = cs.get("state") or {}
        waiting, term, running = state.get("waiting"), state.get("terminated"), state.get("running")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif term and term.get("reason"):
            reason = term["reason"]
        elif term:
            reason = (
                f"Signal:{term['signal']}"
                if term.get("signal")
                else f"ExitCode:{term.get('exitCode', 0)}"
            )
        elif cs.get("ready") and running is not None:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        ready_cond = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        reason = "Running" if ready_cond else "NotReady"
    if get_path(pod, "metadata", "deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    restarts_str = str(restarts)
    if restarts and last_restart is not None:
        restarts_str = f"{restarts} ({human_duration(now - last_restart)} ago)"
    ips = status.get("podIPs") or []
    ip = ips[0].get("ip") if ips else ""
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restarts_str,
        _age(pod, now),
        ip or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def print_deployment(d: dict[str, Any], now: float) -> Row:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(get_path(spec, "template", "spec"))
    return [
        d["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        _age(d, now),
        names,
        images,
        str(selector_from_label_selector(spec.get("selector"))),
    ]


def print_replicaset(rs: dict[str, Any], now: float) -> Row:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(get_path(spec, "template", "spec"))
    return [
        rs["metadata"]["name"],
        int(spec.get("replicas", 0)),
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        _age(rs, now),
        names,
        images,
        str(selector_from_label_selector(spec.get("selector"))),
    ]


def print_statefulset(s: dict[str, Any], now: float) -> Row:
    spec, status = s.get("spec") or {}, s.get("status") or {}
    names, images = _containers(get_path(spec, "template", "spec"))
    return [
        s["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        _age(s, now),
        names,
        images,
    ]


def format_hpa_metrics(specs: list[Any], statuses: list[Any]) -> str:
    if not specs:
        return "<none>"
    out: list[str] = []
    for i, m in enumerate(specs):
        typ = m.get("type")
        st = statuses[i] if i < len(statuses) and isinstance(statuses[i], dict) else {}
        if typ == "Resource":
            res = m.get("resource") or {}
            target = res.get("target") or {}
            cur_res = (st.get("resource") or {}).get("current") or {}
            if target.get("averageValue") is not None:
                current = str(cur_res.get("averageValue", "<unknown>"))
                out.append(f"{res.get('name')}: {current}/{target['averageValue']}")
            else:
                current = (
                    f"{cur_res['averageUtilization']}%"
                    if cur_res.get("averageUtilization") is not None
                    else "<unknown>"
                )
                tgt = (
                    f"{target['averageUtilization']}%"
                    if target.get("averageUtilization") is not None
                    else "<auto>"
                )
                out.append(f"{res.get('name')}: {current}/{tgt}")
        elif typ in ("Pods", "Object", "External", "ContainerResource"):
            out.append("<unknown>/<unknown>")
        else:
            out.append("<unknown type>")
    more = len(out) > 2
    text = ", ".join(out[:2])
    return f"{text} + {len(out) - 2} more..." if more else text


def print_hpa(h: dict[str, Any], now: float) -> Row:
    spec, status = h.get("spec") or {}, h.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_pods = str(spec["minReplicas"]) if spec.get("minReplicas") is not None else "<unset>"
    return [
        h["metadata"]["name"],
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        format_hpa_metrics(spec.get("metrics") or [], status.get("currentMetrics") or []),
        min_pods,
        int(spec.get("maxReplicas", 0)),
        int(status.get("currentReplicas", 0)),
        _age(h, now),
    ]


def print_event(e: dict[str, Any], now: float) -> Row:
    first = (
        since(e.get("firstTimestamp"), now)
        if e.get("firstTimestamp")
        else since(e.get("eventTime"), now)
    )
    last = since(e.get("lastTimestamp"), now) if e.get("lastTimestamp") else first
    count = e.get("count") or 1
    inv = e.get("involvedObject") or {}
    kind = str(inv.get("kind", "")).lower()
    target = f"{kind}/{inv['name']}" if inv.get("name") else kind
    src = e.get("source") or {}
    component = src.get("component") or e.get("reportingComponent") or ""
    host = src.get("host") or e.get("reportingInstance") or ""
    source = f"{component}, {host}" if host else component
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        target,
        inv.get("fieldPath", ""),
        source,
        str(e.get("message", "")).strip(),
        first,
        int(count),
        e["metadata"]["name"],
    ]


def print_namespace(n: dict[str, Any], now: float) -> Row:
    return [n["metadata"]["name"], get_path(n, "status", "phase") or "", _age(n, now)]


def print_netpol(n: dict[str, Any], now: float) -> Row:
    return [
        n["metadata"]["name"],
        format_label_selector(get_path(n, "spec", "podSelector")),
        _age(n, now),
    ]


_CONTAINERS = _col("Containers", priority=1, doc="Names of each container in the template.")
_IMAGES = _col("Images", priority=1, doc="Images referenced by each container in the template.")

COLUMNS: dict[str, list[dict[str, Any]]] = {
    R.PODS.key: [
        NAME,
        _col("Ready", doc="The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", doc="The aggregate status of the containers in this pod."),
        _col(
            "Restarts",
            doc="The number of times the containers in this pod have been restarted"
            " and when the last container in this pod has restarted.",
        ),
        AGE,
        _col("IP", priority=1, doc="podIP address allocated to the pod."),
        _col("Node", priority=1, doc="NodeName indicates in which node this pod is scheduled."),
        _col(
            "Nominated Node",
            priority=1,
            doc="nominatedNodeName is set when this pod preempts other pods on the node.",
        ),
        _col(
            "Readiness Gates",
            priority=1,
            doc="If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ],
    R.DEPLOYMENTS.key: [
        NAME,
        _col("Ready", doc="Number of the pod with ready state"),
        _col(
            "Up-to-date",
            doc="Total number of non-terminating pods targeted by this deployment"
            " that have the desired template spec.",
        ),
        _col(
            "Available",
            doc="Total number of available non-terminating pods (ready for at "
            "least minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        _CONTAINERS,
        _IMAGES,
        _col("Selector", priority=1, doc="Label selector for pods."),
    ],
    R.REPLICASETS.key: [
        NAME,
        _col("Desired", "integer", doc="Replicas is the number of desired pods."),
        _col(
            "Current",
            "integer",
            doc="Replicas is the most recently observed number of non-terminating pods.",
        ),
        _col(
            "Ready",
            "integer",
            doc="The number of non-terminating pods targeted by this "
            "ReplicaSet with a Ready Condition.",
        ),
        AGE,
        _CONTAINERS,
        _IMAGES,
        _col("Selector", priority=1, doc="Selector is a label query over pods."),
    ],
    R.STATEFULSETS.key: [
        NAME,
        _col("Ready", doc="Number of the pod with ready state"),
        AGE,
        _CONTAINERS,
        _IMAGES,
    ],
    R.HPAS.key: [
        NAME,
        _col("Reference", doc="reference to scaled resource"),
        _col(
            "Targets",
            doc="metrics contains the specifications for which to use to calculate"
            " the desired replica count",
        ),
        _col("MinPods", doc="minReplicas is the lower limit for the number of replicas"),
        _col("MaxPods", doc="maxReplicas is the upper limit for the number of replicas"),
        _col(
            "Replicas",
            doc="currentReplicas is current number of replicas of pods managed by this autoscaler",
        ),
        AGE,
    ],
    R.EVENTS.key: [
        _col(
            "Last Seen",
            doc="The time at which the most recent occurrence of this event was recorded.",
        ),
        _col(
            "Type",
            doc="Type of this event (Normal, Warning), new types could be added in the future",
        ),
        _col(
            "Reason",
            doc="This should be a short, machine understandable string that gives "
            "the reason for the transition into the object's current status.",
        ),
        _col("Object", doc="The object that this event is about."),
        _col(
            "Subobject",
            priority=1,
            doc="If referring to a piece of an object instead of an "
            "entire object, this string should contain a valid JSON/Go field access statement.",
        ),
        _col("Source", priority=1, doc="The component reporting this event."),
        _col("Message", doc="A human-readable description of the status of this operation."),
        _col("First Seen", priority=1, doc="The time at which the event was first recorded."),
        _col("Count", priority=1, doc="The number of times this event has occurred."),
        _col("Name", priority=1, fmt="name", doc=_NAME_DOC),
    ],
    R.NAMESPACES.key: [NAME, _col("Status", doc="The status of the namespace"), AGE],
    R.NETWORKPOLICIES.key: [
        NAME,
        _col(
            "Pod-Selector",
            doc="podSelector selects the pods to which this NetworkPolicy object applies.",
        ),
        AGE,
    ],
}

PRINTERS: dict[str, Printer] = {
    R.PODS.key: print_pod,
    R.DEPLOYMENTS.key: print_deployment,
    R.REPLICASETS.key: print_replicaset,
    R.STATEFULSETS.key: print_statefulset,
    R.HPAS.key: print_hpa,
    R.EVENTS.key: print_event,
    R.NAMESPACES.key: print_namespace,
    R.NETWORKPOLICIES.key: print_netpol,
}


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    rt: R.ResourceType,
    items: list[dict[str, Any]],
    now: float,
    list_meta: dict[str, Any],
    include_object: str = "Metadata",
    headers: bool = True,
) -> dict[str, Any]:
    printer = PRINTERS.get(rt.key)
    rows = []
    for obj in items:
        if printer is None:
            cells: Row = [obj["metadata"]["name"], _age(obj, now)]
        else:
            cells = printer(obj, now)
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    columns = COLUMNS.get(rt.key, [NAME, AGE])
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns if headers else None,
        "rows": rows,
    }
