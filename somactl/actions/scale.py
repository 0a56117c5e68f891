"""`mitigate scale`: kubectl scale --current-replicas=N --resource-version=RV, i.e. GET /scale,
check, PUT /scale carrying the resourceVersion, then the change-cause on the workload."""

from __future__ import annotations

from somactl.actions.base import Actor, Outcome, Plan
from somactl.actions.kube import (
    CHANGE_CAUSE,
    Workload,
    fingerprint,
    hpa_summary,
    hpas_for,
    meta,
    rv,
)
from somactl.actions.workload import KubeAction
from somactl.clients.kube import ConflictError, KubeClient
from somactl.core.errors import PreconditionError, SomactlError, UsageError

MAX_REPLICAS = 1000
MERGE_PATCH = "application/merge-patch+json"


def check_replicas(replicas: int) -> int:
    if isinstance(replicas, bool) or not 0 <= replicas <= MAX_REPLICAS:
        raise UsageError(
            f"--replicas must be between 0 and {MAX_REPLICAS} (got {replicas})",
            "scaling beyond that is not an incident mitigation",
        )
    return replicas


class ScaleAction(KubeAction):
    name = "scale"

    def __init__(
        self,
        client: KubeClient,
        workload: Workload,
        *,
        replicas: int,
        actor: Actor,
        override_hpa: bool = False,
        server_dry_run: bool = False,
    ) -> None:
        super().__init__(client, workload, actor=actor, server_dry_run=server_dry_run)
        self.replicas = check_replicas(replicas)
        self.override_hpa = override_hpa

    def plan(self) -> Plan:
        wl = self.workload
        obj = wl.get(self.client)
        self.planned = obj
        current = int((obj.get("spec") or {}).get("replicas", 1))
        want = self.replicas
        plan = Plan(
            action=self.name,
            target=wl.target(self.client),
            summary=f"scale {wl.ref()} from {current} to {want} replicas",
            consent=f"scale {wl.ref()} to {want} replicas",
            server_dry_run=True,
            details={"current_replicas": current, "replicas": want, "before": self.snapshot(obj)},
            pins={
                "resourceVersion": rv(obj),
                "fingerprint": fingerprint(obj),
                "current_replicas": current,
            },
        )
        hpas = [hpa_summary(h) for h in hpas_for(self.client, wl)]
        if hpas:
            plan.details["hpa"] = hpas
            h = hpas[0]
            lo, hi = int(h["min"] or 1), int(h["max"] or 1)
            if want == 0:
                effect = (
                    f"HPA {h['name']} (min {lo}, max {hi}) manages {wl.ref()}: at 0 replicas it "
                    "stops autoscaling until the workload is scaled up again, then it takes over"
                )
            elif want < lo or want > hi:
                bound = lo if want < lo else hi
                effect = (
                    f"HPA {h['name']} (min {lo}, max {hi}) will override this and scale "
                    f"{wl.ref()} back to {bound}"
                )
            else:
                effect = (
                    f"HPA {h['name']} (min {lo}, max {hi}) manages {wl.ref()} and will resize it "
                    "from its metrics"
                )
            if not self.override_hpa:
                plan.blocked = effect
                plan.blocked_hint = (
                    "change the HPA instead (`somactl mitigate autoscale ... --replace`), or "
                    "re-run with --override-hpa to scale anyway"
                )
                return plan
            plan.warnings.append(effect + " (--override-hpa)")
        if current == want:
            plan.noop = f"{wl.ref()} already has {want} replicas"
            return plan
        if want == 0:
            plan.typed_name = wl.name
            plan.warnings.append(f"scaling to 0 stops every pod of {wl.ref()}: an outage")
        cause = self.actor.change_cause(f"scale to {want} replicas")
        plan.details["change_cause"] = cause
        plan.display = [f"replicas: {current} → {want}"]
        plan.steps = [
            f"GET {wl.ref()}/scale; stop (exit 5) unless replicas are still {current} and the "
            f"{wl.kind} is unchanged (rv {rv(obj)})",
            f"PUT {wl.ref()}/scale replicas={want} with that resourceVersion",
            f"annotate {wl.ref()} {CHANGE_CAUSE}={cause!r}",
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        wl = self.workload
        expected = int(plan.pins["current_replicas"])
        for _attempt in range(3):
            obj = wl.get(self.client)
            found = int((obj.get("spec") or {}).get("replicas", 1))
            if found != expected:
                raise PreconditionError(
                    f"expected replicas {expected}, found {found}: {wl.ref()} was scaled since "
                    "the plan; re-run to re-plan",
                    "nothing was changed (an HPA or another person changed the replica count)",
                )
            if fingerprint(obj) != plan.pins["fingerprint"]:
                raise self.changed(plan, obj)
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": wl.name,
                    "namespace": self.client.namespace,
                    "resourceVersion": rv(obj),
                    "uid": meta(obj).get("uid"),
                },
                "spec": {"replicas": self.replicas},
            }
            try:
                scaled = self.write("PUT", wl.path(self.client) + "/scale", body)
            except ConflictError:
                continue  # a status write raced us: re-read and re-check
            cause = plan.details.get("change_cause")
            note: dict[str, str] = {}
            try:
                self.write(
                    "PATCH",
                    wl.path(self.client),
                    {"metadata": {"annotations": {CHANGE_CAUSE: cause}}},
                    content_type=MERGE_PATCH,
                )
            except SomactlError as exc:  # the scale has landed: report it, and the missing note
                note = {"change_cause_error": exc.message}
            label = " (server dry run: validated, not persisted)" if self.server_dry_run else ""
            return Outcome(
                "applied",
                f"{wl.kind}.apps/{wl.name} scaled to {self.replicas}{label}",
                {
                    "replicas": self.replicas,
                    "from": expected,
                    "resourceVersion": rv(scaled) if isinstance(scaled, dict) else None,
                    "server_dry_run": self.server_dry_run,
                    **note,
                },
            )
        raise PreconditionError(
            f"{wl.ref()} kept changing while somactl wrote to it; re-run to re-plan"
        )
