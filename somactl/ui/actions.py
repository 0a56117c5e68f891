"""The one executor of mutations: plan -> show -> (refuse | nothing to do | dry run) -> consent ->
journal intent -> apply with preconditions -> journal result -> verify -> report.

- The plan goes to stdout (a table for people; for -o json|yaml one envelope at the end that
  carries the plan, the outcome and the verification).
- A blocked plan exits 5, a plan with nothing to do exits 0 (and is journaled as such).
- `--dry-run` stops after the plan; `--dry-run=server` sends the writes with dryRun=All (no
  consent needed: nothing is persisted) and labels the result "(server dry run)".
- Consent comes only from a terminal (`somactl.ui.consent`); a refusal is journaled (aborted).
- The journal must be writable before the person is asked (exit 8 otherwise); the intent is
  fsync'd before the first write; the result follows.
- Each phase gets its own deadline: a person may take a minute to type the name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from somactl.actions.base import Outcome, Plan, Verification
from somactl.core.deadline import Deadline
from somactl.core.errors import NotConfirmedError, PreconditionError, SomactlError, UsageError
from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.core.redact import redact
from somactl.core.result import Result
from somactl.ops.mitigate import Prepared
from somactl.ui.consent import require_consent
from somactl.ui.output import dumps_json, dumps_yaml, say, warn, write_stdout

JOURNAL_OUTCOME = {"applied": "ok", "noop": "ok", "partial": "failed", "failed": "failed"}
DEFAULT_CODES = {
    "partial": ExitCode.PARTIAL,
    "failed": ExitCode.FAILED,
    "unknown": ExitCode.UNREACHABLE,
}


class Ask(Protocol):
    """How consent is asked: `require_consent`'s signature (a runbook run adds skip/stop)."""

    def __call__(
        self, opts: GlobalOptions, *, yes: bool, what: str, typed_name: str | None = None
    ) -> str: ...


