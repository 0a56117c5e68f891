"""Kubernetes checks: pods (ready, phases, restarts, waiting reasons, warning events), rollout
state and history, the last log lines, and the namespace's rollouts of the last hour.

Everything is read through one `KubeSession` per cluster: the client is built once (importing
the kubernetes package is the slowest part of a diagnosis), the workload, its pods and its
ReplicaSets are fetched once and shared by the checks that need them. Pods are summarised page
by page into small `PodInfo` records, so 5,000 pods never sit in memory as raw JSON.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from somactl.checks.base import CheckResult, Status
from somactl.checks.shared import Memo
from somactl.core.deadline import Deadline
from somactl.core.durations import human_duration

if TYPE_CHECKING:
    from somactl.clients.kube import KubeClient, KubeTarget

RECENT_SECONDS = 3600.0  # "deployed within the last hour", "rollouts in the last hour"
WORKLOAD_EVENT_SECONDS = 900.0  # events on the workload/ReplicaSets older than this are history
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# Waiting reasons that mean the container cannot run (kubectl shows them in STATUS).
BAD_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
MAX_PODS_SHOWN = 10
MAX_EVENTS_SHOWN = 5
ENRICH_PODS = 20  # pods in trouble read in full (last termination reason, exit code)


def parse_time(text: Any) -> float | None:
    """RFC 3339 (`2026-11-26T19:43:17Z`) as epoch seconds; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return "?"
    return human_duration(max(0.0, seconds_ago))


@dataclass(frozen=True)
class Workload:
    service: str
    kind: Literal["deployment", "statefulset"]
    name: str

    @property
    def resource(self) -> str:
        return "deployments" if self.kind == "deployment" else "statefulsets"


@dataclass(frozen=True)
class PodInfo:
    """What a diagnosis needs of one pod (kubectl's STATUS column, readiness, restarts...)."""

    name: str
    phase: str
    status: str
    ready: bool
    restarts: int
    container: str | None
    waiting_reason: str | None = None
    last_reason: str | None = None
    last_exit_code: int | None = None
    last_finished: float | None = None
    created: float | None = None
    template_hash: str | None = None
    node: str | None = None
    terminating: bool = False
    # read from a Table row: no container names, no last termination reason
    partial: bool = False

    def row(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ready": self.ready,
            "restarts": self.restarts,
            "last_termination": self.last_reason,
            "age": age(now - self.created if self.created else None),
            "node": self.node,
        }


def pod_info(obj: dict[str, Any]) -> PodInfo:
    """Summarise a Pod as kubectl's printer does (pkg/printers/internalversion)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    phase = str(st.get("phase") or "Unknown")
    status = str(st.get("reason") or phase)
    statuses = st.get("containerStatuses") or []
    restarts = 0
    ready = bool(statuses)
    waiting: str | None = None
    last_reason: str | None = None
    last_exit: int | None = None
    last_finished: float | None = None
    for cs in statuses:
        restarts += int(cs.get("restartCount") or 0)
        ready = ready and bool(cs.get("ready"))
        state = cs.get("state") or {}
        if "waiting" in state and (state["waiting"] or {}).get("reason"):
            waiting = waiting or str(state["waiting"]["reason"])
            status = str(state["waiting"]["reason"])
        elif "terminated" in state:
            term = state["terminated"] or {}
            status = str(term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        last = (cs.get("lastState") or {}).get("terminated")
        if last:
            finished = parse_time(last.get("finishedAt"))
            if last_finished is None or (finished or 0) >= last_finished:
                last_reason = str(last.get("reason") or "Error")
                code = last.get("exitCode")
                last_exit = int(code) if isinstance(code, int) else None
                last_finished = finished
    conditions = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    if "Ready" in conditions:
        ready = conditions["Ready"] == "True"
    terminating = bool(meta.get("deletionTimestamp"))
    if terminating:
        status = "Terminating"
    containers = spec.get("containers") or [{}]
    return PodInfo(
        name=str(meta.get("name") or "?"),
        phase=phase,
        status=status,
        ready=ready,
        restarts=restarts,
        container=containers[0].get("name"),
        waiting_reason=waiting,
        last_reason=last_reason,
        last_exit_code=last_exit,
        last_finished=last_finished,
        created=parse_time(meta.get("creationTimestamp")),
        template_hash=(meta.get("labels") or {}).get("pod-template-hash"),
        node=spec.get("nodeName"),
        terminating=terminating,
    )


_RESTARTS = re.compile(r"^\s*(\d+)(?:\s*\((.+?) ago\))?\s*$")
RUNNING_STATUSES = frozenset({"Running", "Completed", "Succeeded", "Terminating", "Pending"})


def parse_restarts(cell: Any) -> tuple[int, float | None]:
    """kubectl's RESTARTS column: `3` or `5 (2m3s ago)` -> (count, seconds since the last)."""
    from somactl.core.durations import parse_duration
    from somactl.core.errors import UsageError

    m = _RESTARTS.match(str(cell if cell is not None else "0"))
    if m is None:
        return 0, None
    ago: float | None = None
    if m.group(2):
        try:
            ago = parse_duration(m.group(2))
        except UsageError:
            ago = None
    return int(m.group(1)), ago


