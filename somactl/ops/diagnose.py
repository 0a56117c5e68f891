"""`somactl diagnose SERVICE`: every investigation check of the runbook, concurrently, under one
deadline; a verdict with the runbook's severity, scenario and next steps; the verdict on the
open incident's timeline; optionally an evidence bundle; optionally across several contexts.

The exit code and the envelope's status are SERVICE's: its own checks and those of what it
depends on (runbooks.yaml `depends_on`; `ops.plan.own_checks`). The rest of the sweep is shown
(its checks, and the verdict's `elsewhere` naming the diagnosis that covers each finding) but a
critical Redis does not make `diagnose postgres` exit 11. Across contexts: the worst context.
Checks that could not run are listed in `errors` wherever they belong, and one whose backend
failed (not merely unconfigured) makes an otherwise clean diagnosis exit 9 (partial), as
README's exit codes say.

No terminal here: progress comes in as callbacks, the result goes out as a `Result`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somactl.checks.base import CheckResult, Status, run_checks, worst
from somactl.core.deadline import Deadline
from somactl.core.errors import SomactlError, UsageError
from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.core.redact import redact
from somactl.core.result import Result
from somactl.ops.budget import command_deadline
from somactl.ops.plan import Plan, build_plan
from somactl.ops.targets import Targets, load_runbook_for, settings_for_context, targets_for
from somactl.ops.verdict import Verdict, decide, envelope_status, exit_code_for, unanswered
from somactl.runbook.schema import Runbook

ResultCallback = Callable[[CheckResult], None]


@dataclass
class DiagnoseRequest:
    service: str
    long_running_seconds: float | None = None
    snapshot: Path | None = None
    contexts: Sequence[str] | None = None
    record: bool = True


@dataclass
class Prepared:
    context: str | None
    targets: Targets
    plan: Plan


def check_service(rb: Runbook, service: str) -> None:
    """Exit 2 naming the known services, before anything touches the network."""
    rb.service(service)


def parse_contexts(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise UsageError("--contexts: no context named", "e.g. --contexts prod-eu,prod-us")
    if len(set(names)) != len(names):
        raise UsageError(f"--contexts: a context is named twice ({text})")
    return names


def diagnose(
    opts: GlobalOptions,
    req: DiagnoseRequest,
    *,
    on_start: Callable[[int, float], None] | None = None,
    on_result: ResultCallback | None = None,
    warmup: Callable[[], None] | None = None,
    env: Mapping[str, str] | None = None,
    deadline: Deadline | None = None,
) -> Result:
    rb = load_runbook_for(opts)
    check_service(rb, req.service)
    started = time.monotonic()
    deadline = deadline or command_deadline(opts.timeout)
    contexts: list[str | None] = list(req.contexts) if req.contexts else [None]
    prepared: list[Prepared] = []
    for ctx in contexts:
        settings = settings_for_context(opts, ctx, env=env)
        targets = targets_for(settings, env=env)
        prefix = f"{settings.context or 'default'}:" if req.contexts else ""
        plan = build_plan(
            rb,
            req.service,
            targets,
            deadline,
            long_running_seconds=req.long_running_seconds,
            prefix=prefix,
        )
        prepared.append(Prepared(settings.context, targets, plan))
    checks = [c for p in prepared for c in p.plan.checks]
    if on_start is not None:
        on_start(len(checks), deadline.remaining())
    if warmup is not None:
        threading.Thread(target=warmup, name="render-warmup", daemon=True).start()
    budget_left = deadline.remaining()
    results = run_checks(checks, deadline, on_result)
    run_seconds = time.monotonic() - started
    for p in prepared:
        p.plan.close()
    slowest = max((r.duration for r in results), default=0.0)
    timing = {
        "deadline_seconds": deadline.seconds,
        "since_process_start": round(deadline.elapsed(), 4),
        "run_seconds": round(run_seconds, 4),
        "slowest_check_seconds": round(slowest, 4),
        "overhead_seconds": round(run_seconds - min(budget_left, slowest), 4),
    }
    by_id = {r.id: r for r in results}
    judged = [r for p in prepared for r in results if r.id in p.plan.own]
    if not req.contexts:
        p = prepared[0]
        data, verdict = _single(rb, req, p, [by_id[c.id] for c in p.plan.checks], timing)
        errors = _errors(results)
        if req.snapshot is not None:
            data["snapshot"] = str(
                _snapshot(req, [(p, [by_id[c.id] for c in p.plan.checks], data)])
            )
        return Result(
            command="diagnose",
            data=data,
            exit_code=verdict.exit_code,
            status=_status(judged, results),
            errors=errors,
        )
    per: dict[str, dict[str, Any]] = {}
    parts: list[tuple[Prepared, list[CheckResult], dict[str, Any]]] = []
    for p in prepared:
        mine = [by_id[c.id] for c in p.plan.checks]
        data, _verdict = _single(rb, req, p, mine, timing)
        per[p.context or "default"] = data
        parts.append((p, mine, data))
    code = exit_code_for(judged)
    if code is ExitCode.OK and unanswered(results):
        code = exit_code_for(unanswered(results))
    out: dict[str, Any] = {
        "service": req.service,
        "contexts": per,
        "differences": differences(per),
        "status": _status(judged, results),
        "exit_code": int(code),
        "timing": timing,
    }
    if req.snapshot is not None:
        out["snapshot"] = str(_snapshot(req, parts))
    return Result(
        command="diagnose",
        data=out,
        exit_code=code,
        status=_status(judged, results),
        errors=_errors(results),
    )


def _single(
    rb: Runbook,
    req: DiagnoseRequest,
    p: Prepared,
    results: list[CheckResult],
    timing: Mapping[str, Any],
) -> tuple[dict[str, Any], Verdict]:
    svc = rb.service(req.service)
    verdict = decide(rb, req.service, results, own=p.plan.own)
    incident = _record(p.targets.state_dir, req, verdict) if req.record else None
    data = {
        "service": req.service,
        "title": svc.title,
        "kind": svc.kind,
        "criticality": svc.criticality,
        "context": p.context,
        "namespace": p.targets.namespace,
        "verdict": verdict.to_json(),
        "checks": [
            {**r.to_json(), "group": p.plan.titles.get(r.id), "evidence": r.evidence}
            for r in results
        ],
        "not_run": p.plan.not_run,
        "incident": incident,
        "timing": dict(timing),
    }
    return data, verdict


def _status(judged: Sequence[CheckResult], results: Sequence[CheckResult]) -> str:
    """The envelope's status: SERVICE's, and partial when it is ok but a check elsewhere could
    not run (the exit code is 9 then)."""
    status = envelope_status(judged)
    if status == "ok" and unanswered(results):
        return "partial"
    return status


def _errors(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """One error per distinct cause (five Prometheus checks refused: one line, five checks)."""
    grouped: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.status is not Status.unknown:
            continue
        message = redact(r.error or r.summary)
        entry = grouped.get(message)
        if entry is None:
            grouped[message] = {
                "check": r.id,
                "checks": [r.id],
                "message": message,
                "hint": r.hint,
                "exit_code": r.error_code if r.error_code is not None else int(ExitCode.PARTIAL),
            }
        else:
            entry["checks"].append(r.id)
    for entry in grouped.values():
        if len(entry["checks"]) > 1:
            entry["message"] += f" ({len(entry['checks'])} checks: {', '.join(entry['checks'])})"
    return list(grouped.values())


def _record(state_dir: str, req: DiagnoseRequest, verdict: Verdict) -> str | None:
    """Put the verdict on the open incident's timeline (nothing when none is open)."""
    if not state_dir:
        return None
    import sqlite3

    from somactl.incident.store import record_on_open_incident

    sev = verdict.severity or {}
    details = {
        "verdict": {
            "service": req.service,
            "status": str(verdict.status),
            "exit_code": int(verdict.exit_code),
            "summary": verdict.summary,
            "severity": sev.get("level"),
            "scenario": (verdict.scenario or {}).get("id"),
            "worst_checks": verdict.worst_checks,
            "next_steps": [s.command for s in verdict.next_steps if s.command],
        }
    }
    try:
        return record_on_open_incident(
            state_dir,
            "check_run",
            f"diagnose {req.service}: {verdict.status}"
            + (f", suggested {sev['level']}" if sev.get("level") else ""),
            details=details,
            service=req.service,
        )
    except (SomactlError, OSError, sqlite3.Error, ValueError):
        # the diagnosis itself must not fail because the incident store is unreadable
        return None