class _Run:
    def __init__(
        self,
        opts: GlobalOptions,
        prepared: Prepared,
        dry_run: str | None,
        *,
        ask: Ask | None = None,
        embedded: bool = False,
    ) -> None:
        self.opts = opts
        self.prepared = prepared
        self.dry_run = dry_run
        self.data: dict[str, Any] = {"dry_run": dry_run}
        self.plan: Plan | None = None
        self.ask: Ask = ask or require_consent
        # embedded: part of a bigger command (`runbook run`), which prints the envelope and
        # the errors itself; the run's end is kept in status/code/error/errors instead
        self.embedded = embedded
        self.status = ""
        self.code = 0
        self.error: SomactlError | None = None
        self.errors: list[dict[str, Any]] = []

    # --- output ------------------------------------------------------------------------------

    @property
    def command(self) -> str:
        return f"mitigate {self.prepared.kind.split('.', 1)[1]}"

    def envelope(self, status: str, code: int, errors: list[dict[str, Any]] | None = None) -> None:
        self.status, self.code, self.errors = status, code, errors or []
        if self.embedded:
            return
        result = Result(self.command, self.data, ExitCode(code), status, errors or [])
        env = result.envelope()
        write_stdout(dumps_json(env) if self.opts.output.value == "json" else dumps_yaml(env))

    def fail(self, exc: SomactlError, status: str = "error") -> int:
        """End with `exc`: in table mode the app's handler prints it; machine output gets one
        envelope that still carries the plan. Embedded: kept for the caller to report."""
        self.status, self.code, self.error = status, int(exc.code), exc
        if self.embedded:
            return int(exc.code)
        if not self.opts.machine_output:
            raise exc
        self.envelope(
            status,
            int(exc.code),
            [
                {
                    "message": redact(exc.message),
                    "hint": redact(exc.hint),
                    "exit_code": int(exc.code),
                }
            ],
        )
        say(f"error: {exc.message}")
        if exc.hint:
            say(f"hint: {exc.hint}")
        return int(exc.code)

    def finish(self, status: str, code: int = 0, lines: list[str] | None = None) -> int:
        self.status, self.code = status, code
        if self.opts.machine_output:
            self.envelope(status, code)
        elif lines:
            write_stdout("\n".join(redact(line) for line in lines))
        return code

    # --- the flow ----------------------------------------------------------------------------

    def run(self, yes: bool) -> int:
        p = self.prepared
        action = p.action
        plan = action.plan()
        self.plan = plan
        typed = plan.typed_name or p.typed_name
        self.data.update({"action": plan.action, "plan": plan.to_json()})
        self.data["plan"]["needs_typed_name"] = typed is not None
        if not self.opts.machine_output:
            write_stdout("\n".join(render_plan(plan, typed, self.dry_run)))
        if plan.blocked:
            return self.fail(
                PreconditionError(
                    f"refused: {plan.blocked}",
                    plan.blocked_hint or "nothing was changed",
                ),
                status="refused",
            )
        if plan.noop:
            self.journal_noop(plan)
            return self.finish("noop", 0, [f"nothing to do: {plan.noop}"])
        if self.dry_run == "client":
            return self.finish(
                "dry-run", 0, ["dry run: nothing was changed (re-run without --dry-run to act)"]
            )
        if self.dry_run == "server":
            if not plan.server_dry_run:
                return self.fail(UsageError("this action has no server-side dry run"))
            p.set_deadline(Deadline(self.opts.timeout))
            outcome = action.apply(plan)
            self.data["outcome"] = outcome.to_json()
            return self.finish(
                "server-dry-run",
                0,
                [f"(server dry run) {outcome.message}", "nothing was persisted"],
            )
        try:
            p.journal.check_writable()
            how = self.consent(plan, typed, yes)
        except SomactlError as exc:
            return self.fail(
                exc, status="not-confirmed" if isinstance(exc, NotConfirmedError) else "error"
            )
        self.data["consent"] = how
        p.measure_before()
        if p.before_metrics:
            self.data["metrics_before"] = p.before_metrics
        p.set_deadline(Deadline(self.opts.timeout + p.apply_extra_seconds))
        record = {**plan.to_json(), "consent": how}
        try:
            with p.journal.action(p.kind, plan.target, record, service=p.service) as rec:
                self.data["audit"] = {"event_id": rec.event_id, "journal": str(p.journal.path)}
                outcome = action.apply(plan)
                details = {"status": outcome.status, "message": outcome.message, **outcome.details}
                if outcome.status == "unknown":
                    rec.result("unknown", details)
                else:
                    rec.result(JOURNAL_OUTCOME[outcome.status], details)  # type: ignore[arg-type]
        except SomactlError as exc:
            return self.fail(exc)
        if rec.journal_error:
            warn(f"the result could not be journaled: {rec.journal_error}")
        if rec.incident:
            self.data["incident"] = rec.incident
        self.data["outcome"] = outcome.to_json()
        return self.report(plan, outcome)

    def consent(self, plan: Plan, typed: str | None, yes: bool) -> str:
        try:
            return self.ask(self.opts, yes=yes, what=plan.consent or plan.summary, typed_name=typed)
        except NotConfirmedError as exc:
            self.journal_aborted(plan, exc.message)
            raise
        except KeyboardInterrupt:
            self.journal_aborted(plan, "interrupted")
            raise

    def journal_aborted(self, plan: Plan, reason: str) -> None:
        p = self.prepared
        try:
            p.journal.aborted(
                uuid.uuid4().hex,
                reason,
                kind=p.kind,
                target=plan.target,
                details={"summary": plan.summary, "stage": "consent"},
            )
        except SomactlError as exc:
            warn(f"the refusal could not be journaled: {exc.message}")

    def journal_noop(self, plan: Plan) -> None:
        p = self.prepared
        try:
            with p.journal.action(p.kind, plan.target, plan.to_json(), timeline=False) as rec:
                rec.result("ok", {"status": "noop", "message": plan.noop})
        except SomactlError as exc:
            warn(f"could not journal the no-op: {exc.message}")

    def report(self, plan: Plan, outcome: Outcome) -> int:
        p = self.prepared
        lines = render_outcome(outcome)
        verification: Verification | None = None
        if p.verify_seconds > 0 and outcome.status in ("applied", "partial"):
            p.set_deadline(Deadline(p.verify_seconds))
            if not self.opts.machine_output:
                say(f"verifying (up to {p.verify_seconds:g}s)...")
            try:
                verification = p.verify(plan, outcome)
            except SomactlError as exc:
                verification = Verification(None, f"could not verify: {exc.message}")
            if verification is not None:
                self.data["verification"] = verification.to_json()
                lines += render_verification(verification)
        code = 0
        if outcome.status in DEFAULT_CODES:
            code = int(outcome.code if outcome.code is not None else DEFAULT_CODES[outcome.status])
        if code:
            errors = [
                {
                    "message": redact(outcome.message),
                    "hint": redact(outcome.hint or ""),
                    "exit_code": code,
                }
            ]
            self.status, self.code, self.errors = outcome.status, code, errors
            if self.opts.machine_output:
                self.envelope(outcome.status, code, errors)
            else:
                write_stdout("\n".join(redact(line) for line in lines))
                say(f"error: {outcome.message}")
                if outcome.hint:
                    say(f"hint: {outcome.hint}")
            return code
        return self.finish(outcome.status, 0, lines)


