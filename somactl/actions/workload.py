"""What every Kubernetes workload action shares: a client with a per-phase deadline, writes that
honour `--dry-run=server` (dryRun=All), precondition re-reads, and following the rollout."""

from __future__ import annotations

import time
from typing import Any

from somactl.actions.base import Actor, Outcome, Plan, Verification
from somactl.actions.kube import (
    FIELD_MANAGER,
    JSON,
    Workload,
    changed_parts,
    fingerprint,
    images,
    ready_text,
    revision,
    rollout_status,
    rv,
)
from somactl.clients.kube import KubeClient
from somactl.core.deadline import Deadline
from somactl.core.errors import PreconditionError, UnreachableError

POLL = 0.5


class KubeAction:
    """Base for rollback, scale, restart, autoscale, isolate: not an action by itself."""

    name = "kube"

    def __init__(
        self,
        client: KubeClient,
        workload: Workload,
        *,
        actor: Actor,
        server_dry_run: bool = False,
    ) -> None:
        self.client = client
        self.workload = workload
        self.actor = actor
        self.server_dry_run = server_dry_run
        self.planned: JSON = {}  # the object as the plan saw it (not shown, not journaled)

    # --- phases -------------------------------------------------------------------------------

    def set_deadline(self, deadline: Deadline) -> None:
        self.client.deadline = deadline

    def write(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        q: dict[str, Any] = {"fieldManager": FIELD_MANAGER, **(query or {})}
        if self.server_dry_run:
            q["dryRun"] = "All"
        return self.client.request(method, path, query=q, body=body, content_type=content_type)

    def reread(self, plan: Plan) -> JSON:
        """The workload now; PreconditionError (exit 5) if what was approved has changed."""
        obj = self.workload.get(self.client)
        if fingerprint(obj) != plan.pins.get("fingerprint"):
            raise self.changed(plan, obj)
        return obj

    def changed(self, plan: Plan, obj: JSON) -> PreconditionError:
        what = ", ".join(changed_parts(self.planned, obj)) if self.planned else "it was modified"
        return PreconditionError(
            f"state changed since plan (rv {plan.pins.get('resourceVersion')}→{rv(obj)}): "
            f"{what}; re-run to re-plan",
            "nothing was changed; another actor edited the object after the plan was shown",
        )

    def snapshot(self, obj: JSON) -> JSON:
        """A short before/after view of the workload."""
        template = (obj.get("spec") or {}).get("template") or {}
        out: JSON = {
            "ready": ready_text(self.workload, obj),
            "images": images(template),
        }
        if self.workload.kind == "deployment":
            out["revision"] = revision(obj)
        return out

    # --- verify: follow the rollout -------------------------------------------------------------

    def follows_rollout(self, plan: Plan, outcome: Outcome) -> bool:
        return outcome.status == "applied" and not self.server_dry_run

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        if not self.follows_rollout(plan, outcome):
            return None
        deadline = self.client.deadline
        before = dict(plan.details.get("before") or {})
        last_msg = ""
        state = "progressing"
        obj: JSON = {}
        try:
            while True:
                obj = self.workload.get(self.client)
                state, last_msg = rollout_status(self.workload, obj)
                if state != "progressing" or deadline.remaining() <= POLL * 2:
                    break
                time.sleep(POLL)
        except UnreachableError as exc:
            return Verification(
                None,
                f"could not follow the rollout: {exc.message}",
                before=before,
            )
        after = self.snapshot(obj)
        after["rollout"] = state
        if state == "done":
            return Verification(True, last_msg, before=before, after=after)
        if state == "failed":
            return Verification(False, last_msg, before=before, after=after)
        return Verification(
            False,
            f"rollout not complete after {deadline.seconds:g}s: {last_msg}",
            before=before,
            after=after,
        )
