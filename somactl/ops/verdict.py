"""From check results to a verdict: the worst finding, the runbook's severity with its response
target, the matching scenario, and next steps as concrete somactl commands.

Exit codes (ARCHITECTURE.md): 11 when a check found something critical, 10 for warnings, 0 when
all is well; when nothing was found but some checks could not run, 9 (partial), or 7 when what
kept them from running was a rejected credential or a missing privilege.

Whose findings count: a diagnosis of a service is judged by its own checks (its workload, its
queries, its runbook checks) and those of what it depends on (runbooks.yaml `depends_on`:
gateway-api's Postgres and Redis; tool-service's adapters), see `ops.plan.own_checks`. The
rest of the sweep (another service's backend, the namespace's rollouts) is shown under
`elsewhere`, each finding with the diagnosis that covers it ("somactl diagnose redis"), and
changes neither the status, the exit code, the severity nor the next steps: a critical Redis
does not make `somactl diagnose postgres` exit 11.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from somactl.checks.base import CheckResult, Status, worst
from somactl.core.errors import SomactlError
from somactl.core.exitcodes import ExitCode
from somactl.core.redact import redact
from somactl.runbook.classify import Classification, matching_scenarios
from somactl.runbook.schema import LEVELS, Runbook, Step
from somactl.runbook.templates import render_command

STATUS_EXIT = {
    Status.critical: ExitCode.CRITICAL,
    Status.warn: ExitCode.WARNINGS,
    Status.ok: ExitCode.OK,
}


def exit_code_for(results: Sequence[CheckResult]) -> ExitCode:
    w = worst([r.status for r in results])
    if w is not Status.unknown:
        return STATUS_EXIT[w]
    codes = {r.error_code for r in results if r.status is Status.unknown}
    return ExitCode.PERMISSION if int(ExitCode.PERMISSION) in codes else ExitCode.PARTIAL


def unanswered(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Checks that could not run because their backend failed or refused them. A backend left
    unconfigured (exit 3: no postgres.dsn in a context that has no database) is a choice, not
    a gap, when the check is about another service."""
    return [
        r for r in results if r.status is Status.unknown and r.error_code != int(ExitCode.CONFIG)
    ]


def envelope_status(results: Sequence[CheckResult]) -> str:
    w = worst([r.status for r in results])
    return "partial" if w is Status.unknown else str(w)


def merge_signals(rb: Runbook, results: Iterable[CheckResult]) -> dict[str, Any]:
    """All measured signals; where two checks measured one, the worse value (runbook's `worse`)."""
    specs = rb.classification.signals
    merged: dict[str, Any] = {}
    for r in results:
        for name, value in r.signals.items():
            spec = specs.get(name)
            if spec is None or value is None:
                continue
            if name not in merged:
                merged[name] = list(value) if spec.type == "services" else value
                continue
            cur = merged[name]
            if spec.type == "services":
                merged[name] = list(dict.fromkeys([*cur, *value]))
            elif spec.type == "bool":
                if value == spec.worse:
                    merged[name] = value
            elif spec.worse == "lower":
                merged[name] = min(cur, value)
            else:
                merged[name] = max(cur, value)
    return merged


def merge_facts(results: Iterable[CheckResult]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for r in results:
        for k, v in r.facts.items():
            if isinstance(v, list) and isinstance(facts.get(k), list):
                facts[k] = list(dict.fromkeys([*facts[k], *v]))
            elif isinstance(v, bool) and isinstance(facts.get(k), bool):
                facts[k] = facts[k] or v
            elif k not in facts or facts[k] is None:
                facts[k] = v
    return facts


@dataclass
class NextStep:
    title: str
    command: str | None = None
    why: str | None = None
    source: str = ""  # "scenario gateway-api-down" / "pattern service-crash"
    kind: str = "action"
    when: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "command": self.command,
            "why": self.why,
            "when": self.when,
            "kind": self.kind,
            "source": self.source,
        }