def execute(opts: GlobalOptions, prepared: Prepared, *, yes: bool, dry_run: str | None) -> int:
    """Run one prepared mitigation end to end; return the exit code."""
    return _Run(opts, prepared, dry_run).run(yes)


@dataclass
class Executed:
    """How an embedded run of the executor ended (see `execute_embedded`)."""

    code: int
    status: str  # applied / noop / partial / failed / unknown / refused / not-confirmed / error
    data: dict[str, Any] = field(default_factory=dict)  # plan, consent, audit, outcome, ...
    error: SomactlError | None = None  # what ended it early (refused plan, no consent, ...)
    errors: list[dict[str, Any]] = field(default_factory=list)


def execute_embedded(
    opts: GlobalOptions, prepared: Prepared, *, yes: bool, ask: Ask | None = None
) -> Executed:
    """The same flow as `execute` (plan shown on a terminal, consent, journal, apply, verify)
    inside a bigger command: no envelope of its own and no raised error; `ask` replaces
    `require_consent` (it must keep its rules: terminal only, --yes, typed name)."""
    run = _Run(opts, prepared, None, ask=ask, embedded=True)
    code = run.run(yes)
    return Executed(code, run.status, run.data, run.error, run.errors)


# --- rendering (pure) ----------------------------------------------------------------------------


def render_plan(plan: Plan, typed: str | None, dry_run: str | None) -> list[str]:
    head = "PLAN" + (
        " (dry run)" if dry_run == "client" else " (server dry run)" if dry_run == "server" else ""
    )
    lines = [f"{head}: {plan.summary}", f"  target: {plan.target}"]
    lines += [f"  {line}" for line in plan.display]
    if plan.steps and not (plan.noop or plan.blocked):
        lines.append("  steps:")
        lines += [f"    {i}. {step}" for i, step in enumerate(plan.steps, 1)]
    lines += [f"  warning: {w}" for w in plan.warnings]
    if not (plan.noop or plan.blocked or dry_run):
        lines.append(f"  consent: type the name '{typed}'" if typed else "  consent: type 'yes'")
    return lines


def render_outcome(outcome: Outcome) -> list[str]:
    lines = [f"{outcome.status.upper()}: {outcome.message}"]
    for t in outcome.details.get("targets") or []:
        if isinstance(t, dict) and "result" in t:
            lines.append(f"  pid {t.get('pid')} ({t.get('user')}): {t['result']}")
    return lines


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "-"
    return "-" if v is None else str(v)


def render_verification(v: Verification) -> list[str]:
    word = {True: "RECOVERED", False: "NOT RECOVERED", None: "UNVERIFIED"}[v.recovered]
    if v.contained:
        word = "CONTAINED"
    lines = [f"{word}: {v.message}"]
    if v.remains:
        lines.append(f"  still there: {v.remains}")
    for key in dict.fromkeys([*v.before, *v.after]):
        if key == "error":
            continue
        lines.append(f"  {key}: {_value(v.before.get(key))} → {_value(v.after.get(key))}")
    if v.next_step:
        lines.append(f"next step: {v.next_step}")
    return lines
