"""`somactl runbook run SCENARIO [SERVICE]`: a scenario of runbooks.yaml, walked step by step.

No terminal here (`somactl.ui.runbook_run` asks the person). This module:
- resolves the scenario's steps for a service: what each one runs, as a somactl command;
- runs a check step (the same check functions and targets as `diagnose`, one check at a time,
  each under its own `--timeout`: a person may take minutes between two steps);
- builds an action step's `Prepared` with the very `prepare_*` functions `somactl mitigate`
  uses (so the executor, its consent rules, the audit journal, the change-cause and the
  verification are the same);
- decides when a step does not apply (a rollback when no rollout happened in the last hour;
  an action or check meant for another kind of service);
- records each step's outcome on the open incident's timeline (`runbook_step` events) and the
  runbook followed on the incident (`set_runbook`);
- ends with the service's state (a short diagnosis) and the run's exit code.

Step outcomes: executed, skipped (by the responder, with a reason), failed (with the error),
not-applicable (with why), not-needed (a later mitigation of a service an earlier action's
verification found RECOVERED, not just CONTAINED; `somactl mitigate` still runs it), pending
(a manual step nobody could confirm: no terminal; or, under --yes, a mitigation whose `when:`
somactl cannot check), refused (an action without consent: no terminal and no --yes), stopped
(the responder ended the run there), not-run (after a stop or a refusal).

Exit codes: 9 when a step failed (a check could not run, an action failed or was refused by
its preconditions); else 4 when the run ended early (not confirmed, or stopped); else 0.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from somactl.checks.base import CheckResult, Status, run_checks
from somactl.core.deadline import Deadline
from somactl.core.errors import NotConfirmedError, SomactlError, UsageError
from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.core.redact import redact
from somactl.core.result import Result
from somactl.ops.targets import Targets, load_runbook_for, settings_for_context, targets_for
from somactl.runbook.schema import Runbook, Scenario, Step
from somactl.runbook.templates import render_command

if TYPE_CHECKING:
    from somactl.ops.mitigate import Env, Prepared

OUTCOMES = (
    "executed",
    "skipped",
    "failed",
    "not-applicable",
    "not-needed",
    "pending",
    "refused",
    "stopped",
    "not-run",
)
# `somactl mitigate <verb>` commands a runbook action may name (anything else is a manual step)
MITIGATE_VERBS = frozenset(
    {
        "rollback",
        "scale",
        "restart",
        "redis-restart",
        "redis-flush",
        "kill-queries",
        "circuit-breaker",
        "autoscale",
        "isolate",
        "unisolate",
    }
)
PLACEHOLDER_SERVICE = "SERVICE"


class StepSkipped(NotConfirmedError):
    """The responder skipped this step (the reason goes on the timeline)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"skipped by the responder: {reason}", "the run goes on")
        self.reason = reason


class RunStopped(NotConfirmedError):
    """The responder ended the run at this step."""

    def __init__(self, reason: str = "stopped by the responder") -> None:
        super().__init__(reason, "the remaining steps were not run")
        self.reason = reason


# --- the steps --------------------------------------------------------------------------------


@dataclass
class RunStep:
    n: int
    title: str
    kind: str  # check / action / manual
    checks: tuple[str, ...] = ()
    action: str | None = None
    service: str | None = None  # the service the step is about (an action may name its own)
    params: dict[str, Any] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)  # somactl commands, service filled in
    runbook_command: str | None = None  # the runbook's own kubectl / psql / curl line
    when: str | None = None
    instructions: str | None = None
    notes: list[str] = field(default_factory=list)
    confirm: str | None = None  # an action's consent: yes / typed-name / none
    mutates: bool = False
    verb: str | None = None  # `somactl mitigate <verb>`, or "logs" for preserve-logs
    not_applicable: str | None = None  # known before running (another kind of service)

    @property
    def ref(self) -> str:
        if self.kind == "check":
            return ", ".join(self.checks)
        return self.action or "manual"

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "title": self.title,
            "kind": self.kind,
            "checks": list(self.checks),
            "action": self.action,
            "service": self.service,
            "params": self.params,
            "commands": self.commands,
            "runbook_command": self.runbook_command,
            "when": self.when,
            "instructions": self.instructions,
            "notes": self.notes,
            "confirm": self.confirm,
            "mutates": self.mutates,
        }


