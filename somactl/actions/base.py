"""The plan/apply/verify protocol every mitigation implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "summary": self.summary,
            "steps": self.steps,
            "details": self.details,
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

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "details": self.details}


@dataclass
class Verification:
    recovered: bool | None  # None: could not tell
    message: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    next_step: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "recovered": self.recovered,
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
