"""What a service's deployment looks like in the (simulated) Kubernetes API, polled over HTTP.

The stand-ins read the same JSON any client reads: the pod list filtered by `app=<service>` and
the Deployment. From the pods they take readiness (the Ready condition), crash loops
(CrashLoopBackOff / a terminated container / phase Failed), OOMKilled restarts, the simulator's
per-pod working-set figure (annotation `somactl.lab/memory-working-set-bytes`) and the pod's
behaviour (annotation `somactl.lab/behavior` or the image tag rules of the simulator).

If the API stops answering, the watcher keeps the last state it saw: a stand-in must not start
failing because the lab's control plane hiccups.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from somactl.lab.kube.behaviors import BEHAVIOR_ANNOTATION, MEMORY_ANNOTATION, behavior_for

CRASH_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "Error", "RunContainerError", "CreateContainerError", "OOMKilled"}
)
CRASH_TERMINATED_REASONS = frozenset({"Error", "OOMKilled", "ContainerCannotRun"})

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)$")
_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": 1e-3,
}


def parse_quantity(text: Any) -> float | None:
    """A Kubernetes resource quantity (`512Mi`, `1G`, `100m`, `123`) as a number, or None."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        return None
    m = _QUANTITY.match(text.strip())
    if m is None or m.group(2) not in _SUFFIX:
        return None
    try:
        return float(m.group(1)) * _SUFFIX[m.group(2)]
    except ValueError:
        return None


@dataclass(frozen=True)
class PodView:
    name: str
    phase: str
    ready: bool
    crashing: bool
    deleting: bool
    restarts: int
    oom_killed: bool
    behavior: str
    memory_bytes: int | None
    memory_limit_bytes: int | None
    container: str


@dataclass(frozen=True)
class DeploymentView:
    """One poll's worth of state. `known` is False until a poll succeeded."""

    known: bool = False
    exists: bool = False
    replicas: int | None = None
    revision: str | None = None
    image: str | None = None
    pods: tuple[PodView, ...] = ()
    fetched_at: float | None = None

    @property
    def live_pods(self) -> tuple[PodView, ...]:
        return tuple(p for p in self.pods if not p.deleting)

    @property
    def ready(self) -> int:
        return sum(1 for p in self.live_pods if p.ready)

    @property
    def crashing(self) -> int:
        return sum(1 for p in self.live_pods if p.crashing and not p.ready)