def _kind_of(rb: Runbook, service: str | None) -> str | None:
    svc = rb.services.get(service or "")
    return svc.kind if svc is not None else None


def _render(rb: Runbook, template: str, service: str | None, **params: Any) -> str | None:
    """A command template for `service`; without one (`--plan` of a scenario that names no
    service) SERVICE and TOOL stand in."""
    from somactl.runbook.templates import fill

    try:
        if service is not None:
            return render_command(template, rb, service, **params)
        fields = {
            **rb.command_fields(None),
            "service": PLACEHOLDER_SERVICE,
            "tool": "TOOL",
            "workload": PLACEHOLDER_SERVICE,
            **{k: str(v) for k, v in params.items()},
        }
        return fill(template, fields, what="command template")
    except (SomactlError, KeyError, ValueError):
        return None


def _check_commands(rb: Runbook, cid: str, service: str | None) -> str:
    chk = rb.checks[cid]
    target = service if chk.target == "service" else None
    if chk.somactl:
        extra: dict[str, str] = {}
        if target is None and service is not None and "{tool}" in chk.somactl:
            extra["tool"] = service
        cmd = _render(rb, chk.somactl, target or service, **extra)
        if cmd is not None:
            return cmd
    # no somactl command of its own (PromQL, git log): `diagnose` runs it with the rest
    return f"somactl diagnose {service or PLACEHOLDER_SERVICE}"


def _notes(rb: Runbook, step: Step) -> list[str]:
    notes: list[str] = []
    if step.severities:
        notes.append(f"{'/'.join(step.severities)} only")
    if step.contact and step.contact in rb.contacts:
        c = rb.contacts[step.contact]
        notes.append(
            f"{c.role}: {c.primary}" + (f" (secondary: {c.secondary})" if c.secondary else "")
        )
    if step.escalate:
        ext = rb.external(step.escalate)
        notes.append(f"escalate to {ext.who}: {ext.when}")
    if step.reference and step.reference in rb.references:
        ref = rb.references[step.reference]
        notes.append(f"see {ref.title}: {ref.path}")
    if step.who:
        notes.append(f"who: {step.who}")
    return notes