@dataclass
class Verdict:
    status: Status
    exit_code: ExitCode
    summary: str
    worst_checks: list[str]
    signals: dict[str, Any]
    facts: dict[str, Any]
    classification: Classification | None
    severity: dict[str, Any] | None
    scenario: dict[str, Any] | None
    other_scenarios: list[dict[str, Any]]
    next_steps: list[NextStep] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped_steps: list[dict[str, str]] = field(default_factory=list)
    elsewhere: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "exit_code": int(self.exit_code),
            "summary": self.summary,
            "worst_checks": self.worst_checks,
            "severity": self.severity,
            "scenario": self.scenario,
            "other_scenarios": self.other_scenarios,
            "next_steps": [s.to_json() for s in self.next_steps],
            "steps_already_checked": self.checked,
            "steps_not_suggested": self.skipped_steps,
            "elsewhere": self.elsewhere,
            "signals": self.signals,
            "fired_rules": (
                [r.to_dict() for r in self.classification.fired] if self.classification else []
            ),
        }


def _rank_level(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def _assess(
    rb: Runbook, service: str, results: Sequence[CheckResult]
) -> tuple[dict[str, Any], Classification, list[str]]:
    """Signals, the runbook's classification and the matching scenarios of `results`."""
    signals = merge_signals(rb, results)
    scoped = {**signals, "service": service}
    classification = rb.classify(scoped)
    scenario_ids = list(matching_scenarios(scoped, rb))
    scenario_ids.sort(
        key=lambda sid: (
            rb.scenarios[sid].service not in (service, None),
            rb.scenarios[sid].service is None,
            _rank_level(rb.scenarios[sid].severity),
        )
    )
    return signals, classification, scenario_ids


def _severity(
    rb: Runbook, classification: Classification, scenario_ids: Sequence[str], source: str = ""
) -> dict[str, Any] | None:
    if classification.level is not None:
        return {
            **rb.severity_summary(classification.level),
            "source": f"{source}classification",
            "rule": classification.rule.to_dict() if classification.rule else None,
        }
    if scenario_ids:
        sc = rb.scenarios[scenario_ids[0]]
        return {
            **rb.severity_summary(sc.severity),
            "source": f"{source}scenario {scenario_ids[0]}",
            "rule": None,
        }
    return None


def _scenario(rb: Runbook, sid: str) -> dict[str, Any]:
    sc = rb.scenarios[sid]
    return {"id": sid, "title": sc.title, "severity": sc.severity}


def decide(
    rb: Runbook,
    service: str,
    results: Sequence[CheckResult],
    own: set[str] | None = None,
) -> Verdict:
    """The verdict on `service`. `own` names the checks it is judged by (its own and its
    dependencies', `ops.plan.own_checks`; None: all of them): they decide the status, exit
    code, severity, scenario and next steps. The other checks' findings are reported under
    `elsewhere`, with the service whose diagnosis covers them, and count for none of these;
    one of them that could not run (its backend failed; not merely unconfigured) still makes an
    otherwise clean exit 9 (or 7)."""
    mine = [r for r in results if own is None or r.id in own]
    others = [r for r in results if own is not None and r.id not in own]
    own_status = worst([r.status for r in mine])
    code = exit_code_for(mine)
    if code is ExitCode.OK and unanswered(others):
        # nothing wrong found about SERVICE, but the sweep was incomplete: still partial
        # (README: 9 when some checks could not run), never a clean 0 with errors printed
        code = exit_code_for(unanswered(others))
    signals, classification, scenario_ids = _assess(rb, service, mine)
    facts = merge_facts(mine)
    severity = _severity(rb, classification, scenario_ids)
    lead = _lead(rb, service)
    ranked = sorted(
        (r for r in mine if r.status is own_status), key=lambda r: _prefer(r, service, lead)
    )
    scenarios = [_scenario(rb, sid) for sid in scenario_ids]
    elsewhere = _elsewhere(rb, service, results, others, classification, scenario_ids)
    summary = _summary(service, own_status, ranked, severity, scenarios, elsewhere)
    verdict = Verdict(
        status=own_status,
        exit_code=code,
        summary=summary,
        worst_checks=[r.id for r in ranked],
        signals=signals,
        facts=facts,
        classification=classification,
        severity=severity,
        scenario=scenarios[0] if scenarios else None,
        other_scenarios=scenarios[1:],
        elsewhere=elsewhere,
    )
    if own_status in (Status.warn, Status.critical) or scenarios:
        _next_steps(rb, service, results, verdict, scenario_ids[:1])
    return verdict


def _elsewhere(
    rb: Runbook,
    service: str,
    results: Sequence[CheckResult],
    others: Sequence[CheckResult],
    own_cls: Classification,
    own_scenarios: Sequence[str],
) -> dict[str, Any] | None:
    """Findings of the shared checks, and what they would add to the severity."""
    from somactl.ops.plan import service_of_check

    bad = [r for r in others if r.status in (Status.warn, Status.critical)]
    if not bad:
        return None
    _signals, cls_all, scen_all = _assess(rb, service, results)
    extra = [sid for sid in scen_all if sid not in own_scenarios]
    severity = None
    if cls_all.level is not None and _rank_level(cls_all.level) < _rank_level(own_cls.level):
        severity = _severity(rb, cls_all, [], "")
    elif not own_cls.level and not own_scenarios and extra:
        severity = _severity(rb, cls_all, extra, "")
    findings = []
    for r in sorted(bad, key=lambda r: (-_STATUS_RANK[r.status], _prefer(r, service))):
        owner = service_of_check(rb, r.id)
        findings.append(
            {
                "check": r.id,
                "status": str(r.status),
                "summary": redact(r.summary),
                "diagnose": f"somactl diagnose {owner}" if owner and owner != service else None,
            }
        )
    return {
        "status": str(worst([r.status for r in bad])),
        "findings": findings,
        "severity": severity,
        "scenarios": [_scenario(rb, sid) for sid in extra],
    }


_STATUS_RANK = {Status.ok: 0, Status.unknown: 1, Status.warn: 2, Status.critical: 3}


def _prefer(r: CheckResult, service: str, lead: str | None = None) -> tuple[int, str]:
    # the service's pods first, then its own backend (db. for postgres...), then its metrics
    order = ("k8s.pods", *((lead,) if lead else ()), "prom.", "k8s.", "db.", "redis.", "tools.")
    base = r.id.split(":", 1)[-1]
    for i, p in enumerate(order):
        if base.startswith(p):
            return (i, base)
    return (len(order), base)


def _lead(rb: Runbook, service: str) -> str | None:
    for c in rb.service(service).checks:
        if not c.startswith(("k8s.", "prom.")):
            return c.split(".", 1)[0] + "."
    return None


def _summary(
    service: str,
    status: Status,
    ranked: Sequence[CheckResult],
    severity: Mapping[str, Any] | None,
    scenarios: Sequence[Mapping[str, Any]],
    elsewhere: Mapping[str, Any] | None = None,
) -> str:
    if status is Status.ok:
        head = f"{service}: all its checks ok"
    elif status is Status.unknown:
        head = f"{service}: nothing wrong found, but {len(ranked)} of its checks could not run"
    else:
        first = ranked[0]
        head = f"{status}: {first.id.split(':', 1)[-1]}: {first.summary}"
        if len(ranked) > 1:
            head += f" (+{len(ranked) - 1} more {status})"
    if severity:
        head += f" | suggested {severity['level']} {severity['name']} ({severity['response']})"
    if scenarios:
        head += f" | runbook: {scenarios[0]['title']}"
    if elsewhere:
        head += f" | elsewhere: {elsewhere_line(elsewhere)}"
    return redact(head)


def elsewhere_line(elsewhere: Mapping[str, Any]) -> str:
    """`redis.memory critical (see somactl diagnose redis)`, and how many more."""
    findings = elsewhere["findings"]
    first = findings[0]
    line = f"{first['check'].split(':', 1)[-1]} {first['status']}"
    if first.get("diagnose"):
        line += f" (see {first['diagnose']})"
    if len(findings) > 1:
        line += f" +{len(findings) - 1} more"
    return line


# -- next steps ------------------------------------------------------------------------------------


def _pattern_ids(
    rb: Runbook, service: str, facts: Mapping[str, Any], sig: Mapping[str, Any]
) -> list[str]:
    kind = rb.service(service).kind
    out: list[str] = []
    crashing = (
        facts.get("crashloop")
        or facts.get("image_pull")
        or service in (sig.get("service_down") or [])
    )
    if kind == "deployment" and crashing:
        out.append("service-crash")
    p95 = sig.get("p95_seconds")
    if kind == "deployment" and not crashing and isinstance(p95, (int, float)) and p95 > 1:
        out.append("high-load")
    if (
        float(sig.get("db_connection_ratio") or 0) >= 0.8
        or facts.get("long_running")
        or facts.get("blocked_sessions")
        or facts.get("pool_exhausted")
    ):
        out.append("database-issues")
    if float(sig.get("redis_memory_ratio") or 0) >= 0.8 or sig.get("redis_up") is False:
        out.append("redis-issues")
    if facts.get("rate_limited_adapters") or sig.get("adapters_rate_limited"):
        out.append("rate-limit")
    return [p for p in out if p in rb.mitigation_patterns]


def _next_steps(
    rb: Runbook,
    service: str,
    results: Sequence[CheckResult],
    verdict: Verdict,
    scenario_ids: Sequence[str],
) -> None:
    # a check that ran counts as done; one that could not run is worth re-running only when
    # it timed out or failed (not when it is not configured or was refused: that is reported)
    ran = {
        r.id.split(":", 1)[-1]
        for r in results
        if r.status is not Status.unknown
        or r.error_code in (int(ExitCode.CONFIG), int(ExitCode.PERMISSION))
    }
    seen: set[str] = set()
    sources: list[tuple[str, str | None, Sequence[Step]]] = []
    for sid in scenario_ids:
        sc = rb.scenarios[sid]
        sources.append((f"scenario {sid}", sc.service, sc.steps))
    for pid in _pattern_ids(rb, service, verdict.facts, verdict.signals):
        sources.append((f"pattern {pid}", None, rb.mitigation_patterns[pid].steps))
    for source, sc_service, steps in sources:
        for step in steps:
            for entry in _step_entries(rb, service, sc_service, step, verdict, ran, source):
                key = entry.command or entry.title
                if key in seen:
                    continue
                seen.add(key)
                if entry.kind == "checked":
                    verdict.checked.append(entry.title)
                elif entry.kind == "skipped":
                    verdict.skipped_steps.append({"title": entry.title, "why": entry.why or ""})
                else:
                    verdict.next_steps.append(entry)


def _step_entries(
    rb: Runbook,
    service: str,
    sc_service: str | None,
    step: Step,
    verdict: Verdict,
    ran: set[str],
    source: str,
) -> list[NextStep]:
    facts, sig = verdict.facts, verdict.signals
    if step.kind == "check":
        ids = [step.check] if step.check else list(step.checks)
        out: list[NextStep] = []
        for cid in ids:
            if cid is None:
                continue
            if cid in ran:
                out.append(NextStep(step.title, kind="checked", source=source))
                continue
            check = rb.checks.get(cid)
            cmd = None
            if check is not None and check.somactl:
                target = _target_for(rb, service, sc_service, check.applies_to)
                extra: dict[str, str] = {}
                if target is None and "{tool}" in check.somactl:
                    adapters = [
                        *facts.get("rate_limited_adapters", []),
                        *facts.get("failing_adapters", []),
                    ]
                    extra["tool"] = adapters[0] if adapters else "github"
                try:
                    cmd = render_command(check.somactl, rb, target, **extra)
                except SomactlError:  # a template needing fields we lack: the title says it
                    cmd = None
            out.append(NextStep(step.title, cmd, source=source, kind="check"))
        return out
    if step.kind == "action" and step.action is not None:
        action = rb.actions.get(step.action)
        if action is None or not action.somactl:
            return [NextStep(step.title, source=source, kind="manual", why=step.instructions)]
        params = {**action.params, **step.params}
        if "tool-adapter" in action.applies_to:
            tools = list(facts.get("rate_limited_adapters") or []) + list(
                facts.get("failing_adapters") or []
            )
            if rb.service(service).kind == "tool-adapter":
                tools = [service, *tools]
            tools = [t for t in dict.fromkeys(tools) if t in rb.services]
            return [
                NextStep(
                    step.title,
                    render_command(action.somactl, rb, t, **params),
                    why=f"{t} is failing or rate limited",
                    source=source,
                )
                for t in tools
            ]
        target = action.service or sc_service or _down_or(service, rb, sig)
        svc = rb.services.get(target)
        if svc is None or (action.applies_to and svc.kind not in action.applies_to):
            return []
        why = None
        when = step.when
        if step.action == "rollback":
            if not facts.get("recent_deploy"):
                return [
                    NextStep(
                        step.title,
                        kind="skipped",
                        why=f"no rollout of {target} in the last hour",
                        source=source,
                    )
                ]
            cur, prev = facts.get("current_revision"), facts.get("previous_revision")
            cause = facts.get("change_cause")
            why = f"revision {cur}" + (f" ({cause})" if cause else "")
            secs = facts.get("deployed_seconds_ago")
            if isinstance(secs, (int, float)):
                from somactl.core.durations import human_duration

                why += f" rolled out {human_duration(max(0.0, secs))} ago"
            if facts.get("crashloop"):
                why += " and its pods are crash-looping"
            if prev is not None:
                why += f"; previous revision {prev}"
            when = None
        suffix = ""
        if step.action == "kill-queries":
            params, suffix, why = _kill_queries(params, facts, sig)
        if action.last_resort:
            why = (why + "; " if why else "") + "last resort"
        return [
            NextStep(
                step.title,
                render_command(action.somactl, rb, target, **params) + suffix,
                why=why,
                when=when,
                source=source,
            )
        ]
    if step.kind == "pattern":
        return []
    return [
        NextStep(
            step.title, None, why=step.instructions, when=step.when, source=source, kind="manual"
        )
    ]


IDLE_IN_XACT_KILL_AGE = 30  # seconds
IDLE_IN_XACT_MIN_AGE = 5


def _kill_queries(
    params: dict[str, Any], facts: Mapping[str, Any], sig: Mapping[str, Any]
) -> tuple[dict[str, Any], str, str | None]:
    """Aim `mitigate kill-queries` at what this diagnosis found: the long-running queries at
    the threshold it used, or (a pool exhausted by sessions idle in transaction) those."""
    from somactl.core.durations import human_duration

    params = dict(params)
    long_running = int(facts.get("long_running") or 0)
    idle = int(facts.get("idle_in_transaction") or 0)
    threshold = facts.get("long_running_threshold")
    if long_running or facts.get("blocked_sessions"):
        if isinstance(threshold, (int, float)):
            params["older_than"] = human_duration(threshold)
        parts = []
        if long_running:
            parts.append(f"{long_running} active queries older than {params['older_than']}")
        if facts.get("blocked_sessions"):
            blockers = ", ".join(str(b) for b in (facts.get("blockers") or [])[:3])
            parts.append(f"{facts['blocked_sessions']} sessions blocked behind pid {blockers}")
        return params, "", "; ".join(parts)
    if idle and float(sig.get("db_connection_ratio") or 0) >= 0.8:
        # a transaction idle this long while the pool is full is holding a slot for nothing;
        # aim at what was seen (a younger leak would make the suggestion a no-op), never below
        # a few seconds (an application between two statements)
        oldest = facts.get("oldest_idle_in_transaction")
        params["older_than"] = (
            human_duration(max(IDLE_IN_XACT_MIN_AGE, min(IDLE_IN_XACT_KILL_AGE, int(oldest))))
            if isinstance(oldest, (int, float))
            else human_duration(IDLE_IN_XACT_KILL_AGE)
        )
        return (
            params,
            " --state idle-in-transaction",
            f"{idle} sessions idle in transaction hold connections of a full pool",
        )
    return params, "", None


def _down_or(service: str, rb: Runbook, sig: Mapping[str, Any]) -> str:
    svc = rb.service(service)
    if svc.kind == "tool-adapter":
        for name, other in rb.services.items():
            if other.kind != "tool-adapter" and other.workload == svc.workload:
                return name
    return service


def _target_for(
    rb: Runbook, service: str, sc_service: str | None, applies: Sequence[str]
) -> str | None:
    target = sc_service or service
    svc = rb.services.get(target)
    if svc is None or (applies and svc.kind not in applies):
        return None
    return target