def pod_info_from_row(row: dict[str, Any], now: float) -> PodInfo:
    """A PodInfo from a Table row (`iter_table`); a full object is read by `pod_info`."""
    if "cells" not in row:
        return pod_info(row)
    cells = row["cells"]
    meta = row.get("metadata") or {}
    have, _, want = str(cells.get("Ready") or "0/0").partition("/")
    ready = have.isdigit() and want.isdigit() and int(want) > 0 and int(have) == int(want)
    status = str(cells.get("Status") or "Unknown")
    restarts, ago = parse_restarts(cells.get("Restarts"))
    node = cells.get("Node")
    return PodInfo(
        name=str(meta.get("name") or cells.get("Name") or "?"),
        phase=status,
        status=status,
        ready=ready,
        restarts=restarts,
        container=None,
        waiting_reason=None if status in RUNNING_STATUSES else status,
        last_reason=None,
        last_exit_code=None,
        last_finished=None if ago is None else now - ago,
        created=parse_time(meta.get("creationTimestamp")),
        template_hash=(meta.get("labels") or {}).get("pod-template-hash"),
        node=str(node) if node not in (None, "<none>") else None,
        terminating=bool(meta.get("deletionTimestamp")) or status == "Terminating",
        partial=True,
    )


def trouble_score(pod: PodInfo) -> tuple[int, int, float]:
    """Higher is worse: the pod whose logs explain most, and the first rows of the pods table."""
    score = 0
    if pod.waiting_reason in BAD_WAITING or pod.status in BAD_WAITING:
        score = 3
    elif not pod.ready and not pod.terminating:
        score = 2
    elif pod.restarts:
        score = 1
    return (score, pod.restarts, pod.created or 0.0)


@dataclass
class EventInfo:
    reason: str
    message: str
    kind: str
    name: str
    count: int
    last_seen: float | None

    def row(self, now: float) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "object": f"{self.kind.lower()}/{self.name}",
            "count": self.count,
            "last_seen": age(now - self.last_seen if self.last_seen else None),
            "message": self.message[:300],
        }


@dataclass
class RevisionInfo:
    revision: int
    name: str
    created: float | None
    change_cause: str | None
    image: str | None
    replicas: int
    ready: int

    def row(self, now: float, current: int | None) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "current": self.revision == current,
            "replicaset": self.name,
            "created": age(now - self.created if self.created else None),
            "change_cause": self.change_cause,
            "image": self.image,
            "replicas": self.replicas,
            "ready": self.ready,
        }