def _expand(rb: Runbook, steps: Sequence[Step]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        if step.pattern is not None and step.pattern in rb.mitigation_patterns:
            out.extend(_expand(rb, rb.mitigation_patterns[step.pattern].steps))
        else:
            out.append(step)
    return out


def resolve_steps(rb: Runbook, scenario: Scenario, service: str | None) -> list[RunStep]:
    """The scenario's steps for `service` (None: `--plan` with a SERVICE placeholder)."""
    kind = _kind_of(rb, service)
    out: list[RunStep] = []
    for n, step in enumerate(_expand(rb, scenario.steps), 1):
        base = {
            "n": n,
            "title": step.title,
            "when": step.when,
            "instructions": step.instructions,
            "notes": _notes(rb, step),
        }
        if step.kind == "check":
            ids = tuple(i for i in ([step.check] if step.check else list(step.checks)) if i)
            na = None
            for cid in ids:
                chk = rb.checks[cid]
                if kind is not None and chk.applies_to and kind not in chk.applies_to:
                    na = f"{cid} applies to {', '.join(chk.applies_to)}; {service} is a {kind}"
            out.append(
                RunStep(
                    kind="check",
                    checks=ids,
                    service=service,
                    commands=list(dict.fromkeys(_check_commands(rb, c, service) for c in ids)),
                    runbook_command=next(
                        (rb.checks[c].command or rb.checks[c].sql for c in ids if c), None
                    ),
                    not_applicable=na,
                    **base,  # type: ignore[arg-type]
                )
            )
            continue
        if step.kind == "action" and step.action is not None:
            act = rb.action(step.action)
            target = act.service or service
            params = {**act.params, **step.params}
            words = (act.somactl or "").split()
            verb = None
            if (
                words[:2] == ["somactl", "mitigate"]
                and len(words) > 2
                and words[2] in MITIGATE_VERBS
            ):
                verb = words[2]
            elif words[:2] == ["somactl", "logs"] and not act.mutates:
                verb = "logs"
            runbook_cmd = act.command or act.sql
            if verb is None:
                # nothing somactl can do itself: a manual step with the runbook's own command
                text = step.instructions or (f"Run: {runbook_cmd}" if runbook_cmd else None)
                out.append(
                    RunStep(
                        kind="manual",
                        action=step.action,
                        service=target,
                        runbook_command=runbook_cmd,
                        **{**base, "instructions": text},  # type: ignore[arg-type]
                    )
                )
                continue
            tkind = _kind_of(rb, target)
            na = None
            if tkind is not None and act.applies_to and tkind not in act.applies_to:
                na = f"{step.action} applies to {', '.join(act.applies_to)}; {target} is a {tkind}"
            cmd = _render(rb, act.somactl or "", target, **params)
            out.append(
                RunStep(
                    kind="action",
                    action=step.action,
                    service=target,
                    params=params,
                    commands=[cmd] if cmd else [],
                    runbook_command=runbook_cmd,
                    confirm=act.confirm,
                    mutates=act.mutates,
                    verb=verb,
                    not_applicable=na,
                    **base,  # type: ignore[arg-type]
                )
            )
            continue
        out.append(RunStep(kind="manual", service=service, **base))  # type: ignore[arg-type]
    return out


def required_service(rb: Runbook, scenario_id: str, scenario: Scenario) -> UsageError:
    """The usage error for a scenario that names no service, run without one."""
    kinds: set[str] | None = None
    for step in _expand(rb, scenario.steps):
        if step.action is None:
            continue
        act = rb.actions.get(step.action)
        if act is None or act.service is not None or not act.applies_to:
            continue
        kinds = set(act.applies_to) if kinds is None else kinds & set(act.applies_to)
    names = [n for n, s in rb.services.items() if kinds is None or s.kind in kinds]
    return UsageError(
        f"scenario {scenario_id} is not tied to a service: name one",
        f"e.g. somactl runbook run {scenario_id} {names[0] if names else 'SERVICE'} "
        f"(services: {', '.join(names)})",
    )


def parse_skips(values: Sequence[str], steps: Sequence[RunStep]) -> dict[int, str]:
    """`--skip STEP[=REASON]`: STEP is a step number or its check/action id."""
    out: dict[int, str] = {}
    for value in values:
        key, _, reason = value.partition("=")
        key = key.strip()
        reason = reason.strip() or "skipped with --skip"
        matched = [
            s.n for s in steps if key == str(s.n) or (key and (key == s.action or key in s.checks))
        ]
        if not matched:
            raise UsageError(
                f"--skip {key!r}: no such step",
                "steps: "
                + ", ".join(f"{s.n} ({s.ref})" for s in steps)
                + "; e.g. --skip 4='no deploy today'",
            )
        for n in matched:
            out[n] = reason
    return out


def plan(opts: GlobalOptions, scenario_id: str, service: str | None) -> Result:
    """`--plan`: the steps as somactl commands, nothing run (exit 0)."""
    rb = load_runbook_for(opts)
    sc = rb.scenario(scenario_id)
    svc = service or sc.service
    if svc is not None:
        rb.service(svc)
    steps = resolve_steps(rb, sc, svc)
    return Result(
        "runbook run",
        {
            "scenario": scenario_id,
            "title": sc.title,
            "severity": sc.severity,
            "service": svc,
            "plan": True,
            "steps": [s.to_json() for s in steps],
        },
    )


def plan_lines(data: Mapping[str, Any]) -> list[str]:
    """`--plan` as a shell-readable page: commands, with titles and manual steps as comments."""
    svc = data["service"] or PLACEHOLDER_SERVICE
    lines = [
        f"# runbook {data['scenario']}: {data['title']} (typically {data['severity']}), "
        f"for {svc}: {len(data['steps'])} steps"
    ]
    for s in data["steps"]:
        head = f"# {s['n']}. {s['title']}"
        if s["kind"] == "manual":
            head += " (manual)"
        if s["when"]:
            head += f" (only when {s['when']})"
        if s["kind"] == "action" and s["confirm"] == "typed-name":
            head += " (high impact: type the name)"
        lines.append(head)
        if s["kind"] == "manual":
            for text in [s["instructions"], *s["notes"]]:
                if text:
                    lines.append(f"#    {text}")
            continue
        lines.extend(s["commands"])
        if s["instructions"]:
            lines.append(f"#    {s['instructions']}")
    return lines


# --- a run ------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    step: RunStep
    outcome: str
    reason: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    action: dict[str, Any] | None = None  # the executor's data: plan, consent, audit, outcome
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.step.to_json(),
            "outcome": self.outcome,
            "reason": self.reason,
            "findings": self.findings,
            "error": self.error,
            "exit_code": self.exit_code,
            "action_result": self.action,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        """One line for the table and the timeline."""
        if self.outcome == "executed" and self.findings:
            return "; ".join(f"{f['status']}: {f['summary']}" for f in self.findings)
        return self.reason or self.error or ""


@dataclass
class RunContext:
    opts: GlobalOptions
    runbook: Runbook
    scenario_id: str
    scenario: Scenario
    service: str
    steps: list[RunStep]
    skips: dict[int, str]
    targets: Targets
    incident: str | None
    run_id: str
    verify_seconds: float
    results: list[CheckResult] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    timeline_errors: list[str] = field(default_factory=list)
    _env: Env | None = None

    @property
    def state_dir(self) -> str:
        return self.targets.state_dir

    def env(self) -> Env:
        from somactl.ops.mitigate import Env

        if self._env is None:
            self._env = Env(
                self.opts,
                settings_for_context(self.opts),
                self.runbook,
                dry_run=None,
                verify_seconds=self.verify_seconds,
            )
        return self._env


def start(
    opts: GlobalOptions,
    scenario_id: str,
    service: str | None,
    *,
    skips: Sequence[str] = (),
    verify_seconds: float = 120.0,
) -> RunContext:
    """Validate (exit 2 before any network call), find the open incident, note the runbook."""
    rb = load_runbook_for(opts)
    sc = rb.scenario(scenario_id)
    svc = service or sc.service
    if svc is None:
        raise required_service(rb, scenario_id, sc)
    rb.service(svc)
    steps = resolve_steps(rb, sc, svc)
    skip_map = parse_skips(skips, steps)
    targets = targets_for(settings_for_context(opts))
    incident = _open_incident(targets.state_dir, svc)
    ctx = RunContext(
        opts=opts,
        runbook=rb,
        scenario_id=scenario_id,
        scenario=sc,
        service=svc,
        steps=steps,
        skips=skip_map,
        targets=targets,
        incident=incident,
        run_id=uuid.uuid4().hex[:12],
        verify_seconds=verify_seconds,
    )
    if incident is not None:
        _set_runbook(ctx)
    return ctx


def _open_incident(state_dir: str, service: str) -> str | None:
    if not state_dir:
        return None
    from somactl.incident.store import find_open_incident

    try:
        return find_open_incident(state_dir, service=service)
    except OSError:
        return None


def _set_runbook(ctx: RunContext) -> None:
    import sqlite3

    from somactl.incident.store import IncidentStore, parse_incident_ref

    assert ctx.incident is not None  # noqa: S101 - only called with an incident
    try:
        with IncidentStore(ctx.state_dir, create=False) as store:
            num = parse_incident_ref(ctx.incident)
            store.set_runbook(num, ctx.scenario_id)
            store.append(
                num,
                "note",
                f"Following runbook {ctx.scenario.title} ({ctx.scenario_id}) for {ctx.service}: "
                f"{len(ctx.steps)} steps",
                {
                    "runbook_run": {
                        "run": ctx.run_id,
                        "scenario": ctx.scenario_id,
                        "title": ctx.scenario.title,
                        "service": ctx.service,
                        "steps": len(ctx.steps),
                        "event": "started",
                    }
                },
            )
    except (SomactlError, OSError, sqlite3.Error, ValueError) as exc:
        ctx.timeline_errors.append(redact(str(exc)))


def record(ctx: RunContext, rec: StepRecord) -> StepRecord:
    """Keep the step's outcome and put it on the open incident's timeline."""
    ctx.records.append(rec)
    if ctx.incident is None:
        return rec
    import sqlite3

    from somactl.incident.store import record_on_open_incident

    step = rec.step
    text = rec.summary()
    summary = (
        f"Runbook {ctx.scenario_id} step {step.n}/{len(ctx.steps)} ({step.title}): {rec.outcome}"
        + (f" - {text}" if text else "")
    )
    audit = (rec.action or {}).get("audit") or {}
    details = {
        "runbook_step": {
            "run": ctx.run_id,
            "scenario": ctx.scenario_id,
            "title": ctx.scenario.title,
            "service": ctx.service,
            "step": step.n,
            "of": len(ctx.steps),
            "step_title": step.title,
            "kind": step.kind,
            "ref": step.ref,
            "command": step.commands[0] if step.commands else None,
            "outcome": rec.outcome,
            "reason": rec.reason,
            "error": rec.error,
            "findings": [{k: f[k] for k in ("id", "status", "summary")} for f in rec.findings],
            "audit_event": audit.get("event_id"),
        }
    }
    try:
        record_on_open_incident(
            ctx.state_dir, "runbook_step", summary, details, incident=ctx.incident
        )
    except (SomactlError, OSError, sqlite3.Error, ValueError) as exc:
        ctx.timeline_errors.append(redact(str(exc)))
    return rec


# --- checks -----------------------------------------------------------------------------------


@dataclass
class _Picked:
    checks: list[Any]  # somactl.checks.base.Check
    close: Callable[[], None] = lambda: None
    why: str | None = None  # when there is no such check for the service


def _check_for(ctx: RunContext, cid: str, deadline: Deadline) -> _Picked:
    """The check `cid` about the run's service, from the same plan `diagnose` builds."""
    from somactl.checks.base import Check
    from somactl.ops.plan import build_plan

    rb, svc, t = ctx.runbook, ctx.service, ctx.targets
    own_health = cid == "tools.health" or (cid == "tools.rate-limit" and svc != "github")
    if _kind_of(rb, svc) == "tool-adapter" and own_health and t.tools:
        # this adapter's own health (and the rate limit it reports), as `tools health X` does
        from somactl.checks import tools

        url, known = t.tools, set(rb.services)
        title = "Tool adapter health" if cid == "tools.health" else f"{svc} rate limit"
        return _Picked(
            [
                Check(
                    cid,
                    title,
                    "tools-api",
                    lambda d: tools.health_check(url, [svc], d, services=known, check_id=cid),
                )
            ]
        )
    built = build_plan(rb, svc, t, deadline)
    checks = [c for c in built.checks if c.id == cid]
    if not checks:
        built.close()
        why = next((n["why"] for n in built.not_run if n.get("check") == cid), None)
        return _Picked([], why=why or f"{cid} is not among {svc}'s checks")
    return _Picked(checks, built.close)


def run_check_step(ctx: RunContext, step: RunStep) -> list[CheckResult]:
    """Each check of the step, under a fresh `--timeout`."""
    out: list[CheckResult] = []
    for cid in step.checks:
        deadline = Deadline(ctx.opts.timeout)
        picked = _check_for(ctx, cid, deadline)
        if not picked.checks:
            chk = ctx.runbook.checks[cid]
            why = picked.why or f"{cid}: not available"
            out.append(
                CheckResult(
                    cid,
                    chk.title,
                    chk.backend,
                    Status.unknown,
                    f"could not run: {why}",
                    error=why,
                    error_code=int(ExitCode.CONFIG),
                )
            )
            continue
        try:
            out.extend(run_checks(picked.checks, deadline))
        finally:
            picked.close()
    ctx.results.extend(out)
    return out


def check_record(step: RunStep, results: Sequence[CheckResult], seconds: float) -> StepRecord:
    findings = [
        {
            "id": r.id,
            "status": str(r.status),
            "summary": redact(r.summary),
            "error": r.error,
            "hint": r.hint,
            "evidence": r.evidence,
        }
        for r in results
    ]
    broken = [r for r in results if r.status is Status.unknown]
    if broken:
        return StepRecord(
            step,
            "failed",
            findings=findings,
            error="; ".join(redact(r.error or r.summary) for r in broken),
            exit_code=broken[0].error_code or int(ExitCode.PARTIAL),
            seconds=seconds,
        )
    return StepRecord(step, "executed", findings=findings, seconds=seconds)


# --- actions ----------------------------------------------------------------------------------


def _facts(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any]]:
    from somactl.ops.verdict import merge_facts, merge_signals

    return merge_facts(ctx.results), merge_signals(ctx.runbook, ctx.results)


