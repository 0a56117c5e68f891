"""`mitigate restart` (and redis-restart, and the database's last resort): kubectl rollout
restart, i.e. the `kubectl.kubernetes.io/restartedAt` template annotation, set in one strategic
merge patch together with the change-cause and the resourceVersion it was planned against."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from somactl.actions.base import Actor, Outcome, Plan
from somactl.actions.kube import CHANGE_CAUSE, RESTARTED_AT, Workload, fingerprint, rv
from somactl.actions.workload import KubeAction
from somactl.clients.kube import ConflictError, KubeClient
from somactl.core.errors import PreconditionError

SMP = "application/strategic-merge-patch+json"


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RestartAction(KubeAction):
    name = "restart"

    def __init__(
        self,
        client: KubeClient,
        workload: Workload,
        *,
        actor: Actor,
        typed_name: bool = False,
        server_dry_run: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(client, workload, actor=actor, server_dry_run=server_dry_run)
        self.typed_name = typed_name
        self.clock = clock

    def _restarted_at(self, obj: dict[str, object]) -> str | None:
        spec = obj.get("spec") or {}
        template = spec.get("template") if isinstance(spec, dict) else None
        tmeta = (template or {}).get("metadata") if isinstance(template, dict) else None
        ann = (tmeta or {}).get("annotations") if isinstance(tmeta, dict) else None
        value = ann.get(RESTARTED_AT) if isinstance(ann, dict) else None
        return str(value) if value else None

    def plan(self) -> Plan:
        wl = self.workload
        obj = wl.get(self.client)
        self.planned = obj
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        plan = Plan(
            action=self.name,
            target=wl.target(self.client),
            summary=f"restart {wl.ref()} (rolling restart of {replicas} pods)",
            consent=f"restart {wl.ref()}",
            server_dry_run=True,
            details={"before": self.snapshot(obj), "last_restart": self._restarted_at(obj)},
            pins={"resourceVersion": rv(obj), "fingerprint": fingerprint(obj)},
        )
        if (obj.get("spec") or {}).get("paused"):
            plan.blocked = (
                f"{wl.kind} {wl.name} is paused; run resume first (kubectl: can't restart paused "
                "deployment (run rollout resume first))"
            )
            plan.blocked_hint = f"kubectl rollout resume {wl.ref()} -n {self.client.namespace}"
            return plan
        if self.typed_name:
            plan.typed_name = wl.name
        if wl.kind == "statefulset":
            plan.warnings.append(
                f"{wl.ref()} restarts one pod at a time from the highest ordinal; "
                "while a pod restarts its clients lose their connections"
            )
        cause = self.actor.change_cause("restart")
        plan.details["change_cause"] = cause
        plan.steps = [
            f"re-read {wl.ref()}; stop (exit 5) if it changed since this plan (rv {rv(obj)})",
            f"PATCH {wl.ref()} (strategic merge): template annotation {RESTARTED_AT}=<now>, "
            f"{CHANGE_CAUSE}={cause!r}",
            "the controller replaces the pods (rolling)",
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        wl = self.workload
        for _attempt in range(3):
            obj = wl.get(self.client)
            if fingerprint(obj) != plan.pins["fingerprint"]:
                raise self.changed(plan, obj)
            stamp = rfc3339(self.clock())
            if self._restarted_at(obj) == stamp:
                # kubectl: the two-way patch would be empty
                raise PreconditionError(
                    f"a restart of {wl.ref()} was already triggered within the past second "
                    f"(restartedAt {stamp}); wait a second before triggering another",
                    "nothing was changed: no second rollout was started",
                )
            patch = {
                "metadata": {
                    "resourceVersion": rv(obj),
                    "annotations": {CHANGE_CAUSE: plan.details["change_cause"]},
                },
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}},
            }
            try:
                self.write("PATCH", wl.path(self.client), patch, content_type=SMP)
            except ConflictError:
                continue
            label = " (server dry run: validated, not persisted)" if self.server_dry_run else ""
            return Outcome(
                "applied",
                f"{wl.kind}.apps/{wl.name} restarted{label}",
                {"restartedAt": stamp, "server_dry_run": self.server_dry_run},
            )
        raise PreconditionError(f"{wl.ref()} kept changing while somactl wrote to it; re-run")