def _snapshot(
    req: DiagnoseRequest, parts: Sequence[tuple[Prepared, list[CheckResult], dict[str, Any]]]
) -> Path:
    from somactl.ops.snapshot import new_bundle, safe_name

    bundle = new_bundle(req.snapshot or Path("."), req.service)
    multi = len(parts) > 1
    for p, results, data in parts:
        prefix = f"{safe_name(p.context or 'default')}/" if multi else ""
        bundle.json(f"{prefix}diagnosis.json", data)
        bundle.add_results(results, prefix)
    return bundle.finish(
        {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "service": req.service,
            "contexts": [p.context for p, _, _ in parts],
        }
    )


def differences(per: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Checks whose status differs between contexts (ids without the context prefix)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for ctx, data in per.items():
        for c in data["checks"]:
            base = c["id"].split(":", 1)[-1]
            table.setdefault(base, {})[ctx] = c
    out = []
    for base, by_ctx in table.items():
        statuses = {ctx: c["status"] for ctx, c in by_ctx.items()}
        if len(set(statuses.values())) > 1 or len(by_ctx) != len(per):
            out.append(
                {
                    "check": base,
                    "statuses": statuses,
                    "summaries": {ctx: c["summary"] for ctx, c in by_ctx.items()},
                }
            )
    verdicts = {ctx: d["verdict"] for ctx, d in per.items()}
    sev = {ctx: (v.get("severity") or {}).get("level") for ctx, v in verdicts.items()}
    if len(set(sev.values())) > 1:
        out.insert(0, {"check": "severity", "statuses": sev, "summaries": {}})
    return out


def worst_status(results: Sequence[CheckResult]) -> Status:
    return worst([r.status for r in results])