def not_applicable(ctx: RunContext, step: RunStep) -> str | None:
    """Why `step` does not apply now (from the runbook, or from what the checks found)."""
    if step.not_applicable:
        return step.not_applicable
    if step.action == "rollback" or step.verb == "rollback":
        facts, _ = _facts(ctx)
        if facts.get("recent_deploy") is False:
            seen = next(
                (r for r in reversed(ctx.results) if r.id.endswith("k8s.rollout-history")), None
            )
            why = f"no rollout of {step.service} in the last hour"
            return why + (f" ({seen.id}: {redact(seen.summary)})" if seen else "")
    return None


def _measured(v: Mapping[str, Any]) -> bool:
    """The verification measured the service's error rate or p95 after the action (a finished
    rollout alone says nothing about errors)."""
    after = v.get("after") or {}
    measured = any(after.get(k) is not None for k in ("error_rate", "p95_seconds"))
    return measured and not after.get("error")


def not_needed(ctx: RunContext, step: RunStep) -> str | None:
    """Why a mitigation is no longer needed: an earlier action of this run on the same service
    was verified to have RECOVERED it, with its error rate or p95 measured healthy afterwards
    (a CONTAINED one does not count: its cause is still there, and the next step may be the
    fix; a rollout that finished without metrics does not either)."""
    if step.kind != "action" or not step.mutates:
        return None
    target = step.service or ctx.service
    for rec in ctx.records:
        if rec.step.kind != "action" or rec.outcome != "executed":
            continue
        v = (rec.action or {}).get("verification") or {}
        svc = rec.step.service or ctx.service
        if v.get("recovered") is True and not v.get("contained") and _measured(v) and svc == target:
            why = f"{svc} recovered after step {rec.step.n} ({rec.step.ref}"
            why += f": {redact(str(v['message']))})" if v.get("message") else ")"
            cmd = step.commands[0] if step.commands else None
            return why + (f"; to run it anyway: {cmd}" if cmd else "")
    return None


