"""The plan/apply/verify protocol every mitigation implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from somactl.core.deadline import Deadline

OutcomeStatus = Literal["applied", "noop", "failed", "partial", "unknown"]


@dataclass
class Plan:
    """What an action will do, built from live state; what was approved is what runs."""

    action: str  # "rollback", "scale", "kill-queries", ...
    target: str  # "deployment/gateway-api (somagent-production)"
    summary: str  # one line, e.g. "roll back gateway-api from revision 3 to revision 2"
    steps: list[str] = field(default_factory=list)  # what will happen, in order
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able: diffs, targets
    pins: dict[str, Any] = field(default_factory=dict)  # preconditions: resourceVersion, ...
    warnings: list[str] = field(default_factory=list)
    noop: str | None = None  # set: nothing to do, and why
    blocked: str | None = None  # set: refused (exit 5), and why
    blocked_hint: str | None = None
    typed_name: str | None = None  # high impact: the person types this name to approve
    # Human-readable detail lines (diffs, target lists), built without I/O by the action;
    # the terminal shows them under the summary, JSON carries `details` instead.
    display: list[str] = field(default_factory=list)
    # The consent prompt's words ("roll back deployment web to revision 6"); default: summary.
    consent: str | None = None
    # The action can send its writes with dryRun=All (Kubernetes); others refuse --dry-run=server.
    server_dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "summary": self.summary,
            "steps": self.steps,
            # `_`-prefixed details are working data (templates to send): not shown, not journaled
            "details": {k: v for k, v in self.details.items() if not k.startswith("_")},
            "pins": self.pins,
            "warnings": self.warnings,
            "noop": self.noop,
            "blocked": self.blocked,
            "needs_typed_name": self.typed_name is not None,
        }


@dataclass
class Outcome:
    status: OutcomeStatus
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    # For failed/partial/unknown: the exit code to end with (default 1 / 9 / 6) and a hint.
    code: int | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "details": self.details}


@dataclass
class Verification:
    recovered: bool | None  # None: could not tell
    message: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    next_step: str | None = None
    # recovered, by an action that contains without removing the cause: what is left in place
    remains: str | None = None

    @property
    def contained(self) -> bool:
        return self.recovered is True and self.remains is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "recovered": self.recovered,
            "contained": self.contained,
            "remains": self.remains,
            "message": self.message,
            "before": self.before,
            "after": self.after,
            "next_step": self.next_step,
        }


class Action(Protocol):
    name: str

    def plan(self) -> Plan: ...

    def apply(self, plan: Plan) -> Outcome: ...

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None: ...


class Phased(Protocol):
    """Optional: an action whose clients take a fresh deadline per phase (plan, apply, verify).

    A person may take a minute to consent; the apply phase must not inherit what is left of the
    plan's deadline."""

    def set_deadline(self, deadline: Deadline) -> None: ...


@dataclass(frozen=True)
class Actor:
    """Who acts, and for which open incident: the source of `kubernetes.io/change-cause`."""

    user: str
    incident: str | None = None

    def change_cause(self, what: str) -> str:
        """`somactl: rollback to revision 3 by alice (INC-7)`."""
        text = f"somactl: {what} by {self.user}"
        return f"{text} ({self.incident})" if self.incident else text
