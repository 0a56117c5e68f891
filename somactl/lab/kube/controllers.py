"""Controllers: deployment, replicaset, statefulset, HPA, and a kubelet that plays pod behaviours.

They follow upstream pkg/controller closely where kubectl can see the difference: revision
annotations and history, RollingUpdate arithmetic, status fields and conditions, event texts.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from somactl.lab.kube import resources as R
from somactl.lab.kube.behaviors import (
    MEMORY_ANNOTATION,
    Behavior,
    behavior_for,
    memory_bytes,
    oom_after,
)
from somactl.lab.kube.defaults import _default_pod
from somactl.lab.kube.util import (
    annotations_of,
    clone,
    fnv32a,
    parse_quantity,
    parse_time,
    prune_empty,
    random_suffix,
    rfc3339,
    safe_encode_decimal,
)

if TYPE_CHECKING:
    from somactl.lab.kube.cluster import Cluster

JSON = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
SKIP_COPY = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}
HASH_LABEL = "pod-template-hash"
STS_REVISION_LABEL = "controller-revision-hash"
NODES = ("lab-node-1", "lab-node-2", "lab-node-3")
TERMINATION_SECONDS = 2.0
MAX_TRANSITIONS = 400


# ---- helpers ------------------------------------------------------------------------------------


def template_hash(template: Any, collision_count: int = 0) -> str:
    canonical = json.dumps(prune_empty(template), sort_keys=True, separators=(",", ":"))
    data = canonical.encode() + (str(collision_count).encode() if collision_count else b"")
    return safe_encode_decimal(fnv32a(data))


def _without_hash(template: Any) -> Any:
    t = clone(template) if isinstance(template, dict) else {}
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return prune_empty(t)


def equal_ignore_hash(a: Any, b: Any) -> bool:
    """deploymentutil.EqualIgnoreHash with apiequality.Semantic (nil == empty)."""
    return bool(_without_hash(a) == _without_hash(b))


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            return 0
        raw = pct * total / 100.0
        return math.ceil(raw) if round_up else math.floor(raw)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def revision_of(obj: JSON) -> int:
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def _spec_replicas(obj: JSON) -> int:
    return int((obj.get("spec") or {}).get("replicas") or 0)


def _status(obj: JSON, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def _owner_ref(owner: JSON) -> JSON:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _created_key(obj: JSON) -> tuple[str, str]:
    return (str(obj["metadata"].get("creationTimestamp", "")), obj["metadata"]["name"])


def _write(c: Cluster, rkey: str, old: JSON, new: JSON) -> JSON:
    if new == old:
        return old
    return c.store.replace(rkey, new)


def _set_condition(
    conds: list[JSON],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    with_update_time: bool = True,
) -> None:
    cur = next((x for x in conds if x.get("type") == ctype), None)
    if cur is not None and cur.get("status") == status and cur.get("reason") == reason:
        return
    cond: JSON = {"type": ctype, "status": status}
    if with_update_time:
        cond["lastUpdateTime"] = now
    cond["lastTransitionTime"] = (
        cur["lastTransitionTime"] if cur is not None and cur.get("status") == status else now
    )
    cond["reason"] = reason
    cond["message"] = message
    conds[:] = [x for x in conds if x.get("type") != ctype] + [cond]


def _order_conditions(conds: list[JSON], order: tuple[str, ...]) -> list[JSON]:
    return sorted(conds, key=lambda x: order.index(x["type"]) if x["type"] in order else 99)


def _pod_ready(pod: JSON) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _is_active(pod: JSON) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get(
        "phase"
    ) not in ("Succeeded", "Failed")


# ---- pods from templates ------------------------------------------------------------------------


def _new_pod(c: Cluster, owner: JSON, template: JSON, name: str, extra_labels: JSON) -> JSON:
    tmeta = template.get("metadata") or {}
    meta: JSON = {"name": name, "namespace": owner["metadata"]["namespace"]}
    if owner["kind"] == "ReplicaSet":
        meta["generateName"] = owner["metadata"]["name"] + "-"
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels)
    meta["labels"] = labels
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    meta["ownerReferences"] = [_owner_ref(owner)]
    pod: JSON = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": clone(template.get("spec") or {}),
    }
    _default_pod(pod)
    return pod


def _delete_pod(c: Cluster, owner: JSON, pod: JSON, event_reason: str, message: str) -> None:
    new = clone(pod)
    now = c.now()
    new["metadata"]["deletionTimestamp"] = rfc3339(now + TERMINATION_SECONDS)
    new["metadata"]["deletionGracePeriodSeconds"] = 30
    c.store.replace(R.PODS.key, new)
    c._pod_due.pop((new["metadata"]["namespace"], new["metadata"]["name"]), None)
    c.record_event(owner, "Normal", event_reason, message, _component(owner))
    for cs in (pod.get("spec") or {}).get("containers") or []:
        c.record_event(
            new,
            "Normal",
            "Killing",
            f"Stopping container {cs['name']}",
            "kubelet",
            new["spec"].get("nodeName", ""),
            f"spec.containers{{{cs['name']}}}",
        )


def _component(owner: JSON) -> str:
    return {
        "ReplicaSet": "replicaset-controller",
        "StatefulSet": "statefulset-controller",
        "Deployment": "deployment-controller",
    }.get(owner["kind"], "controller")


def _pod_rank(pod: JSON) -> tuple[int, int, int, int, str]:
    """Lower ranks are deleted first (controller.ActivePods ordering)."""
    status = pod.get("status") or {}
    assigned = 1 if pod["spec"].get("nodeName") else 0
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    ready = 1 if _pod_ready(pod) else 0
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    created = str(pod["metadata"].get("creationTimestamp", ""))
    # newer first: invert the timestamp ordering by negating via a sort on a reversed string key
    return (assigned, phase, ready, -restarts, "".join(chr(255 - ord(ch)) for ch in created))


# ---- replicaset ---------------------------------------------------------------------------------


def sync_replicaset(c: Cluster, rs: JSON) -> JSON:
    store = c.store
    uid = rs["metadata"]["uid"]
    pods = store.children(uid, R.PODS.key)
    active = [p for p in pods if _is_active(p)]
    want = _spec_replicas(rs)
    template = (rs.get("spec") or {}).get("template") or {}
    rs_name = rs["metadata"]["name"]
    if len(active) < want:
        for _ in range(want - len(active)):
            for _attempt in range(10):
                name = f"{rs_name}-{random_suffix(c.rng)}"
                if store.get(R.PODS.key, rs["metadata"]["namespace"], name) is None:
                    break
            pod = _new_pod(c, rs, template, name, {})
            store.create(R.PODS.key, pod, c.now())
            c.record_event(
                rs, "Normal", "SuccessfulCreate", f"Created pod: {name}", "replicaset-controller"
            )
            active.append(pod)
    elif len(active) > want:
        victims = sorted(active, key=_pod_rank)[: len(active) - want]
        for pod in victims:
            _delete_pod(c, rs, pod, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        gone = {p["metadata"]["name"] for p in victims}
        active = [p for p in active if p["metadata"]["name"] not in gone]
    active = [p for p in store.children(uid, R.PODS.key) if _is_active(p)]
    labels = ((template.get("metadata") or {}).get("labels")) or {}
    ready = sum(1 for p in active if _pod_ready(p))
    status: JSON = {}
    if active:
        status["replicas"] = len(active)
    else:
        status["replicas"] = 0
    fully = sum(
        1
        for p in active
        if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
    )
    if fully:
        status["fullyLabeledReplicas"] = fully
    if ready:
        status["readyReplicas"] = ready
        status["availableReplicas"] = ready
    status["observedGeneration"] = rs["metadata"].get("generation", 1)
    new = clone(rs)
    new["status"] = status
    return _write(c, R.REPLICASETS.key, rs, new)


# ---- deployment ---------------------------------------------------------------------------------


def _surge_unavailable(d: JSON) -> tuple[int, int]:
    spec = d.get("spec") or {}
    desired = _spec_replicas(d)
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, desired
    ru = strategy.get("rollingUpdate") or {}
    surge = int_or_percent(ru.get("maxSurge", "25%"), desired, True)
    unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _scale_rs(c: Cluster, d: JSON, rs: JSON, replicas: int) -> JSON:
    old = _spec_replicas(rs)
    surge, _ = _surge_unavailable(d)
    desired = _spec_replicas(d)
    new = clone(rs)
    new["spec"]["replicas"] = replicas
    ann = new["metadata"].setdefault("annotations", {})
    ann[DESIRED_REPLICAS] = str(desired)
    ann[MAX_REPLICAS] = str(desired + surge)
    stored = _write(c, R.REPLICASETS.key, rs, new)
    if old != replicas:
        direction = "up" if replicas > old else "down"
        c.record_event(
            d,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {rs['metadata']['name']} from {old} to {replicas}",
            "deployment-controller",
        )
    return stored


def _create_rs(c: Cluster, d: JSON, olds: list[JSON], max_old: int) -> JSON:
    spec = d["spec"]
    ns = d["metadata"]["namespace"]
    template = spec.get("template") or {}
    collision = int((d.get("status") or {}).get("collisionCount") or 0)
    while True:
        h = template_hash(template, collision)
        name = f"{d['metadata']['name']}-{h}"
        clash = c.store.get(R.REPLICASETS.key, ns, name)
        if clash is None:
            break
        collision += 1
    desired = _spec_replicas(d)
    surge, _ = _surge_unavailable(d)
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        replicas = 0 if any(_spec_replicas(o) or _status(o, "replicas") for o in olds) else desired
    else:
        current = sum(_spec_replicas(o) for o in olds)
        replicas = max(0, min(desired + surge - current, desired)) if current else desired
    rs_template = clone(template)
    rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
    selector = clone(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = h
    annotations = {k: v for k, v in annotations_of(d).items() if k not in SKIP_COPY}
    annotations[DESIRED_REPLICAS] = str(desired)
    annotations[MAX_REPLICAS] = str(desired + surge)
    annotations[REVISION] = str(max_old + 1)
    rs_spec: JSON = {"replicas": replicas}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    rs_spec["selector"] = selector
    rs_spec["template"] = rs_template
    rs: JSON = {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": dict(rs_template["metadata"]["labels"]),
            "annotations": annotations,
            "ownerReferences": [_owner_ref(d)],
        },
        "spec": rs_spec,
        "status": {"replicas": 0},
    }
    created = c.store.create(R.REPLICASETS.key, rs, c.now())
    if replicas > 0:
        c.record_event(
            d,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled up replica set {name} from 0 to {replicas}",
            "deployment-controller",
        )
    if collision:
        d.setdefault("status", {})["collisionCount"] = collision
    return created


def _sync_rs_annotations(c: Cluster, d: JSON, rs: JSON, max_old: int) -> tuple[JSON, bool]:
    new = clone(rs)
    ann = new["metadata"].setdefault("annotations", {})
    for k, v in annotations_of(d).items():
        if k in SKIP_COPY or ann.get(k) == v:
            continue
        ann[k] = v
    bumped = False
    old_rev = revision_of(rs)
    if old_rev < max_old + 1:
        if old_rev > 0:
            hist = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h]
            hist.append(str(old_rev))
            ann[REVISION_HISTORY] = ",".join(hist)[-2000:]
            bumped = True
        ann[REVISION] = str(max_old + 1)
    return _write(c, R.REPLICASETS.key, rs, new), bumped


def _rolling(c: Cluster, d: JSON, new_rs: JSON, olds: list[JSON]) -> None:
    desired = _spec_replicas(d)
    surge, max_unavailable = _surge_unavailable(d)
    new_spec = _spec_replicas(new_rs)
    if new_spec > desired:
        new_rs = _scale_rs(c, d, new_rs, desired)
    elif new_spec < desired:
        current = new_spec + sum(_spec_replicas(o) for o in olds)
        max_total = desired + surge
        if current < max_total:
            up = min(max_total - current, desired - new_spec)
            new_rs = _scale_rs(c, d, new_rs, new_spec + up)
    olds = sorted(olds, key=_created_key)
    if sum(_spec_replicas(o) for o in olds) == 0:
        return
    all_count = _spec_replicas(new_rs) + sum(_spec_replicas(o) for o in olds)
    min_available = desired - max_unavailable
    new_unavailable = _spec_replicas(new_rs) - _status(new_rs, "availableReplicas")
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return
    cleaned = 0
    current_olds: list[JSON] = []
    for old in olds:
        spec_o = _spec_replicas(old)
        unhealthy = spec_o - _status(old, "availableReplicas")
        if cleaned < max_scaled_down and spec_o and unhealthy > 0:
            down = min(max_scaled_down - cleaned, unhealthy)
            old = _scale_rs(c, d, old, spec_o - down)  # noqa: PLW2901 (the scaled version)
            cleaned += down
        current_olds.append(old)
    available = _status(new_rs, "availableReplicas") + sum(
        min(_status(o, "availableReplicas"), _spec_replicas(o)) for o in current_olds
    )
    if available <= min_available:
        return
    total = available - min_available
    done = 0
    for o in current_olds:
        if done >= total:
            break
        spec_o = _spec_replicas(o)
        if not spec_o:
            continue
        down = min(spec_o, total - done)
        _scale_rs(c, d, o, spec_o - down)
        done += down


def _recreate(c: Cluster, d: JSON, new_rs: JSON, olds: list[JSON]) -> None:
    if any(_spec_replicas(o) for o in olds):
        for o in olds:
            if _spec_replicas(o):
                _scale_rs(c, d, o, 0)
        return
    if any(_status(o, "replicas") for o in olds):
        return
    if _spec_replicas(new_rs) != _spec_replicas(d):
        _scale_rs(c, d, new_rs, _spec_replicas(d))


def _cleanup(c: Cluster, d: JSON, olds: list[JSON]) -> None:
    limit = int((d.get("spec") or {}).get("revisionHistoryLimit", 10))
    cleanable = [
        o
        for o in olds
        if not _spec_replicas(o)
        and not _status(o, "replicas")
        and not c.store.children(o["metadata"]["uid"], R.PODS.key)
    ]
    extra = len(cleanable) - limit
    if extra <= 0:
        return
    for o in sorted(cleanable, key=revision_of)[:extra]:
        c._delete_tree(R.REPLICASETS.key, o)


def sync_deployment(c: Cluster, d: JSON) -> None:
    store = c.store
    now = rfc3339(c.now())
    uid = d["metadata"]["uid"]
    work = clone(d)
    spec = work.get("spec") or {}
    template = spec.get("template") or {}
    rss = sorted(store.children(uid, R.REPLICASETS.key), key=_created_key)
    new_rs = next(
        (rs for rs in rss if equal_ignore_hash(rs["spec"].get("template"), template)), None
    )
    olds = [rs for rs in rss if rs is not new_rs]
    max_old = max((revision_of(o) for o in olds), default=0)
    paused = bool(spec.get("paused"))
    conds: list[JSON] = clone((d.get("status") or {}).get("conditions") or [])
    progress_note: tuple[str, str] | None = None
    if new_rs is None and not paused:
        new_rs = _create_rs(c, work, olds, max_old)
        progress_note = (
            "NewReplicaSetCreated",
            f'Created new replica set "{new_rs["metadata"]["name"]}"',
        )
    elif new_rs is not None:
        new_rs, bumped = _sync_rs_annotations(c, work, new_rs, max_old)
        if bumped:
            progress_note = (
                "FoundNewReplicaSet",
                f'Found new replica set "{new_rs["metadata"]["name"]}"',
            )
    if new_rs is not None:
        rev = annotations_of(new_rs).get(REVISION)
        if rev and annotations_of(work).get(REVISION) != rev:
            work["metadata"].setdefault("annotations", {})[REVISION] = rev
    desired = _spec_replicas(work)
    if new_rs is not None and not paused:
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            _recreate(c, work, new_rs, olds)
        else:
            _rolling(c, work, new_rs, olds)
    elif (
        new_rs is not None
        and paused
        and not any(_spec_replicas(o) for o in olds)
        and _spec_replicas(new_rs) != desired
    ):
        _scale_rs(c, work, new_rs, desired)
    rss = sorted(store.children(uid, R.REPLICASETS.key), key=_created_key)
    new_rs = next(
        (rs for rs in rss if equal_ignore_hash(rs["spec"].get("template"), template)), None
    )
    olds = [rs for rs in rss if rs is not new_rs]
    if not paused:
        _cleanup(c, work, olds)
        rss = sorted(store.children(uid, R.REPLICASETS.key), key=_created_key)

    # status (calculateStatus + syncRolloutStatus)
    old_status = d.get("status") or {}
    replicas = sum(_status(rs, "replicas") for rs in rss)
    updated = _status(new_rs, "replicas") if new_rs is not None else 0
    ready = sum(_status(rs, "readyReplicas") for rs in rss)
    available = sum(_status(rs, "availableReplicas") for rs in rss)
    unavailable = max(0, sum(_spec_replicas(rs) for rs in rss) - available)
    status: JSON = {"observedGeneration": work["metadata"].get("generation", 1)}
    for k, v in (
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable),
    ):
        if v:
            status[k] = v
    _, max_unavailable = _surge_unavailable(work)
    if available >= desired - max_unavailable:
        _set_condition(
            conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    else:
        _set_condition(
            conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    cur = next((x for x in conds if x.get("type") == "Progressing"), None)
    if paused:
        _set_condition(
            conds, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now
        )
    else:
        if cur is not None and cur.get("reason") == "DeploymentPaused":
            _set_condition(
                conds, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", now
            )
        if progress_note is not None:
            _set_condition(conds, "Progressing", "True", progress_note[0], progress_note[1], now)
        cur = next((x for x in conds if x.get("type") == "Progressing"), None)
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else ""
        complete_before = (
            status.get("replicas", 0) == status.get("updatedReplicas", 0)
            and cur is not None
            and cur.get("reason") == "NewReplicaSetAvailable"
        )
        if not complete_before and new_rs is not None:
            complete = updated == desired and replicas == desired and available == desired
            progressing = (
                updated > int(old_status.get("updatedReplicas") or 0)
                or (replicas - updated)
                < (
                    int(old_status.get("replicas") or 0)
                    - int(old_status.get("updatedReplicas") or 0)
                )
                or ready > int(old_status.get("readyReplicas") or 0)
                or available > int(old_status.get("availableReplicas") or 0)
            )
            if complete:
                _set_condition(
                    conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    now,
                )
            elif progressing:
                keep = cur["lastTransitionTime"] if cur and cur.get("status") == "True" else now
                conds[:] = [x for x in conds if x.get("type") != "Progressing"] + [
                    {
                        "type": "Progressing",
                        "status": "True",
                        "lastUpdateTime": now,
                        "lastTransitionTime": keep,
                        "reason": "ReplicaSetUpdated",
                        "message": f'ReplicaSet "{rs_name}" is progressing.',
                    }
                ]
            elif cur is not None and cur.get("reason") not in (
                "NewReplicaSetAvailable",
                "ProgressDeadlineExceeded",
            ):
                deadline = spec.get("progressDeadlineSeconds")
                since = parse_time(cur.get("lastUpdateTime"))
                if deadline is not None and since is not None and since + deadline < c.now():
                    _set_condition(
                        conds,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{rs_name}" has timed out progressing.',
                        now,
                    )
    status["conditions"] = _order_conditions(conds, ("Available", "Progressing", "ReplicaFailure"))
    if "collisionCount" in (work.get("status") or {}):
        status["collisionCount"] = work["status"]["collisionCount"]
    work["status"] = status
    latest = store.get(R.DEPLOYMENTS.key, d["metadata"]["namespace"], d["metadata"]["name"])
    if (
        latest is not None
        and latest["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]
    ):
        _write(c, R.DEPLOYMENTS.key, d, work)


# ---- statefulset --------------------------------------------------------------------------------


def _ordinal(pod: JSON, sts_name: str) -> int:
    suffix = pod["metadata"]["name"][len(sts_name) + 1 :]
    return int(suffix) if suffix.isdigit() else -1


def sync_statefulset(c: Cluster, s: JSON) -> None:
    store = c.store
    name = s["metadata"]["name"]
    uid = s["metadata"]["uid"]
    template = (s.get("spec") or {}).get("template") or {}
    update_rev = f"{name}-{template_hash(template)}"
    want = _spec_replicas(s)
    pods = {_ordinal(p, name): p for p in store.children(uid, R.PODS.key)}
    active = {i: p for i, p in pods.items() if _is_active(p)}
    all_ready = all(_pod_ready(p) for p in active.values())
    acted = False
    for i in range(want):
        if i in pods:
            if not _pod_ready(pods[i]):
                break
            continue
        pod_name = f"{name}-{i}"
        labels = {
            STS_REVISION_LABEL: update_rev,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(i),
        }
        pod = _new_pod(c, s, template, pod_name, labels)
        pod["spec"]["hostname"] = pod_name
        if (s.get("spec") or {}).get("serviceName"):
            pod["spec"]["subdomain"] = s["spec"]["serviceName"]
        store.create(R.PODS.key, pod, c.now())
        c.record_event(
            s,
            "Normal",
            "SuccessfulCreate",
            f"create Pod {pod_name} in StatefulSet {name} successful",
            "statefulset-controller",
        )
        acted = True
        break
    if not acted:
        extra = sorted((i for i in active if i >= want), reverse=True)
        if extra and all_ready:
            p = active[extra[0]]
            _delete_pod(
                c,
                s,
                p,
                "SuccessfulDelete",
                f"delete Pod {p['metadata']['name']} in StatefulSet {name} successful",
            )
            acted = True
    if not acted and all_ready and len(active) == want:
        stale = sorted(
            (
                i
                for i, p in active.items()
                if (p["metadata"].get("labels") or {}).get(STS_REVISION_LABEL) != update_rev
            ),
            reverse=True,
        )
        if stale:
            p = active[stale[0]]
            _delete_pod(
                c,
                s,
                p,
                "SuccessfulDelete",
                f"delete Pod {p['metadata']['name']} in StatefulSet {name} successful",
            )
    pods_now = [p for p in store.children(uid, R.PODS.key) if _is_active(p)]
    ready = sum(1 for p in pods_now if _pod_ready(p))
    updated = sum(
        1
        for p in pods_now
        if (p["metadata"].get("labels") or {}).get(STS_REVISION_LABEL) == update_rev
    )
    old_status = s.get("status") or {}
    current_rev = old_status.get("currentRevision") or update_rev
    if updated == len(pods_now) == want:
        current_rev = update_rev
    current = sum(
        1
        for p in pods_now
        if (p["metadata"].get("labels") or {}).get(STS_REVISION_LABEL) == current_rev
    )
    status: JSON = {
        "observedGeneration": s["metadata"].get("generation", 1),
        "replicas": len(pods_now),
    }
    if ready:
        status["readyReplicas"] = ready
    if current:
        status["currentReplicas"] = current
    if updated:
        status["updatedReplicas"] = updated
    status["currentRevision"] = current_rev
    status["updateRevision"] = update_rev
    status["collisionCount"] = 0
    status["availableReplicas"] = ready
    new = clone(s)
    new["status"] = status
    _write(c, R.STATEFULSETS.key, s, new)


# ---- HPA ----------------------------------------------------------------------------------------


def sync_hpa(c: Cluster, h: JSON) -> None:
    spec = h.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    ns = h["metadata"]["namespace"]
    rt = {
        "Deployment": R.DEPLOYMENTS,
        "StatefulSet": R.STATEFULSETS,
        "ReplicaSet": R.REPLICASETS,
    }.get(str(ref.get("kind")))
    target = c.store.get(rt.key, ns, str(ref.get("name"))) if rt is not None else None
    now = rfc3339(c.now())
    old_status = h.get("status") or {}
    conds = clone(old_status.get("conditions") or [])
    status: JSON = {}
    if target is None or rt is None:
        _set_condition(
            conds,
            "AbleToScale",
            "False",
            "FailedGetScale",
            f"the HPA controller was unable to get the target's current scale: "
            f"{(rt.plural + '.' + rt.group) if rt else 'unknown'} "
            f'"{ref.get("name")}" not found',
            now,
            with_update_time=False,
        )
        status["currentReplicas"] = 0
        status["desiredReplicas"] = 0
    else:
        current = _spec_replicas(target)
        min_r = int(spec.get("minReplicas") or 1)
        max_r = int(spec.get("maxReplicas") or 1)
        desired = current
        reason = ""
        if current == 0:
            pass  # scaling is disabled at zero replicas
        elif current > max_r:
            desired, reason = max_r, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_r:
            desired, reason = min_r, "Current number of replicas below Spec.MinReplicas"
        if desired != current:
            new_t = clone(target)
            new_t["spec"]["replicas"] = desired
            c.store.replace(rt.key, new_t)
            c.record_event(
                h,
                "Normal",
                "SuccessfulRescale",
                f"New size: {desired}; reason: {reason}",
                "horizontal-pod-autoscaler",
            )
            status["lastScaleTime"] = now
        elif "lastScaleTime" in old_status:
            status["lastScaleTime"] = old_status["lastScaleTime"]
        status["currentReplicas"] = _status(target, "replicas")
        status["desiredReplicas"] = desired
        _set_condition(
            conds,
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
            with_update_time=False,
        )
        _set_condition(
            conds,
            "ScalingActive",
            "False",
            "FailedGetResourceMetric",
            "the HPA was unable to compute the replica count: failed to get cpu "
            "utilization: unable to get metrics for resource cpu: unable to fetch "
            "metrics from resource metrics API: the server could not find the "
            "requested resource (get pods.metrics.k8s.io)",
            now,
            with_update_time=False,
        )
    status["conditions"] = conds
    new = clone(h)
    new["status"] = status
    _write(c, R.HPAS.key, h, new)


# ---- kubelet ------------------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _pod_behaviors(pod: JSON) -> list[tuple[JSON, Behavior]]:
    ann = annotations_of(pod)
    return [
        (cs, behavior_for(ann, str(cs.get("image", ""))))
        for cs in (pod.get("spec") or {}).get("containers") or []
    ]


def _memory_limit(container: JSON) -> float | None:
    limits = (container.get("resources") or {}).get("limits") or {}
    return parse_quantity(limits.get("memory"))


def _crash_time(
    container: JSON, b: Behavior, pod_name: str, started: float
) -> tuple[float | None, str, int]:
    if b.crash_after is not None:
        return started + b.crash_after, b.crash_reason, b.exit_code
    after = oom_after(b, pod_name, _memory_limit(container))
    if after is not None:
        return started + after, "OOMKilled", 137
    return None, "", 0


def backoff_seconds(restarts: int) -> float:
    return float(min(10 * 2 ** max(0, restarts - 1), 300))


def _container_id(pod: JSON, name: str, restarts: int) -> str:
    return "containerd://" + _digest(str(pod["metadata"].get("uid")), name, str(restarts))


def sync_pod(c: Cluster, pod: JSON) -> float:
    """Play the pod's lifecycle up to now; returns when it next needs attention."""
    now = c.now()
    meta = pod["metadata"]
    key = (meta["namespace"], meta["name"])
    deletion = parse_time(meta.get("deletionTimestamp"))
    if deletion is not None:
        if deletion <= now:
            c.store.remove(R.PODS.key, *key)
            return math.inf
        return deletion
    new = clone(pod)
    spec = new["spec"]
    status = new.setdefault("status", {})
    created = parse_time(meta.get("creationTimestamp")) or now
    node_name = spec.get("nodeName")
    events: list[tuple[str, str, str, str, str]] = []
    if not node_name:
        idx = fnv32a(meta["name"].encode()) % len(NODES)
        node_name = spec["nodeName"] = NODES[idx]
        c.ip_seq = c.ip_seq % 65000 + 1
        ip = f"10.244.{idx}.{c.ip_seq % 250 + 2}"
        host_ip = f"10.0.0.{11 + idx}"
        status.update(
            {
                "phase": "Pending",
                "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": rfc3339(created),
            }
        )
        ts = rfc3339(created)
        status["conditions"] = [
            {
                "type": "PodReadyToStartContainers",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": ts,
            },
            {
                "type": "Initialized",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": ts,
            },
            {
                "type": "Ready",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": ts,
                "reason": "ContainersNotReady",
                "message": "containers with unready status: ["
                + " ".join(x["name"] for x in spec.get("containers") or [])
                + "]",
            },
            {
                "type": "ContainersReady",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": ts,
                "reason": "ContainersNotReady",
                "message": "containers with unready status: ["
                + " ".join(x["name"] for x in spec.get("containers") or [])
                + "]",
            },
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": ts,
            },
        ]
        status["containerStatuses"] = [
            {
                "name": x["name"],
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": x.get("image", ""),
                "imageID": "",
                "started": False,
            }
            for x in spec.get("containers") or []
        ]
        events.append(
            (
                "Normal",
                "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}",
                "default-scheduler",
                "",
            )
        )
    due = math.inf
    statuses = {cs["name"]: cs for cs in status.get("containerStatuses") or []}
    memory_total = 0
    any_started = False
    for container, b in _pod_behaviors(new):
        cname = container["name"]
        cs = statuses.get(cname)
        if cs is None:
            continue
        fpath = f"spec.containers{{{cname}}}"
        for _ in range(MAX_TRANSITIONS):
            state = cs.get("state") or {}
            restarts = int(cs.get("restartCount") or 0)
            if "waiting" in state and state["waiting"].get("reason") == "ContainerCreating":
                t = created + b.start_delay
                if t > now:
                    due = min(due, t)
                    break
                cs["state"] = {"running": {"startedAt": rfc3339(t)}}
                cs["started"] = True
                cs["containerID"] = _container_id(new, cname, restarts)
                image = container.get("image", "")
                cs["imageID"] = f"docker.io/library/{image}@sha256:{_digest(image)}"
                events += [
                    (
                        "Normal",
                        "Pulled",
                        f'Container image "{image}" already present on machine',
                        "kubelet",
                        fpath,
                    ),
                    ("Normal", "Created", f"Created container {cname}", "kubelet", fpath),
                    ("Normal", "Started", f"Started container {cname}", "kubelet", fpath),
                ]
                continue
            if "running" in state:
                started = parse_time(state["running"].get("startedAt")) or now
                crash_at, reason, code = _crash_time(container, b, meta["name"], started)
                ready_at = started + b.ready_delay if b.ready_delay is not None else None
                if crash_at is not None and crash_at <= now:
                    cs["restartCount"] = restarts + 1
                    cs["lastState"] = {
                        "terminated": {
                            "exitCode": code,
                            "reason": reason,
                            "startedAt": rfc3339(started),
                            "finishedAt": rfc3339(crash_at),
                            "containerID": cs.get("containerID", ""),
                        }
                    }
                    delay = backoff_seconds(restarts + 1)
                    cs["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {int(delay)}s restarting failed "
                            f"container={cname} "
                            f"pod={meta['name']}_{meta['namespace']}({meta.get('uid')})",
                        }
                    }
                    cs["ready"] = False
                    cs["started"] = False
                    events.append(
                        (
                            "Warning",
                            "BackOff",
                            f"Back-off restarting failed container {cname} in pod "
                            f"{meta['name']}_{meta['namespace']}({meta.get('uid')})",
                            "kubelet",
                            fpath,
                        )
                    )
                    continue
                if ready_at is not None and not cs.get("ready"):
                    if ready_at <= now and (crash_at is None or ready_at < crash_at):
                        cs["ready"] = True
                        continue
                    if b.probe_failures and now - started >= 5:
                        events.append(
                            (
                                "Warning",
                                "Unhealthy",
                                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                                "kubelet",
                                fpath,
                            )
                        )
                    due = min(due, ready_at if ready_at > now else now + 10)
                    if b.probe_failures:
                        due = min(due, now + 10)
                if crash_at is not None:
                    due = min(due, crash_at)
                any_started = True
                mem = memory_bytes(b, meta["name"], now - started)
                memory_total += mem
                if b.leak_mib_per_sec > 0 or b.name == "oom":
                    due = min(due, now + 1.0)
                break
            if "waiting" in state and state["waiting"].get("reason") == "CrashLoopBackOff":
                any_started = True
                finished = (
                    parse_time(
                        ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
                    )
                    or now
                )
                t = finished + backoff_seconds(restarts)
                if t > now:
                    due = min(due, t)
                    break
                cs["state"] = {"running": {"startedAt": rfc3339(t)}}
                cs["started"] = True
                cs["containerID"] = _container_id(new, cname, restarts)
                image = container.get("image", "")
                events += [
                    (
                        "Normal",
                        "Pulled",
                        f'Container image "{image}" already present on machine',
                        "kubelet",
                        fpath,
                    ),
                    ("Normal", "Created", f"Created container {cname}", "kubelet", fpath),
                    ("Normal", "Started", f"Started container {cname}", "kubelet", fpath),
                ]
                continue
            break
        if cs.get("restartCount"):
            any_started = True
    all_ready = bool(statuses) and all(cs.get("ready") for cs in statuses.values())
    if any_started or any("running" in (cs.get("state") or {}) for cs in statuses.values()):
        status["phase"] = "Running"
    nowts = rfc3339(now)
    for cond in status.get("conditions") or []:
        if cond["type"] in ("Ready", "ContainersReady"):
            want = "True" if all_ready else "False"
            if cond["status"] != want:
                cond["status"] = want
                cond["lastTransitionTime"] = nowts
            if all_ready:
                cond.pop("reason", None)
                cond.pop("message", None)
            else:
                unready = [n for n, cs in statuses.items() if not cs.get("ready")]
                cond["reason"] = "ContainersNotReady"
                cond["message"] = f"containers with unready status: [{' '.join(unready)}]"
        elif (
            cond["type"] == "PodReadyToStartContainers"
            and status.get("phase") == "Running"
            and (cond["status"] != "True")
        ):
            cond["status"] = "True"
            cond["lastTransitionTime"] = nowts
    if memory_total:
        ann = new["metadata"].setdefault("annotations", {})
        old_mem = int(ann.get(MEMORY_ANNOTATION, "0") or 0)
        if abs(old_mem - memory_total) >= 1024 * 1024:
            ann[MEMORY_ANNOTATION] = str(memory_total)
    stored = _write(c, R.PODS.key, pod, new)
    host = spec.get("nodeName", "")
    for etype, reason, message, component, fpath in events:
        c.record_event(
            stored, etype, reason, message, component, host if component == "kubelet" else "", fpath
        )
    return due


def run_kubelet(c: Cluster) -> None:
    now = c.now()
    for pod in c.store.select(R.PODS.key):
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        due = c._pod_due.get(key)
        if due is not None and due > now:
            continue
        c._pod_due[key] = sync_pod(c, pod)


def reconcile(c: Cluster) -> None:
    store = c.store
    for _ in range(2):
        for d in store.select(R.DEPLOYMENTS.key):
            sync_deployment(c, d)
        for s in store.select(R.STATEFULSETS.key):
            sync_statefulset(c, s)
        for rs in store.select(R.REPLICASETS.key):
            sync_replicaset(c, rs)
        run_kubelet(c)
        for rs in store.select(R.REPLICASETS.key):
            sync_replicaset(c, rs)
    for h in store.select(R.HPAS.key):
        sync_hpa(c, h)
    # garbage collection: controlled objects whose owner is gone
    for rt in (R.REPLICASETS, R.PODS):
        for obj in store.select(rt.key):
            from somactl.lab.kube.store import controller_uid

            owner = controller_uid(obj)
            if owner and not store.exists_uid(owner):
                c._delete_tree(rt.key, obj)