def unchecked_condition(ctx: RunContext, step: RunStep) -> str | None:
    """Why `--yes` leaves a mitigation pending: its `when:` ("the cache is corrupted") is
    something somactl cannot check, and --yes approves plans, not conditions. A rollback's
    condition is checked (a rollout in the last hour, from the checks' facts)."""
    if step.kind != "action" or not step.mutates or not step.when:
        return None
    if step.action == "rollback" or step.verb == "rollback":
        facts, _ = _facts(ctx)
        if facts.get("recent_deploy") is True:
            return None
    cmd = step.commands[0] if step.commands else step.ref
    return (
        f"only when {step.when}: somactl cannot check that and --yes does not decide it; "
        f"if it holds, run: {cmd}"
    )


def _kill_queries_args(ctx: RunContext, step: RunStep) -> tuple[dict[str, Any], str]:
    """Aim kill-queries at what the checks found, as `diagnose`'s next step does; the step's
    command shows what is aimed at."""
    from somactl.ops.verdict import _kill_queries

    facts, signals = _facts(ctx)
    params, suffix, _why = _kill_queries(dict(step.params), facts, signals)
    template = ctx.runbook.actions[step.action or ""].somactl or ""
    cmd = _render(ctx.runbook, template, step.service, **params)
    if cmd:
        step.commands = [cmd + suffix]
    return params, "idle-in-transaction" if "idle-in-transaction" in suffix else "active"