@dataclass
class KubeSession:
    """One cluster, shared by the checks of one run: the client, objects and lists, once."""

    target: KubeTarget
    deadline: Deadline
    now: Callable[[], float] = time.time
    _memo: Memo = field(default_factory=Memo)

    def client(self) -> KubeClient:
        from somactl.clients.kube import KubeClient

        return self._memo.get("client", lambda: KubeClient(self.target, self.deadline))

    @property
    def namespace(self) -> str:
        return self.target.namespace

    def workload(self, wl: Workload) -> dict[str, Any]:
        return self._memo.get(
            ("workload", wl), lambda: self.client().get("apps/v1", wl.resource, wl.name)
        )

    def selector(self, wl: Workload) -> str:
        from somactl.clients.kube import label_selector

        spec = self.workload(wl).get("spec") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        return label_selector(labels) if labels else f"app={wl.name}"

    def pods(self, wl: Workload) -> list[PodInfo]:
        """Every pod of the workload, listed as `kubectl get` does (server-side Table rows:
        a quarter of the bytes of full objects, which matters at 5,000 pods); the pods in
        trouble are then read in full (last termination reason, exit code, container)."""

        def load() -> list[PodInfo]:
            from somactl.clients.kube import NotFoundError

            selector = self.selector(wl)
            client = self.client()
            now = self.now()
            pods = [
                pod_info_from_row(row, now)
                for row in client.iter_table("v1", "pods", label_selector=selector)
            ]
            troubled = sorted(
                (p for p in pods if p.partial and trouble_score(p)[0] > 0),
                key=trouble_score,
                reverse=True,
            )[:ENRICH_PODS]
            full: dict[str, PodInfo] = {}
            for p in troubled:
                try:
                    full[p.name] = pod_info(client.get("v1", "pods", p.name))
                except NotFoundError:
                    continue  # gone since the listing
            return [full.get(p.name, p) for p in pods]

        return self._memo.get(("pods", wl), load)

    def full_pod(self, pod: PodInfo) -> PodInfo:
        """`pod` read in full (its container names, last termination) if it came from a row."""
        if not pod.partial:
            return pod
        return pod_info(self.client().get("v1", "pods", pod.name))

    def revisions(self, wl: Workload) -> list[RevisionInfo]:
        def load() -> list[RevisionInfo]:
            uid = (self.workload(wl).get("metadata") or {}).get("uid")
            out: list[RevisionInfo] = []
            for rs in self.client().iter_items(
                "apps/v1", "replicasets", label_selector=self.selector(wl)
            ):
                meta = rs.get("metadata") or {}
                owners = meta.get("ownerReferences") or []
                if uid and owners and not any(o.get("uid") == uid for o in owners):
                    continue
                info = revision_info(rs)
                if info is not None:
                    out.append(info)
            return sorted(out, key=lambda r: r.revision)

        return self._memo.get(("revisions", wl), load)

    def warning_events(self) -> list[EventInfo]:
        """Warning events of the namespace (aggregated per object and reason)."""

        def load() -> list[EventInfo]:
            merged: dict[tuple[str, str, str], EventInfo] = {}
            for ev in self.client().iter_items("v1", "events", field_selector="type=Warning"):
                inv = ev.get("involvedObject") or {}
                key = (str(inv.get("kind") or "?"), str(inv.get("name") or "?"), ev.get("reason"))
                seen = parse_time(ev.get("lastTimestamp")) or parse_time(ev.get("eventTime"))
                seen = seen or parse_time((ev.get("metadata") or {}).get("creationTimestamp"))
                count = int(ev.get("count") or 1)
                cur = merged.get(key)  # type: ignore[arg-type]
                if cur is None:
                    merged[key] = EventInfo(  # type: ignore[index]
                        str(ev.get("reason") or "?"),
                        str(ev.get("message") or ""),
                        key[0],
                        key[1],
                        count,
                        seen,
                    )
                else:
                    cur.count += count
                    if (seen or 0) >= (cur.last_seen or 0):
                        cur.last_seen, cur.message = seen, str(ev.get("message") or "")
            return list(merged.values())

        return self._memo.get("warning-events", load)


