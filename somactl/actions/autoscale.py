"""`mitigate autoscale`: an autoscaling/v2 HorizontalPodAutoscaler on CPU utilization (what
`kubectl autoscale --min --max --cpu-percent` makes); an existing one is shown and needs
--replace, which updates it in place (PUT with its resourceVersion)."""

from __future__ import annotations

from typing import Any

from somactl.actions.base import Actor, Outcome, Plan
from somactl.actions.kube import (
    CHANGE_CAUSE,
    MANAGED_BY,
    Workload,
    fingerprint,
    hpa_summary,
    hpas_for,
    meta,
    rv,
)
from somactl.actions.workload import KubeAction
from somactl.clients.kube import KubeClient
from somactl.core.errors import PreconditionError, UsageError

MAX_REPLICAS = 1000


def check_bounds(min_replicas: int, max_replicas: int, cpu_percent: int) -> None:
    if not 1 <= min_replicas <= MAX_REPLICAS:
        raise UsageError(f"--min must be between 1 and {MAX_REPLICAS} (got {min_replicas})")
    if not 1 <= max_replicas <= MAX_REPLICAS:
        raise UsageError(f"--max must be between 1 and {MAX_REPLICAS} (got {max_replicas})")
    if max_replicas < min_replicas:
        raise UsageError(
            f"--max must be ≥ --min (max {max_replicas}, min {min_replicas})",
            "nothing was created",
        )
    if not 1 <= cpu_percent <= 1000:
        raise UsageError(f"--cpu-percent must be between 1 and 1000 (got {cpu_percent})")