def prepare_action(ctx: RunContext, step: RunStep) -> Prepared:
    """The action's `Prepared`, from the same functions `somactl mitigate <verb>` calls."""
    from somactl.core.durations import parse_duration
    from somactl.ops import mitigate as m

    env = ctx.env()
    svc = step.service or ctx.service
    p = step.params
    verb = step.verb
    if verb == "rollback":
        return m.prepare_rollback(env, svc, None)
    if verb == "scale":
        return m.prepare_scale(env, svc, int(p.get("replicas", 5)), False)
    if verb == "restart":
        return m.prepare_restart(env, svc)
    if verb == "redis-restart":
        return m.prepare_redis_restart(env)
    if verb == "redis-flush":
        return m.prepare_redis_flush(env)
    if verb == "kill-queries":
        params, state = _kill_queries_args(ctx, step)
        older = parse_duration(str(params.get("older_than", "5m")), option="--older-than")
        return m.prepare_kill_queries(
            env, older_than=older, database=None, user=None, state=state, limit=None, grace=5.0
        )
    if verb == "circuit-breaker":
        words = (ctx.runbook.actions[step.action or ""].somactl or "").split()
        how = words[3] if len(words) > 3 else "enable"
        return m.prepare_circuit_breaker(env, how, svc)
    if verb == "autoscale":

        def num(key: str) -> int | None:
            return int(p[key]) if key in p else None

        return m.prepare_autoscale(env, svc, num("min"), num("max"), num("cpu_percent"), False)
    if verb == "isolate":
        return m.prepare_isolate(env, svc)
    if verb == "unisolate":
        return m.prepare_unisolate(env, svc)
    raise UsageError(f"step {step.n}: somactl cannot run {step.action} itself")


