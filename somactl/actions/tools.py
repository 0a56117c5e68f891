"""`mitigate circuit-breaker enable|disable TOOL`: open (or close) a tool adapter's breaker on
the tools API. The call is idempotent, so it is retried on 429/503 honouring Retry-After within
the deadline (at most 3 attempts); afterwards the state is read again and reported."""

from __future__ import annotations

from typing import Any

from somactl.actions.base import Outcome, Plan, Verification
from somactl.clients.tools import ToolsClient, check_tool_name
from somactl.core.deadline import Deadline
from somactl.core.errors import SomactlError


def _is_open(state: dict[str, Any]) -> bool:
    return str(state.get("state", "")).lower() == "open"


class CircuitBreakerAction:
    name = "circuit-breaker"

    def __init__(self, base_url: str, tool: str, *, enable: bool, deadline: Deadline) -> None:
        self.tool = check_tool_name(tool)
        self.enable = enable
        self.client = ToolsClient(base_url, deadline)

    def set_deadline(self, deadline: Deadline) -> None:
        self.client.deadline = deadline

    @property
    def verb(self) -> str:
        return "enable" if self.enable else "disable"

    def plan(self) -> Plan:
        state = self.client.breaker(self.tool)
        want = "open" if self.enable else "closed"
        plan = Plan(
            action=self.name,
            target=f"tool adapter {self.tool} ({self.client.base})",
            summary=f"{self.verb} the circuit breaker of {self.tool}: "
            f"{state.get('state')} → {want}",
            consent=f"{self.verb} the circuit breaker of {self.tool}",
            details={"before": state, "want": want},
            pins={"state": state.get("state")},
        )
        if _is_open(state) == self.enable:
            plan.noop = f"the circuit breaker of {self.tool} is already {want}"
            return plan
        plan.display = [
            f"breaker: {state.get('state')} since {state.get('since')}"
            + (f" ({state.get('reason')})" if state.get("reason") else ""),
            "open: calls to the adapter fail fast instead of hitting the provider"
            if self.enable
            else "closed: calls go to the provider again",
        ]
        plan.steps = [
            f"POST /tools/{self.tool}/circuit-breaker/{self.verb} (retried on 429/503 honouring "
            "Retry-After, at most 3 attempts)",
            "read the breaker state again and report it",
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        try:
            state, attempts = self.client.set_breaker(self.tool, self.enable)
        except SomactlError as exc:
            after: dict[str, Any] | str
            try:
                after = self.client.breaker(self.tool)
            except SomactlError as again:
                after = f"unreadable ({again.message})"
            now = after.get("state") if isinstance(after, dict) else after
            unchanged = isinstance(after, dict) and after.get("state") == plan.pins["state"]
            return Outcome(
                "failed" if unchanged else "unknown",
                f"{exc.message}; breaker state re-read: {now}"
                + (" (unchanged)" if unchanged else ""),
                {"error": exc.message, "state_after": after},
                code=int(exc.code),
                hint=exc.hint,
            )
        return Outcome(
            "applied",
            f"circuit breaker of {self.tool} {self.verb}d: {state.get('state')}",
            {"state": state, "attempts": attempts},
        )

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        if outcome.status != "applied":
            return None
        state = self.client.breaker(self.tool)
        want = plan.details["want"]
        return Verification(
            str(state.get("state")) == want,
            f"breaker {plan.pins['state']} → {state.get('state')}",
            before={"state": plan.pins["state"]},
            after={"state": state.get("state")},
        )