class AutoscaleAction(KubeAction):
    name = "autoscale"

    def __init__(
        self,
        client: KubeClient,
        workload: Workload,
        *,
        min_replicas: int,
        max_replicas: int,
        cpu_percent: int,
        actor: Actor,
        replace: bool = False,
        server_dry_run: bool = False,
    ) -> None:
        check_bounds(min_replicas, max_replicas, cpu_percent)
        super().__init__(client, workload, actor=actor, server_dry_run=server_dry_run)
        self.min = min_replicas
        self.max = max_replicas
        self.cpu = cpu_percent
        self.replace = replace
        self.existing: dict[str, Any] | None = None

    def _hpa_path(self, name: str | None = None) -> str:
        return self.client.ns_path("autoscaling/v2", "horizontalpodautoscalers", name)

    def _spec(self) -> dict[str, Any]:
        return {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": self.workload.kind_title,
                "name": self.workload.name,
            },
            "minReplicas": self.min,
            "maxReplicas": self.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": self.cpu},
                    },
                }
            ],
        }

    def plan(self) -> Plan:
        wl = self.workload
        obj = wl.get(self.client)  # the target must exist
        wanted = {"min": self.min, "max": self.max, "cpu_percent": self.cpu}
        plan = Plan(
            action=self.name,
            target=f"horizontalpodautoscaler/{wl.name} → {wl.ref()} ({self.client.namespace})",
            summary=(
                f"autoscale {wl.ref()}: min {self.min}, max {self.max}, "
                f"target CPU {self.cpu}% (autoscaling/v2)"
            ),
            server_dry_run=True,
            details={"wanted": wanted, "before": self.snapshot(obj)},
            pins={"target_uid": meta(obj).get("uid")},
        )
        existing = hpas_for(self.client, wl)
        cause = self.actor.change_cause(f"autoscale min {self.min} max {self.max} cpu {self.cpu}%")
        plan.details["change_cause"] = cause
        if existing:
            h = existing[0]
            self.existing = h
            self.planned = h
            cur = hpa_summary(h)
            plan.details["existing"] = cur
            diff = [f"{k}: {cur.get(k)} → {v}" for k, v in wanted.items() if cur.get(k) != v]
            plan.details["diff"] = diff
            plan.display = [
                f"existing HPA {cur['name']}: min {cur['min']}, max {cur['max']}, "
                f"target CPU {cur['cpu_percent']}%",
                *(f"  {line}" for line in diff or ["(no difference)"]),
            ]
            plan.pins.update(
                {"hpa": cur["name"], "resourceVersion": rv(h), "fingerprint": fingerprint(h)}
            )
            if not diff:
                plan.noop = (
                    f"HPA {cur['name']} already has min {self.min}, max {self.max}, CPU {self.cpu}%"
                )
                return plan
            if not self.replace:
                plan.blocked = (
                    f"{wl.ref()} already has HPA {cur['name']} (min {cur['min']}, max "
                    f"{cur['max']}, CPU {cur['cpu_percent']}%)"
                )
                plan.blocked_hint = "re-run with --replace to update it to the values above"
                return plan
            plan.summary = f"update HPA {cur['name']} of {wl.ref()}: " + ", ".join(diff)
            plan.steps = [
                f"re-read HPA {cur['name']}; stop (exit 5) if it changed since this plan",
                f"PUT HPA {cur['name']} (autoscaling/v2) with resourceVersion {rv(h)}, "
                f"{CHANGE_CAUSE}={cause!r}",
            ]
            return plan
        plan.display = [f"no HPA targets {wl.ref()} yet"]
        plan.steps = [
            f"POST HPA {wl.name} (autoscaling/v2): scaleTargetRef {wl.kind_title}/{wl.name}, "
            f"minReplicas {self.min}, maxReplicas {self.max}, cpu averageUtilization {self.cpu}%, "
            f"{CHANGE_CAUSE}={cause!r}",
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        wl = self.workload
        cause = plan.details["change_cause"]
        label = " (server dry run: validated, not persisted)" if self.server_dry_run else ""
        if "hpa" in plan.pins:
            name = str(plan.pins["hpa"])
            h = self.client.get("autoscaling/v2", "horizontalpodautoscalers", name)
            if fingerprint(h) != plan.pins["fingerprint"]:
                raise PreconditionError(
                    f"state changed since plan (rv {plan.pins['resourceVersion']}→{rv(h)}): HPA "
                    f"{name} was modified; re-run to re-plan"
                )
            new = dict(h)
            new.pop("status", None)
            m = dict(meta(h))
            m["annotations"] = {**(m.get("annotations") or {}), CHANGE_CAUSE: cause}
            m["resourceVersion"] = rv(h)
            new["metadata"] = m
            new["apiVersion"] = "autoscaling/v2"
            new["kind"] = "HorizontalPodAutoscaler"
            new["spec"] = {**(h.get("spec") or {}), **self._spec()}
            self.write("PUT", self._hpa_path(name), new)
            return Outcome(
                "applied",
                f"horizontalpodautoscaler.autoscaling/{name} updated{label}",
                {"hpa": name, "min": self.min, "max": self.max, "cpu_percent": self.cpu},
            )
        body = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": wl.name,
                "namespace": self.client.namespace,
                "labels": {MANAGED_BY: "somactl"},
                "annotations": {CHANGE_CAUSE: cause},
            },
            "spec": self._spec(),
        }
        # A create cannot be re-checked against a plan; an HPA made meanwhile answers 409 (exit 5).
        self.write("POST", self._hpa_path(), body)
        return Outcome(
            "applied",
            f"horizontalpodautoscaler.autoscaling/{wl.name} autoscaled{label}",
            {"hpa": wl.name, "min": self.min, "max": self.max, "cpu_percent": self.cpu},
        )

    def follows_rollout(self, plan: Plan, outcome: Outcome) -> bool:
        return False

    def verify(self, plan: Plan, outcome: Outcome) -> Any:
        if outcome.status != "applied" or self.server_dry_run:
            return None
        from somactl.actions.base import Verification

        name = str(outcome.details.get("hpa"))
        h = self.client.get("autoscaling/v2", "horizontalpodautoscalers", name)
        after = hpa_summary(h)
        ok = (after["min"], after["max"], after["cpu_percent"]) == (self.min, self.max, self.cpu)
        return Verification(
            ok,
            f"HPA {name}: min {after['min']}, max {after['max']}, CPU {after['cpu_percent']}%",
            before=plan.details.get("existing") or {"hpa": None},
            after=after,
        )
