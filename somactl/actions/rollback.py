"""`mitigate rollback`: kubectl's `rollout undo` (pkg/polymorphichelpers/rollback.go), always to
an explicit revision.

`kubectl rollout undo` without --to-revision picks the second-highest revision; the controller
then renumbers the restored ReplicaSet to the highest, so a retry flips back to the bad version.
Here the plan resolves the revision (and the ReplicaSet) once, the patch carries that template,
and a re-run that finds the deployment already on a template a rollback restored is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from somactl.actions.base import Actor, Outcome, Plan
from somactl.actions.kube import (
    CHANGE_CAUSE,
    JSON,
    REVISION_HISTORY,
    ROLLBACK_SKIP_ANNOTATIONS,
    Workload,
    annotations_of,
    equal_ignore_hash,
    fingerprint,
    images,
    meta,
    new_replicaset,
    owned_replicasets,
    revision,
    rv,
    template_diff,
    without_hash,
)
from somactl.actions.workload import KubeAction
from somactl.clients.kube import ConflictError, KubeClient
from somactl.core.errors import PreconditionError, UnreachableError, UsageError

JSON_PATCH = "application/json-patch+json"
MAX_CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class EarlierRollback:
    """The last rollback the audit journal recorded for this deployment."""

    target_rs: str
    revision: int
    ts: str
    outcome: str  # ok | unknown | failed


class RollbackAction(KubeAction):
    name = "rollback"

    def __init__(
        self,
        client: KubeClient,
        deployment: str,
        *,
        to_revision: int | None,
        actor: Actor,
        server_dry_run: bool = False,
        earlier: EarlierRollback | None = None,
    ) -> None:
        if to_revision is not None and to_revision < 1:
            raise UsageError(
                f"--to-revision must be a revision number >= 1 (got {to_revision})",
                "list them with `kubectl rollout history deployment/NAME`",
            )
        super().__init__(
            client,
            Workload("deployment", deployment),
            actor=actor,
            server_dry_run=server_dry_run,
        )
        self.to_revision = to_revision
        self.earlier = earlier

    def plan(self) -> Plan:
        wl = self.workload
        d = wl.get(self.client)
        self.planned = d
        name = wl.name
        rss = owned_replicasets(self.client, d)
        by_rev: dict[int, JSON] = {}
        for rs in rss:
            r = revision(rs)
            if r > 0:
                by_rev[r] = rs
        available = sorted(by_rev)
        current_rev = revision(d)
        current_rs = new_replicaset(d, rss)
        template = (d.get("spec") or {}).get("template") or {}
        plan = Plan(
            action=self.name,
            target=wl.target(self.client),
            summary=f"roll back deployment {name}",
            server_dry_run=True,
            details={
                "current_revision": current_rev,
                "available_revisions": available,
                "before": self.snapshot(d),
            },
            pins={"resourceVersion": rv(d), "fingerprint": fingerprint(d)},
        )
        avail = ",".join(str(r) for r in available) or "none"

        # 1. resolve the revision (kubectl: before the paused check)
        if self.to_revision is None:
            earlier = self.earlier
            if (
                earlier is not None
                and current_rs is not None
                and meta(current_rs).get("name") == earlier.target_rs
            ):
                plan.noop = (
                    f"already at target: deployment {name} runs the template of ReplicaSet "
                    f"{earlier.target_rs} (now revision {current_rev}), which the rollback to "
                    f"revision {earlier.revision} at {earlier.ts} restored ({earlier.outcome}); "
                    "rolling back again would roll forward"
                )
                plan.details["earlier_rollback"] = {
                    "target_rs": earlier.target_rs,
                    "revision": earlier.revision,
                    "ts": earlier.ts,
                    "outcome": earlier.outcome,
                }
                return plan
            history = annotations_of(current_rs).get(REVISION_HISTORY) if current_rs else None
            if history and len(available) >= 2:
                plan.blocked = (
                    f"revision {current_rev} of deployment {name} is revision "
                    f"{history.split(',')[-1]} restored (a rollback or a re-applied template): "
                    f"the previous revision {available[-2]} is what it replaced, so rolling back "
                    "to it would roll forward"
                )
                plan.blocked_hint = (
                    f"name the revision to restore with --to-revision N (available: {avail})"
                )
                return plan
            if len(available) < 2:
                plan.blocked = f'no rollout history found for deployment "{name}"'
                plan.blocked_hint = "there is no earlier revision to roll back to"
                return plan
            target_rev = available[-2]
        else:
            target_rev = self.to_revision
            if target_rev not in by_rev:
                plan.blocked = f"unable to find revision {target_rev} (available: {avail})"
                plan.blocked_hint = "nothing was changed; pick one of the available revisions"
                return plan
        target_rs = by_rev[target_rev]
        rs_name = str(meta(target_rs).get("name"))
        rs_template = (target_rs.get("spec") or {}).get("template") or {}
        plan.summary = (
            f"roll back deployment {name} from revision {current_rev} to revision {target_rev}"
        )
        plan.consent = f"roll back deployment {name} to revision {target_rev}"
        plan.details.update(
            {
                "target_revision": target_rev,
                "target_replicaset": rs_name,
                "target_images": images(rs_template),
                "target_change_cause": annotations_of(target_rs).get(CHANGE_CAUSE),
                "current_change_cause": annotations_of(current_rs).get(CHANGE_CAUSE)
                if current_rs
                else None,
            }
        )
        plan.pins.update(
            {
                "target_revision": target_rev,
                "target_rs": rs_name,
                "target_rs_uid": meta(target_rs).get("uid"),
            }
        )

        # 2. paused (kubectl refuses before comparing)
        if (d.get("spec") or {}).get("paused"):
            plan.blocked = (
                f"deployment {name} is paused; run resume first (kubectl: you cannot rollback a "
                "paused deployment; resume it first with 'kubectl rollout resume' and try again)"
            )
            plan.blocked_hint = (
                f"kubectl rollout resume deployment/{name} -n {self.client.namespace}"
            )
            return plan

        # 3. already there: kubectl's "skipped rollback"
        if equal_ignore_hash(rs_template, template):
            plan.noop = (
                f"already at target: the current template already matches revision {target_rev} "
                f"(kubectl: deployment.apps/{name} skipped rollback)"
            )
            return plan

        # 4. the patch kubectl would send, with somactl's change-cause
        restored = without_hash(rs_template)
        restored_annotations: dict[str, str] = {}
        dep_ann = annotations_of(d)
        for k in ROLLBACK_SKIP_ANNOTATIONS:
            if k in dep_ann:
                restored_annotations[k] = dep_ann[k]
        for k, v in annotations_of(target_rs).items():
            if k not in ROLLBACK_SKIP_ANNOTATIONS:
                restored_annotations[k] = v
        cause = self.actor.change_cause(f"rollback to revision {target_rev}")
        restored_annotations[CHANGE_CAUSE] = cause
        new_rev = max(available) + 1 if available else target_rev
        diff_lines, diff = template_diff(template, rs_template)
        after = [r for r in available if r != target_rev] + [new_rev]
        history_after = ", ".join(str(r) for r in after)
        plan.details.update(
            {
                "diff": diff,
                "renumbering": {
                    "from": target_rev,
                    "to": new_rev,
                    "history_after": after,
                },
                "change_cause": cause,
                "_template": restored,
                "_annotations": restored_annotations,
            }
        )
        current_label = (
            f"revision {current_rev} ({meta(current_rs).get('name')})"
            if current_rs
            else f"revision {current_rev}"
        )
        plan.display = [
            f"current: {current_label}: "
            + (plan.details["current_change_cause"] or "<no change-cause>"),
            f"target:  revision {target_rev} ({rs_name}): "
            + (plan.details["target_change_cause"] or "<no change-cause>"),
            "pod template diff (current → target):",
            *[f"  {line}" for line in diff_lines or ["(no differences in images/env/resources)"]],
            f"revision renumbering: revision {target_rev} comes back as revision {new_rev} "
            f"(history after: {history_after})",
        ]
        plan.steps = [
            f"re-read deployment {name}; stop (exit 5) if it changed since this plan (rv {rv(d)})",
            f"PATCH deployment {name} (json-patch, like kubectl rollout undo --to-revision="
            f"{target_rev}): spec.template := revision {target_rev}'s template, annotations "
            f"restored, {CHANGE_CAUSE}={cause!r}",
            f"the controller renumbers ReplicaSet {rs_name} to revision {new_rev}",
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        name = self.workload.name
        target_rev = int(plan.pins["target_revision"])
        template: JSON = plan.details["_template"]
        ann: dict[str, str] = plan.details["_annotations"]
        lost = False
        conflicts = 0
        attempts = 0
        while True:
            try:
                d = self.workload.get(self.client)
            except UnreachableError as exc:
                if not lost:
                    raise
                return self._unknown(plan, exc.message, attempts)
            current = (d.get("spec") or {}).get("template") or {}
            if equal_ignore_hash(current, template):
                if lost:
                    return Outcome(
                        "applied",
                        f"deployment.apps/{name} rolled back to revision {target_rev} (the answer "
                        "was lost; a re-read confirms the template)",
                        {"response_lost": True, "attempts": attempts, "revision": target_rev},
                    )
                return Outcome(
                    "noop",
                    f"already at target: deployment {name} already runs revision {target_rev}'s "
                    "template",
                    {"attempts": attempts},
                )
            if fingerprint(d) != plan.pins["fingerprint"]:
                raise self.changed(plan, d)
            patch: list[dict[str, Any]] = [
                # optimistic concurrency: the write only lands on the object this re-read saw
                {"op": "replace", "path": "/metadata/resourceVersion", "value": rv(d)},
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "add", "path": "/metadata/annotations", "value": ann},
            ]
            attempts += 1
            try:
                result = self.write(
                    "PATCH", self.workload.path(self.client), patch, content_type=JSON_PATCH
                )
            except ConflictError:
                conflicts += 1
                if conflicts >= MAX_CONFLICT_RETRIES:
                    raise PreconditionError(
                        f"deployment {name} kept changing while somactl wrote to it "
                        f"({conflicts} conflicts); re-run to re-plan"
                    ) from None
                continue
            except UnreachableError as exc:
                if lost:
                    return self._unknown(plan, exc.message, attempts)
                lost = True  # maybe applied: the re-read at the top decides
                continue
            details = {
                "revision": target_rev,
                "attempts": attempts,
                "resourceVersion": rv(result) if isinstance(result, dict) else None,
            }
            if self.server_dry_run:
                details["server_dry_run"] = True
                return Outcome(
                    "applied",
                    f"deployment.apps/{name} rolled back to revision {target_rev} (server dry "
                    "run: validated by the API server, not persisted)",
                    details,
                )
            if lost:
                details["response_lost"] = True
            return Outcome(
                "applied", f"deployment.apps/{name} rolled back to revision {target_rev}", details
            )

    def _unknown(self, plan: Plan, why: str, attempts: int) -> Outcome:
        rev = plan.pins["target_revision"]
        return Outcome(
            "unknown",
            f"the rollback of deployment {self.workload.name} to revision {rev} was sent but no "
            f"answer came back ({why})",
            {"attempts": attempts, "revision": rev},
            code=6,
            hint=(
                "re-run the same command when the API server answers: it resolves to the same "
                f"explicit revision ({rev}), so a retry can never roll forward"
            ),
        )


__all__ = ["EarlierRollback", "RollbackAction"]
