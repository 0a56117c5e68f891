"""The post-incident review from the runbook's PIR template and the incident's timeline.

The summary (date, duration, severity, impact) and the root cause come from the incident; the
severity is the incident's *peak* (the most severe level it reached, not the one it ended at),
with its history when it changed ("P0 (peak; P2 at 14:00 -> P0 at 14:10 -> P1 at 14:30)"); the
timeline lists every event with its time (checks with their verdict, actions with their outcome,
pages, updates); the sections people write at the review (what went well or wrong, action
items, lessons) get placeholders, plus follow-ups for actions whose outcome was not `ok` and for
runbook steps that failed. When a runbook was followed (`somactl runbook run`), a "Runbook
Followed" section after the timeline lists each step's outcome: skipped steps with the
responder's reason, failed ones with the error, steps that did not apply with why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from somactl.core.errors import UsageError
from somactl.incident import messages as msg
from somactl.incident.store import (
    DB_NAME,
    Event,
    Incident,
    IncidentStore,
    fmt_ts,
    parse_ts,
    utcnow,
)
from somactl.runbook.schema import Runbook
from somactl.runbook.templates import render_pir

PLACEHOLDER = "_(to be completed at the review)_"
RUNBOOK_HEADING = "Runbook Followed"


def runbook_runs(inc: Incident, events: Sequence[Event]) -> list[dict[str, Any]]:
    """Each `runbook run` on the incident, in order: the scenario and every step's outcome (a
    step recorded twice in one run, the last word wins)."""
    runs: dict[str, dict[str, Any]] = {}
    for e in events:
        d = e.details.get("runbook_step") if e.kind == "runbook_step" else None
        if not isinstance(d, dict):
            continue
        run = runs.setdefault(
            str(d.get("run") or d.get("scenario")),
            {
                "scenario": d.get("scenario"),
                "title": d.get("title"),
                "service": d.get("service"),
                "started": fmt_ts(e.at),
                "steps": {},
            },
        )
        run["steps"][int(d.get("step") or 0)] = {
            "step": d.get("step"),
            "title": d.get("step_title"),
            "kind": d.get("kind"),
            "outcome": d.get("outcome"),
            "reason": d.get("reason"),
            "error": d.get("error"),
            "findings": [
                f"{f.get('status')}: {f.get('summary')}"
                for f in d.get("findings") or []
                if isinstance(f, dict)
            ],
            "at": fmt_ts(e.at),
        }
    out = []
    for run in runs.values():
        steps = [run["steps"][k] for k in sorted(run["steps"])]
        out.append({**run, "steps": steps})
    if not out and inc.runbook:
        out.append(
            {"scenario": inc.runbook, "title": None, "service": None, "started": None, "steps": []}
        )
    return out


def _step_line(step: dict[str, Any]) -> str:
    line = f"Step {step['step']} - {step['title']}: **{step['outcome']}**"
    why = step.get("reason") or step.get("error") or "; ".join(step.get("findings") or [])
    if step["outcome"] == "skipped":
        line += f" (reason: {why or 'none given'})"
    elif why:
        line += f" ({why})"
    return line


def runbook_markdown(runs: Sequence[dict[str, Any]]) -> str:
    """The "Runbook Followed" section (empty when no runbook was followed)."""
    if not runs:
        return ""
    lines = [f"## {RUNBOOK_HEADING}"]
    for run in runs:
        name = f"{run['title']} ({run['scenario']})" if run["title"] else str(run["scenario"])
        head = f"**{name}**" + (f" for {run['service']}" if run["service"] else "")
        if run["started"]:
            head += f", started {run['started']}"
        lines += [head, ""]
        if not run["steps"]:
            lines += ["_(no steps recorded)_", ""]
            continue
        lines.extend(f"- {_step_line(s)}" for s in run["steps"])
        skipped = [s for s in run["steps"] if s["outcome"] == "skipped"]
        lines += [
            "",
            "Skipped steps: "
            + (", ".join(f"{s['step']} ({s['title']})" for s in skipped) if skipped else "none"),
            "",
        ]
    return "\n".join(lines)


def _event_text(e: Event) -> str:
    text = e.summary
    d = e.details
    verdict = d.get("verdict")
    if isinstance(verdict, dict):  # diagnose records the whole verdict: its status is the word
        verdict = verdict.get("status")
    if e.kind == "check_run" and verdict and str(verdict) not in text:
        text += f" (verdict: {verdict})"
    if e.kind == "action_applied" and d.get("outcome") and str(d["outcome"]) not in text:
        text += f" (outcome: {d['outcome']})"
    if e.kind == "declared":
        text = f"Incident declared ({d.get('severity', '')})" + (
            f", {d['paging']}" if d.get("paging") else ""
        )
    return f"{text} [{e.actor}]" if e.actor else text


def _stamp(inc: Incident, at: datetime) -> str:
    """HH:MM on the declaration day, `YYYY-MM-DD HH:MM` on any other."""
    return msg.hhmm(at) if at.date() == inc.declared_at.date() else at.strftime("%Y-%m-%d %H:%M")


def severity_history(inc: Incident, events: Sequence[Event]) -> dict[str, Any]:
    """The level declared, every re-classification, the peak (the most severe level reached:
    P0 over P1) and the final level, from the `declared` and `severity_changed` events."""
    declared = next((e for e in events if e.kind == "declared"), None)
    changes = [e for e in events if e.kind == "severity_changed"]
    first = (
        (declared.details.get("severity") if declared else None)
        or (changes[0].details.get("from") if changes else None)
        or inc.severity
    )
    history: list[dict[str, Any]] = [
        {"severity": str(first), "at": fmt_ts(inc.declared_at), "reason": None}
    ]
    history += [
        {
            "severity": str(e.details.get("to") or ""),
            "at": fmt_ts(e.at),
            "reason": e.details.get("reason"),
        }
        for e in changes
        if e.details.get("to")
    ]
    return {
        "peak": min((h["severity"] for h in history), key=lambda level: level[1:]),
        "declared": history[0]["severity"],
        "final": inc.severity,
        "history": history,
    }


def _severity_text(inc: Incident, sev: dict[str, Any]) -> str:
    """`P1`, or `P0 (peak; P2 at 14:00 -> P0 at 14:10 -> P1 at 14:30)` when it changed."""
    if len(sev["history"]) == 1:
        return str(sev["peak"])
    steps = " -> ".join(
        f"{h['severity']} at {_stamp(inc, parse_ts(h['at']) or inc.declared_at)}"
        for h in sev["history"]
    )
    return f"{sev['peak']} (peak; {steps})"


def timeline_items(inc: Incident, events: Sequence[Event]) -> list[dict[str, str]]:
    """`{time, event}` rows: HH:MM on the declaration day, `YYYY-MM-DD HH:MM` after it.

    Consecutive notifications in the same minute are folded into one row.
    """
    items: list[dict[str, str]] = []
    pending: list[Event] = []

    def stamp(at: datetime) -> str:
        return _stamp(inc, at)

    def flush() -> None:
        if not pending:
            return
        parts = [
            " ".join(
                str(x)
                for x in (
                    e.details.get("sink", "?"),
                    e.details.get("action"),
                    e.details.get("status"),
                )
                if x
            )
            for e in pending
        ]
        items.append({"time": stamp(pending[0].at), "event": "Notified: " + ", ".join(parts)})
        pending.clear()

    for e in events:
        if e.kind == "notified":
            if pending and stamp(pending[0].at) != stamp(e.at):
                flush()
            pending.append(e)
            continue
        flush()
        items.append({"time": stamp(e.at), "event": _event_text(e)})
    flush()
    return items


def build(
    runbook: Runbook, inc: Incident, events: Sequence[Event], *, now: datetime | None = None
) -> dict[str, Any]:
    now = now or utcnow()
    end = inc.resolved_at or now
    due_after = timedelta(seconds=runbook.pir.due.seconds or 0)
    due = inc.resolved_at + due_after if inc.resolved_at else None
    owner = inc.commander or "@owner"
    severity = severity_history(inc, events)
    fields = {
        "title": inc.title,
        "date": inc.declared_at.strftime("%Y-%m-%d"),
        "start_time": msg.hhmm(inc.declared_at),
        "duration": msg.duration_words(end - inc.declared_at)
        + ("" if inc.resolved_at else " (still open)"),
        "severity": _severity_text(inc, severity),
        "impact": inc.impact,
        "root_cause": inc.root_cause or "_(not yet known)_",
    }
    due_text = due.strftime("%Y-%m-%d") if due else "-"
    followups = [
        {
            "task": f"Follow up: {e.details.get('kind', '')} {e.details.get('target', '')} "
            f"ended {e.details.get('outcome')}".replace("  ", " "),
            "owner": owner,
            "due": due_text,
        }
        for e in events
        if e.kind == "action_applied" and e.details.get("outcome") in ("failed", "unknown")
    ]
    runs = runbook_runs(inc, events)
    followups += [
        {
            "task": f"Follow up: runbook {run['scenario']} step {s['step']} ({s['title']}) "
            f"failed: {s.get('error') or s.get('reason') or 'see the timeline'}",
            "owner": owner,
            "due": due_text,
        }
        for run in runs
        for s in run["steps"]
        if s["outcome"] == "failed"
    ]
    items: dict[str, list[dict[str, str]]] = {
        "timeline": timeline_items(inc, events),
        "went-well": [{"text": PLACEHOLDER}],
        "went-wrong": [{"text": PLACEHOLDER}],
        "action-items": [
            *followups,
            {"task": PLACEHOLDER, "owner": owner, "due": due_text},
        ],
        "lessons": [{"number": "1", "text": PLACEHOLDER}],
    }
    known = {s.id for s in runbook.pir.sections}
    items = {k: v for k, v in items.items() if k in known}
    markdown = render_pir(runbook.pir, fields, items)
    rc = next((s for s in runbook.pir.sections if s.id == "root-cause"), None)
    if inc.fix and rc is not None:
        # the runbook's template has no line for the fix: it goes under the root cause
        anchor = (
            f"## {rc.heading}\n" + "\n".join(line.format_map(fields) for line in rc.lines) + "\n"
        )
        markdown = markdown.replace(anchor, anchor + f"\n**Fix:** {inc.fix}\n", 1)
    markdown = _insert_after_timeline(runbook, markdown, runbook_markdown(runs))
    return {
        "incident": inc.id,
        "fields": fields,
        "severity": severity,
        "items": items,
        "resolved": inc.resolved_at is not None,
        "pir_due": fmt_ts(due) if due else None,
        "pir_due_label": runbook.pir.due.label,
        "late": bool(due and now > due),
        "participants": list(runbook.pir.participants),
        "runbook": inc.runbook,
        "runbooks_followed": runs,
        "markdown": markdown,
    }


def _insert_after_timeline(runbook: Runbook, markdown: str, section: str) -> str:
    """`section` before the heading that follows the template's timeline (else at the end)."""
    if not section:
        return markdown
    ids = [s.id for s in runbook.pir.sections]
    if "timeline" in ids and ids.index("timeline") + 1 < len(ids):
        following = runbook.pir.sections[ids.index("timeline") + 1]
        anchor = f"\n## {following.heading}\n"
        if anchor in markdown:
            return markdown.replace(anchor, f"\n{section}{anchor}", 1)
    return markdown.rstrip("\n") + "\n\n" + section


def pir_for(
    state_dir: Path, ref: str | None, runbook: Runbook, *, out: Path | None = None
) -> dict[str, Any]:
    """The PIR of incident `ref` (INC-7 / 7; default: the only open one). With `out`, the
    Markdown is written there and the timeline records `pir_written`."""
    if not (state_dir / DB_NAME).exists():
        raise UsageError(f"no incidents yet in {state_dir}")
    with IncidentStore(state_dir, create=False) as store:
        inc = _pick(store, ref)
        events = store.timeline(inc.num)
        doc = build(runbook, inc, events)
        if out is not None:
            try:
                out.write_text(doc["markdown"], encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {out}: {exc.strerror}") from None
            store.mark_pir_written(inc.num, str(out))
            doc["written_to"] = str(out)
    return doc


def _pick(store: IncidentStore, ref: str | None) -> Incident:
    if ref:
        return store.resolve_ref(ref)
    pending, _ = store.pir_pending(limit=2)
    if len(pending) == 1:
        return pending[0]
    return store.resolve_ref(None)