def revision_info(rs: dict[str, Any]) -> RevisionInfo | None:
    meta = rs.get("metadata") or {}
    ann = meta.get("annotations") or {}
    try:
        rev = int(ann.get(REVISION, ""))
    except ValueError:
        return None
    containers = (((rs.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or [{}]
    st = rs.get("status") or {}
    return RevisionInfo(
        revision=rev,
        name=str(meta.get("name") or "?"),
        created=parse_time(meta.get("creationTimestamp")),
        change_cause=ann.get(CHANGE_CAUSE),
        image=containers[0].get("image"),
        replicas=int(st.get("replicas") or 0),
        ready=int(st.get("readyReplicas") or 0),
    )


# -- k8s.pods ------------------------------------------------------------------------------------


def pods_check(
    session: KubeSession, wl: Workload, *, check_id: str = "k8s.pods", down_service: str
) -> CheckResult:
    title = f"Pods of {wl.kind} {wl.name}"
    obj = session.workload(wl)
    pods = [p for p in session.pods(wl) if not p.terminating]
    now = session.now()
    desired = int((obj.get("spec") or {}).get("replicas", 1) or 0)
    ready = sum(1 for p in pods if p.ready)
    statuses = Counter(p.status for p in pods)
    restarts = sum(p.restarts for p in pods)
    bad = {s: n for s, n in statuses.items() if s in BAD_WAITING}
    recent_restarts = [
        p for p in pods if p.last_finished is not None and now - p.last_finished < RECENT_SECONDS
    ]
    oom = [p for p in recent_restarts if p.last_reason == "OOMKilled"] + [
        p for p in pods if p.status == "OOMKilled" and p not in recent_restarts
    ]
    names = {p.name for p in pods}
    events = [
        e
        for e in session.warning_events()
        if (e.kind == "Pod" and e.name in names)
        or (
            (e.name == wl.name or e.name.startswith(wl.name + "-"))
            and e.kind != "Pod"
            and e.last_seen is not None
            and now - e.last_seen < WORKLOAD_EVENT_SECONDS
        )
    ]
    events.sort(key=lambda e: e.last_seen or 0.0, reverse=True)
    status = Status.ok
    problems: list[str] = []
    signals: dict[str, Any] = {}
    if desired == 0 or ready == 0:
        status = Status.critical
        signals["service_down"] = [down_service]
        problems.append("scaled to 0 replicas" if desired == 0 else "no pod is ready")
    elif ready < desired:
        status = Status.critical if ready * 2 < desired else Status.warn
        problems.append(f"{desired - ready} of {desired} not ready")
    if bad:
        status = max(status, Status.warn, key=_rank)
        problems.append(", ".join(f"{n} {s}" for s, n in sorted(bad.items())))
    if oom:
        status = max(status, Status.warn, key=_rank)
        problems.append(f"{len(oom)} OOMKilled in the last hour")
        signals["memory_ratio"] = 1.0  # OOMKilled: the working set reached the limit
    elif recent_restarts:
        status = max(status, Status.warn, key=_rank)
        problems.append(f"{len(recent_restarts)} restarted in the last hour")
    if events and status is Status.ok:
        status = Status.warn
    reasons: Counter[str] = Counter()
    for e in events:
        reasons[e.reason] += e.count
    summary = f"{ready}/{desired} ready"
    if problems:
        summary += ": " + "; ".join(problems)
    if restarts:
        summary += f" ({restarts} restarts)"
    if events:
        summary += f"; warning events: {', '.join(f'{r} x{n}' for r, n in reasons.most_common(3))}"
    worst_pods = sorted(pods, key=trouble_score, reverse=True)[:MAX_PODS_SHOWN]
    facts = {
        "ready": ready,
        "desired": desired,
        "crashloop": bool(bad.get("CrashLoopBackOff"))
        or any(p.last_reason == "Error" for p in recent_restarts),
        "image_pull": any(s in ("ImagePullBackOff", "ErrImagePull") for s in bad),
        "oom_killed": bool(oom),
        "restarts_recent": len(recent_restarts),
    }
    return CheckResult(
        check_id,
        title,
        "kubernetes",
        status,
        summary,
        evidence={
            "namespace": session.namespace,
            "workload": f"{wl.kind}/{wl.name}",
            "desired": desired,
            "ready": ready,
            "total": len(pods),
            "statuses": dict(statuses.most_common()),
            "restarts": restarts,
            "pods": [p.row(now) for p in worst_pods],
            "warning_events": [e.row(now) for e in events[:MAX_EVENTS_SHOWN]],
            "warning_event_count": sum(e.count for e in events),
        },
        signals=signals,
        facts=facts,
        raw={
            "pods.json": [asdict(p) for p in pods],
            "warning-events.json": [asdict(e) for e in events],
        },
    )


_RANK = {Status.ok: 0, Status.unknown: 1, Status.warn: 2, Status.critical: 3}


def _rank(s: Status) -> int:
    return _RANK[s]


# -- k8s.logs ------------------------------------------------------------------------------------

_FATAL = re.compile(r"\b(FATAL|PANIC)\b|^panic:|level=(fatal|panic)|\"level\"\s*:\s*\"fatal\"")
_EXCEPTION = re.compile(r"^\s*(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)\b(?::|$)")
_ERROR = re.compile(r"\b(ERROR|CRITICAL|SEVERE)\b|level=error|\"level\"\s*:\s*\"error\"")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


def line_weight(line: str) -> int:
    """0 for an ordinary line; higher for worse error lines (fatal > exception > error)."""
    if _FATAL.search(line):
        return 4
    if _EXCEPTION.search(line):
        return 3
    if _ERROR.search(line):
        return 2
    if _TRACEBACK.search(line):
        return 1
    return 0


@dataclass(frozen=True)
class LogAnalysis:
    lines: int
    error_lines: int
    worst: str | None
    last_errors: tuple[str, ...]


def analyse_log(text: str, keep: int = 5) -> LogAnalysis:
    lines = text.splitlines()
    errors: list[str] = []
    worst: tuple[int, int, str] | None = None
    for i, line in enumerate(lines):
        w = line_weight(line)
        if w == 0:
            continue
        errors.append(line)
        if worst is None or (w, i) >= (worst[0], worst[1]):
            worst = (w, i, line)
    return LogAnalysis(
        lines=len(lines),
        error_lines=len(errors),
        worst=worst[2].strip() if worst else None,
        last_errors=tuple(e.rstrip() for e in errors[-keep:]),
    )


def pick_pod(pods: Iterable[PodInfo]) -> PodInfo | None:
    live = [p for p in pods if not p.terminating]
    return max(live, key=trouble_score, default=None)


def read_logs(
    session: KubeSession, pod: PodInfo, tail: int, *, previous: bool | None = None
) -> tuple[str, bool]:
    """(text, previous?) of `pod`'s first container; a crash-looping container's last run."""
    from somactl.core.errors import SomactlError

    client = session.client()
    want_previous = (
        previous
        if previous is not None
        else (pod.restarts > 0 and (pod.waiting_reason is not None or not pod.ready))
    )
    if want_previous:
        try:
            return client.pod_log(pod.name, container=pod.container, tail=tail, previous=True), True
        except SomactlError:
            if previous:
                raise
    return client.pod_log(pod.name, container=pod.container, tail=tail), False


def logs_check(
    session: KubeSession, wl: Workload, *, tail: int, check_id: str = "k8s.logs"
) -> CheckResult:
    title = f"Last {tail} log lines of {wl.name}"
    pods = session.pods(wl)
    pod = pick_pod(pods)
    if pod is None:
        return CheckResult(
            check_id, title, "kubernetes", Status.unknown, f"no pod of {wl.name} to read logs from"
        )
    pod = session.full_pod(pod)
    text, previous = read_logs(session, pod, tail)
    result = analyse_log(text)
    which = f"pod/{pod.name}" + (" (previous container)" if previous else "")
    if result.error_lines:
        status = Status.warn
        summary = f"{result.error_lines} error lines in the last {result.lines} of {which}"
        if result.worst:
            summary += f"; worst: {result.worst[:160]}"
    else:
        status = Status.ok
        summary = f"no error lines in the last {result.lines} of {which}"
    return CheckResult(
        check_id,
        title,
        "kubernetes",
        status,
        summary,
        evidence={
            "pod": pod.name,
            "pod_status": pod.status,
            "previous": previous,
            "lines": result.lines,
            "error_lines": result.error_lines,
            "worst": result.worst,
            "last_errors": list(result.last_errors),
            "tail": text.splitlines()[-10:],
        },
        facts={"log_error_lines": result.error_lines},
        raw={f"logs-{pod.name}.txt": text},
    )


# -- k8s.rollout-history -------------------------------------------------------------------------


def rollout_state(obj: dict[str, Any]) -> tuple[str, str]:
    """(state, detail) of a Deployment: complete, progressing, stalled or paused."""
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    want = int(spec.get("replicas", 1) or 0)
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    total = int(st.get("replicas") or 0)
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    prog = conds.get("Progressing") or {}
    if spec.get("paused"):
        return "paused", "rollout is paused"
    if prog.get("reason") == "ProgressDeadlineExceeded" or prog.get("status") == "False":
        return "stalled", str(prog.get("message") or "progress deadline exceeded")
    generation = int(meta.get("generation") or 0)
    observed = int(st.get("observedGeneration") or 0)
    if observed < generation or updated < want or total > updated or available < updated:
        return "progressing", f"{updated}/{want} updated, {available} available"
    return "complete", f"{available}/{want} available"


def rollout_check(
    session: KubeSession, wl: Workload, *, check_id: str = "k8s.rollout-history"
) -> CheckResult:
    title = f"Rollout of {wl.kind} {wl.name}"
    obj = session.workload(wl)
    now = session.now()
    if wl.kind == "statefulset":
        return _statefulset_rollout(obj, wl, check_id, title)
    meta = obj.get("metadata") or {}
    try:
        current: int | None = int((meta.get("annotations") or {}).get(REVISION, ""))
    except ValueError:
        current = None
    revisions = session.revisions(wl)
    cur = next((r for r in revisions if r.revision == current), None)
    previous = max(
        (r.revision for r in revisions if current and r.revision < current), default=None
    )
    state, detail = rollout_state(obj)
    prog: dict[str, Any] = next(
        (
            c
            for c in (obj.get("status") or {}).get("conditions") or []
            if c.get("type") == "Progressing"
        ),
        {},
    )
    changed_at = max(
        (t for t in (cur.created if cur else None, parse_time(prog.get("lastUpdateTime"))) if t),
        default=None,
    )
    since = None if changed_at is None else now - changed_at
    recent = since is not None and since < RECENT_SECONDS
    cause = cur.change_cause if cur else None
    status = Status.ok
    if state == "stalled":
        status = Status.critical
    elif state in ("progressing", "paused"):
        status = Status.warn
    summary = f"revision {current if current is not None else '?'}"
    if cause:
        summary += f" ({cause})"
    if changed_at is not None:
        summary += f", rolled out {age(since)} ago"
    summary += f"; {state}: {detail}"
    return CheckResult(
        check_id,
        title,
        "kubernetes",
        status,
        summary,
        evidence={
            "workload": f"{wl.kind}/{wl.name}",
            "current_revision": current,
            "previous_revision": previous,
            "state": state,
            "detail": detail,
            "change_cause": cause,
            "image": cur.image if cur else None,
            "deployed_ago": age(since) if since is not None else None,
            "deployed_within_hour": recent,
            "revisions": [r.row(now, current) for r in revisions[-10:]],
        },
        facts={
            "recent_deploy": recent,
            "deployed_seconds_ago": since,
            "current_revision": current,
            "previous_revision": previous,
            "rollout_state": state,
            "change_cause": cause,
        },
        raw={"revisions.json": [asdict(r) for r in revisions]},
    )


def _statefulset_rollout(
    obj: dict[str, Any], wl: Workload, check_id: str, title: str
) -> CheckResult:
    st = obj.get("status") or {}
    want = int((obj.get("spec") or {}).get("replicas", 1) or 0)
    current, update = st.get("currentRevision"), st.get("updateRevision")
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    state = "progressing" if update and current != update else "complete"
    status = Status.warn if state == "progressing" else Status.ok
    summary = f"revision {update or current or '?'}; {state}: {ready}/{want} ready"
    if state == "progressing":
        summary += f", {updated} updated"
    return CheckResult(
        check_id,
        title,
        "kubernetes",
        status,
        summary,
        evidence={
            "workload": f"{wl.kind}/{wl.name}",
            "current_revision": current,
            "update_revision": update,
            "state": state,
            "ready": ready,
            "desired": want,
        },
        facts={"recent_deploy": False, "rollout_state": state},
    )


# -- k8s.recent-rollouts -------------------------------------------------------------------------


def recent_rollouts_check(
    session: KubeSession, *, within: float = RECENT_SECONDS, check_id: str = "k8s.recent-rollouts"
) -> CheckResult:
    """Every Deployment of the namespace whose current revision rolled out within `within`."""
    client = session.client()
    now = session.now()
    deployments = {
        (d.get("metadata") or {}).get("uid"): d for d in client.iter_items("apps/v1", "deployments")
    }
    changes: list[dict[str, Any]] = []
    for rs in client.iter_items("apps/v1", "replicasets"):
        info = revision_info(rs)
        owners = (rs.get("metadata") or {}).get("ownerReferences") or []
        owner = next((deployments.get(o.get("uid")) for o in owners if o.get("uid")), None)
        if info is None or owner is None:
            continue
        ann = (owner.get("metadata") or {}).get("annotations") or {}
        if str(info.revision) != ann.get(REVISION):
            continue
        prog: dict[str, Any] = next(
            (
                c
                for c in (owner.get("status") or {}).get("conditions") or []
                if c.get("type") == "Progressing"
            ),
            {},
        )
        when = max(
            (t for t in (info.created, parse_time(prog.get("lastUpdateTime"))) if t), default=None
        )
        if when is None or now - when >= within:
            continue
        changes.append(
            {
                "workload": (owner.get("metadata") or {}).get("name"),
                "revision": info.revision,
                "change_cause": info.change_cause,
                "image": info.image,
                "ago": age(now - when),
                "seconds_ago": round(now - when, 1),
            }
        )
    changes.sort(key=lambda c: c["seconds_ago"])
    if changes:
        listed = ", ".join(
            f"{c['workload']} rev {c['revision']} ({c['ago']} ago)" for c in changes[:5]
        )
        summary = (
            f"{len(changes)} rollout{'s' if len(changes) != 1 else ''} in the last hour: {listed}"
        )
    else:
        summary = "no rollouts in the last hour"
    return CheckResult(
        check_id,
        "Rollouts in the namespace in the last hour",
        "kubernetes",
        Status.ok,
        summary,
        evidence={"namespace": session.namespace, "rollouts": changes},
        facts={"recent_rollouts": [c["workload"] for c in changes]},
    )


def workload_ready(obj: dict[str, Any]) -> tuple[int, int]:
    """(ready, desired) from a Deployment's or StatefulSet's status (for `somactl status`)."""
    want = int((obj.get("spec") or {}).get("replicas", 1) or 0)
    ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
    return ready, want