def _dig(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def pod_view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        annotations = {}
    containers = spec.get("containers") or [{}]
    first = containers[0] if isinstance(containers[0], dict) else {}
    phase = str(status.get("phase") or "Pending")
    deleting = bool(meta.get("deletionTimestamp"))
    ready = (
        phase == "Running"
        and not deleting
        and any(
            isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )
    restarts = 0
    crashing = phase == "Failed"
    oom = False
    for cs in status.get("containerStatuses") or []:
        if not isinstance(cs, dict):
            continue
        restarts += int(cs.get("restartCount") or 0)
        waiting = str(_dig(cs, "state", "waiting", "reason") or "")
        terminated = str(_dig(cs, "state", "terminated", "reason") or "")
        last = str(_dig(cs, "lastState", "terminated", "reason") or "")
        if waiting in CRASH_WAITING_REASONS or terminated in CRASH_TERMINATED_REASONS:
            crashing = True
        # Between two crashes the container is briefly "running" but never became ready.
        if last in CRASH_TERMINATED_REASONS and not cs.get("ready"):
            crashing = True
        if "OOMKilled" in (terminated, last, waiting):
            oom = True
    memory = parse_quantity(annotations.get(MEMORY_ANNOTATION))
    limit = parse_quantity(_dig(first, "resources", "limits", "memory"))
    name = str(annotations.get(BEHAVIOR_ANNOTATION) or "")
    if not name:
        name = behavior_for(
            {str(k): str(v) for k, v in annotations.items()}, str(first.get("image") or "")
        ).name
    return PodView(
        name=str(meta.get("name") or ""),
        phase=phase,
        ready=ready,
        crashing=crashing,
        deleting=deleting,
        restarts=restarts,
        oom_killed=oom,
        behavior=name,
        memory_bytes=int(memory) if memory is not None else None,
        memory_limit_bytes=int(limit) if limit is not None else None,
        container=str(first.get("name") or "app"),
    )


class KubeError(Exception):
    pass


@dataclass
class KubeSource:
    """Where and how to reach the API server (plain HTTP on loopback in the lab)."""

    base_url: str
    namespace: str
    token: str | None = None
    ca_file: str | None = None
    timeout: float = 0.8
    _ctx: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    def get_json(self, path: str) -> dict[str, Any] | None:
        """GET a path; None on 404; KubeError on anything else that is not a 200 object."""
        req = urllib.request.Request(self.base_url.rstrip("/") + path)  # noqa: S310 - URL is ours
        req.add_header("Accept", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        ctx = None
        if self.base_url.startswith("https:"):
            if self._ctx is None:
                if self.ca_file:
                    self._ctx = ssl.create_default_context(cafile=self.ca_file)
                else:
                    # Loopback only (the lab's own API server): nothing to verify it against.
                    self._ctx = ssl._create_unverified_context()  # noqa: S323
            ctx = self._ctx
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:  # noqa: S310
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise KubeError(f"HTTP {exc.code} from {path}") from None
        except (OSError, ValueError) as exc:
            raise KubeError(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(data, dict):
            raise KubeError(f"{path}: not a JSON object")
        return data

    def fetch(self, service: str, now: float) -> DeploymentView:
        ns = quote(self.namespace, safe="")
        name = quote(service, safe="")
        pods = self.get_json(
            f"/api/v1/namespaces/{ns}/pods?labelSelector={quote(f'app={service}', safe='')}"
        )
        if pods is None:
            raise KubeError(f"namespace {self.namespace} not found")
        deploy = self.get_json(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        items = [p for p in pods.get("items") or [] if isinstance(p, dict)]
        views = tuple(sorted((pod_view(p) for p in items), key=lambda p: p.name))
        if deploy is None:
            return DeploymentView(known=True, exists=False, pods=views, fetched_at=now)
        spec = deploy.get("spec") or {}
        replicas = spec.get("replicas")
        containers = _dig(spec, "template", "spec", "containers") or [{}]
        image = containers[0].get("image") if isinstance(containers[0], dict) else None
        revision = _dig(deploy, "metadata", "annotations", "deployment.kubernetes.io/revision")
        return DeploymentView(
            known=True,
            exists=True,
            replicas=int(replicas) if isinstance(replicas, int) else None,
            revision=str(revision) if revision is not None else None,
            image=str(image) if image else None,
            pods=views,
            fetched_at=now,
        )


class KubeWatcher:
    """Polls one service's deployment every `interval` seconds on a daemon thread."""

    def __init__(
        self,
        source: KubeSource,
        service: str,
        *,
        interval: float = 1.0,
        on_change: Callable[[DeploymentView], None] | None = None,
    ) -> None:
        self.source = source
        self.service = service
        self.interval = interval
        self.on_change = on_change
        self._view = DeploymentView()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.failures = 0
        self.last_error: str | None = None
        self.api_up = False

    @property
    def view(self) -> DeploymentView:
        with self._lock:
            return self._view

    def poll_once(self) -> DeploymentView:
        try:
            view = self.source.fetch(self.service, time.time())
        except KubeError as exc:
            with self._lock:
                self.failures += 1
                self.last_error = str(exc)
                self.api_up = False
                return self._view
        with self._lock:
            self.polls += 1
            self.api_up = True
            self.last_error = None
            self._view = view
        if self.on_change is not None:
            self.on_change(view)
        return view

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"kube-watch-{self.service}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