def run_readonly_action(ctx: RunContext, step: RunStep) -> Result:
    """A non-mutating action (preserve logs): no consent, like a check."""
    from somactl.ops.single import logs

    return logs(
        ctx.opts,
        step.service or ctx.service,
        tail=None,
        pod=None,
        previous=False,
        all_pods=True,
        save=True,
    )


def action_record(step: RunStep, executed: Any, seconds: float) -> StepRecord:
    """A StepRecord from the executor's end (`ui.actions.Executed`)."""
    data = dict(executed.data)
    err = executed.error
    if isinstance(err, StepSkipped):
        return StepRecord(step, "skipped", reason=err.reason, action=data, seconds=seconds)
    if isinstance(err, RunStopped):
        return StepRecord(
            step,
            "stopped",
            reason=err.reason,
            action=data,
            exit_code=int(ExitCode.NOT_CONFIRMED),
            seconds=seconds,
        )
    if isinstance(err, NotConfirmedError):
        return StepRecord(
            step,
            "refused",
            reason=f"not confirmed: {redact(err.message)}",
            action=data,
            exit_code=int(ExitCode.NOT_CONFIRMED),
            seconds=seconds,
        )
    outcome = data.get("outcome") or {}
    if executed.code == 0:
        reason = outcome.get("message")
        if executed.status == "noop":
            reason = "nothing to do: " + str((data.get("plan") or {}).get("noop") or "")
        verification = data.get("verification") or {}
        if verification.get("message"):
            reason = f"{reason}; {verification['message']}" if reason else verification["message"]
        return StepRecord(
            step,
            "executed",
            reason=redact(str(reason)) if reason else None,
            action=data,
            seconds=seconds,
        )
    message = (
        err.message
        if err is not None
        else "; ".join(str(e.get("message")) for e in executed.errors) or executed.status
    )
    return StepRecord(
        step,
        "failed",
        error=redact(message),
        action=data,
        exit_code=int(executed.code),
        seconds=seconds,
    )


def error_record(step: RunStep, exc: SomactlError, seconds: float = 0.0) -> StepRecord:
    """The action could not even be planned (bad setting, unreachable API...)."""
    msg = redact(exc.message) + (f" ({redact(exc.hint)})" if exc.hint else "")
    return StepRecord(step, "failed", error=msg, exit_code=int(exc.code), seconds=seconds)


# --- the end ----------------------------------------------------------------------------------


