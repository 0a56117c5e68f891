"""`mitigate isolate` / `unisolate` (the security scenario): evidence first, then a deny-all
NetworkPolicy over the service's pods; nothing is deleted, so the pods stay for forensics.

The evidence snapshot (the workload, each pod's object, each container's logs, the events) is
written to the state directory with a sha256 per file and a manifest whose own hash is put on the
policy. The policy carries `somactl.dev/isolate=<workload>` and `app.kubernetes.io/managed-by=
somactl`; unisolate deletes exactly the policies with both labels, each guarded by its uid and
resourceVersion."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from somactl.actions.base import Actor, Outcome, Plan, Verification
from somactl.actions.kube import (
    CHANGE_CAUSE,
    JSON,
    MANAGED_BY,
    Workload,
    fingerprint,
    meta,
    rv,
    selector_of,
)
from somactl.actions.workload import KubeAction
from somactl.clients.kube import KubeClient, NotFoundError
from somactl.core.errors import PreconditionError, SomactlError

ISOLATE_LABEL = "somactl.dev/isolate"
EVIDENCE_ANNOTATION = "somactl.dev/evidence-sha256"
NETPOL = ("networking.k8s.io/v1", "networkpolicies")
LOG_TAIL = 5000


def policy_name(workload: str) -> str:
    return f"somactl-isolate-{workload}"[:253]


def _label_value(workload: str) -> str:
    if len(workload) <= 63:
        return workload
    return workload[:50] + "-" + hashlib.sha256(workload.encode()).hexdigest()[:12]


def isolation_selector(workload: str) -> str:
    return f"{MANAGED_BY}=somactl,{ISOLATE_LABEL}={_label_value(workload)}"


def _write_private(path: Path, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest()


class IsolateAction(KubeAction):
    name = "isolate"

    def __init__(
        self,
        client: KubeClient,
        workload: Workload,
        *,
        actor: Actor,
        evidence_root: Path,
        typed_name: bool = True,
        server_dry_run: bool = False,
    ) -> None:
        super().__init__(client, workload, actor=actor, server_dry_run=server_dry_run)
        self.evidence_root = evidence_root
        self.typed_name = typed_name

    def plan(self) -> Plan:
        wl = self.workload
        obj = wl.get(self.client)
        self.planned = obj
        selector = (obj.get("spec") or {}).get("selector") or {}
        sel_text = selector_of(obj)
        pods = self.client.list("v1", "pods", label_selector=sel_text or None)
        existing = self.client.list(*NETPOL, label_selector=isolation_selector(wl.name))
        name = policy_name(wl.name)
        plan = Plan(
            action=self.name,
            target=wl.target(self.client),
            summary=f"isolate {wl.ref()}: deny all ingress and egress of its {len(pods)} pods",
            consent=f"isolate {wl.ref()} (deny all traffic)",
            server_dry_run=True,
            details={
                "selector": sel_text,
                "pods": [meta(p).get("name") for p in pods],
                "policy": name,
                "before": self.snapshot(obj),
            },
            pins={"resourceVersion": rv(obj), "fingerprint": fingerprint(obj)},
        )
        if existing:
            plan.noop = f"{wl.ref()} is already isolated by networkpolicy " + ", ".join(
                str(meta(p).get("name")) for p in existing
            )
            return plan
        if not sel_text:
            plan.blocked = f"{wl.ref()} has no pod selector to isolate"
            return plan
        if self.typed_name:
            plan.typed_name = wl.name
        cause = self.actor.change_cause("isolate (deny all traffic)")
        plan.details.update({"change_cause": cause, "_selector": selector})
        plan.display = [
            f"pods ({len(pods)}): " + (", ".join(plan.details["pods"]) or "none"),
            f"policy: networkpolicy/{name} podSelector {sel_text}, policyTypes Ingress+Egress, "
            "no rules (deny all)",
        ]
        plan.warnings.append(
            "every connection to and from these pods stops: the service is down for its users"
        )
        plan.steps = [
            f"snapshot evidence to {self.evidence_root}/<time>-{wl.name}/: the {wl.kind}, each "
            "pod's object, each container's logs, the events (sha256 per file, manifest.json)",
            f"re-read {wl.ref()}; stop (exit 5) if it changed since this plan",
            f"create networkpolicy/{name} (labels {isolation_selector(wl.name)}, "
            f"{CHANGE_CAUSE}={cause!r})",
            f"undo with `somactl mitigate unisolate {wl.name}`",
        ]
        return plan

    # --- evidence ------------------------------------------------------------------------------

    def collect_evidence(self, plan: Plan) -> JSON:
        wl = self.workload
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        root = self.evidence_root / f"{stamp}-{self.client.namespace}-{wl.name}"
        root.mkdir(parents=True, mode=0o700, exist_ok=False)
        files: list[JSON] = []
        errors: list[JSON] = []

        def save(rel: str, data: bytes) -> None:
            path = root / rel
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            files.append({"path": rel, "sha256": _write_private(path, data), "bytes": len(data)})

        def dump(obj: Any) -> bytes:
            return json.dumps(obj, indent=2, sort_keys=True).encode()

        obj = wl.get(self.client)
        save(f"{wl.kind}.json", dump(obj))
        pods = self.client.list("v1", "pods", label_selector=selector_of(obj) or None)
        names = {wl.name}
        for pod in pods:
            pname = str(meta(pod).get("name"))
            names.add(pname)
            for ref in meta(pod).get("ownerReferences") or []:
                names.add(str(ref.get("name")))
            save(f"pods/{pname}.json", dump(pod))
            statuses = {
                s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []
            }
            for c in (pod.get("spec") or {}).get("containers") or []:
                cname = str(c.get("name"))
                runs = [False]
                if int((statuses.get(cname) or {}).get("restartCount") or 0) > 0:
                    runs.append(True)
                for previous in runs:
                    suffix = ".previous" if previous else ""
                    try:
                        text = self.client.pod_log(
                            pname, container=cname, tail=LOG_TAIL, previous=previous
                        )
                    except SomactlError as exc:
                        errors.append(
                            {"item": f"logs/{pname}/{cname}{suffix}", "error": exc.message}
                        )
                        continue
                    save(f"logs/{pname}/{cname}{suffix}.log", text.encode())
        events = [
            e
            for e in self.client.list("v1", "events")
            if str((e.get("involvedObject") or {}).get("name")) in names
        ]
        save("events.json", dump(events))
        manifest = {
            "service": wl.name,
            "kind": wl.kind,
            "namespace": self.client.namespace,
            "cluster": str(self.client.host),
            "collected_at": stamp,
            "actor": self.actor.user,
            "incident": self.actor.incident,
            "files": files,
            "errors": errors,
        }
        digest = _write_private(root / "manifest.json", dump(manifest))
        return {
            "dir": str(root),
            "manifest_sha256": digest,
            "files": len(files),
            "errors": errors,
        }

    def apply(self, plan: Plan) -> Outcome:
        wl = self.workload
        evidence: JSON = {}
        if not self.server_dry_run:
            evidence = self.collect_evidence(plan)
        obj = wl.get(self.client)
        if fingerprint(obj) != plan.pins["fingerprint"]:
            raise self.changed(plan, obj)
        name = policy_name(wl.name)
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": name,
                "namespace": self.client.namespace,
                "labels": {MANAGED_BY: "somactl", ISOLATE_LABEL: _label_value(wl.name)},
                "annotations": {
                    CHANGE_CAUSE: plan.details["change_cause"],
                    EVIDENCE_ANNOTATION: evidence.get("manifest_sha256", ""),
                },
            },
            "spec": {
                "podSelector": plan.details["_selector"],
                "policyTypes": ["Ingress", "Egress"],
            },
        }
        self.write("POST", self.client.ns_path(*NETPOL), body)
        label = " (server dry run: validated, not persisted)" if self.server_dry_run else ""
        return Outcome(
            "applied",
            f"networkpolicy.networking.k8s.io/{name} created: {wl.ref()} isolated{label}",
            {"policy": name, "evidence": evidence, "server_dry_run": self.server_dry_run},
        )

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        if outcome.status != "applied" or self.server_dry_run:
            return None
        name = str(outcome.details.get("policy"))
        try:
            pol = self.client.get(*NETPOL, name)
        except NotFoundError:
            return Verification(False, f"networkpolicy {name} is not there")
        sel = (pol.get("spec") or {}).get("podSelector")
        return Verification(
            True,
            f"networkpolicy {name} selects {len(plan.details.get('pods') or [])} pods; "
            f"evidence in {outcome.details.get('evidence', {}).get('dir')}",
            before={"isolated": False},
            after={"isolated": True, "podSelector": sel},
        )


class UnisolateAction(KubeAction):
    name = "unisolate"

    def __init__(
        self,
        client: KubeClient,
        workload: Workload,
        *,
        actor: Actor,
        server_dry_run: bool = False,
    ) -> None:
        super().__init__(client, workload, actor=actor, server_dry_run=server_dry_run)

    def plan(self) -> Plan:
        wl = self.workload
        policies = self.client.list(*NETPOL, label_selector=isolation_selector(wl.name))
        names = [str(meta(p).get("name")) for p in policies]
        plan = Plan(
            action=self.name,
            target=wl.target(self.client),
            summary=f"lift the isolation of {wl.ref()}: delete " + (", ".join(names) or "nothing"),
            consent=f"lift the isolation of {wl.ref()}",
            server_dry_run=True,
            details={"policies": names},
            pins={
                "policies": [
                    {
                        "name": meta(p).get("name"),
                        "uid": meta(p).get("uid"),
                        "resourceVersion": rv(p),
                    }
                    for p in policies
                ]
            },
        )
        if not policies:
            plan.noop = (
                f"{wl.ref()} is not isolated "
                f"(no networkpolicy labelled {isolation_selector(wl.name)})"
            )
            return plan
        plan.steps = [
            f"DELETE networkpolicy/{n} (precondition: uid and resourceVersion as planned)"
            for n in names
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        deleted = []
        for pin in plan.pins["policies"]:
            body = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"uid": pin["uid"], "resourceVersion": pin["resourceVersion"]},
            }
            try:
                self.write("DELETE", self.client.ns_path(*NETPOL, pin["name"]), body)
            except NotFoundError:
                raise PreconditionError(
                    f"networkpolicy {pin['name']} is gone since the plan; re-run to re-plan"
                ) from None
            deleted.append(pin["name"])
        label = " (server dry run: validated, not persisted)" if self.server_dry_run else ""
        return Outcome(
            "applied",
            f"deleted {', '.join(deleted)}: {self.workload.ref()} is reachable again{label}",
            {"deleted": deleted, "server_dry_run": self.server_dry_run},
        )

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        if outcome.status != "applied" or self.server_dry_run:
            return None
        left = self.client.list(*NETPOL, label_selector=isolation_selector(self.workload.name))
        return Verification(
            not left,
            "no isolating networkpolicy left"
            if not left
            else "still there: " + ", ".join(str(meta(p).get("name")) for p in left),
            before={"isolated": True},
            after={"isolated": bool(left)},
        )