def final_state(ctx: RunContext) -> dict[str, Any]:
    """A short diagnosis of the service after the steps (on the timeline as a check run)."""
    from somactl.ops.diagnose import DiagnoseRequest, diagnose

    t0 = time.monotonic()
    try:
        res = diagnose(
            ctx.opts,
            DiagnoseRequest(ctx.service, record=ctx.incident is not None),
            deadline=Deadline(ctx.opts.timeout),
        )
    except SomactlError as exc:
        return {
            "status": "unknown",
            "summary": f"could not diagnose {ctx.service}: {redact(exc.message)}",
            "exit_code": int(exc.code),
        }
    verdict = res.data.get("verdict") or {}
    checks = res.data.get("checks") or []
    return {
        "status": verdict.get("status", res.status),
        "summary": verdict.get("summary", ""),
        "exit_code": int(res.exit_code),
        "severity": (verdict.get("severity") or {}).get("level"),
        "checks": {
            s: sum(1 for c in checks if c.get("status") == s)
            for s in ("ok", "warn", "critical", "unknown")
        },
        "seconds": round(time.monotonic() - t0, 3),
    }


def exit_code(records: Sequence[StepRecord]) -> ExitCode:
    if any(r.outcome == "failed" for r in records):
        return ExitCode.PARTIAL
    if any(r.outcome in ("refused", "stopped") for r in records):
        return ExitCode.NOT_CONFIRMED
    return ExitCode.OK


def finish(ctx: RunContext, state: Mapping[str, Any] | None) -> Result:
    code = exit_code(ctx.records)
    counts = {o: sum(1 for r in ctx.records if r.outcome == o) for o in OUTCOMES}
    counts = {k: v for k, v in counts.items() if v}
    status = {
        ExitCode.OK: "ok",
        ExitCode.PARTIAL: "partial",
        ExitCode.NOT_CONFIRMED: "not-confirmed",
    }[code]
    errors = [
        {
            "message": f"step {r.step.n} ({r.step.title}): {r.error or r.reason}",
            "hint": None,
            "exit_code": r.exit_code or int(code),
        }
        for r in ctx.records
        if r.outcome in ("failed", "refused", "stopped")
    ]
    if ctx.incident is not None:
        _note_end(ctx, counts)
    return Result(
        "runbook run",
        {
            "scenario": ctx.scenario_id,
            "title": ctx.scenario.title,
            "severity": ctx.scenario.severity,
            "service": ctx.service,
            "run": ctx.run_id,
            "incident": ctx.incident,
            "steps": [r.to_json() for r in ctx.records],
            "counts": counts,
            "state": dict(state) if state is not None else None,
            "timeline_errors": ctx.timeline_errors,
        },
        exit_code=code,
        status=status,
        errors=errors,
    )


def _note_end(ctx: RunContext, counts: Mapping[str, int]) -> None:
    import sqlite3

    from somactl.incident.store import record_on_open_incident

    text = ", ".join(f"{v} {k}" for k, v in counts.items())
    try:
        record_on_open_incident(
            ctx.state_dir,
            "note",
            f"Runbook {ctx.scenario_id} for {ctx.service} ended: {text}",
            {
                "runbook_run": {
                    "run": ctx.run_id,
                    "scenario": ctx.scenario_id,
                    "service": ctx.service,
                    "event": "ended",
                    "counts": dict(counts),
                }
            },
            incident=ctx.incident,
        )
    except (SomactlError, OSError, sqlite3.Error, ValueError) as exc:
        ctx.timeline_errors.append(redact(str(exc)))


def list_scenarios(opts: GlobalOptions) -> Result:
    """`runbook list`: each scenario with its step count and the signals that suggest it."""
    rb = load_runbook_for(opts)
    rows = []
    for sid, sc in rb.scenarios.items():
        steps = _expand(rb, sc.steps)
        kinds = [s.kind for s in steps]
        rows.append(
            {
                "id": sid,
                "title": sc.title,
                "severity": sc.severity,
                "service": sc.service,
                "steps": len(steps),
                "checks": kinds.count("check"),
                "actions": kinds.count("action"),
                "manual": len(steps) - kinds.count("check") - kinds.count("action"),
                "signals": list(dict.fromkeys(sc.match.signals())) if sc.match else [],
                "match": sc.match.describe() if sc.match else None,
            }
        )
    return Result("runbook list", rows)
