"""Incident operations the commands call: each records first, then notifies, then reports.

Order for every operation that tells the outside world (declare, update, severity, ack, escalate,
resolve):
1. the audit journal must be writable (AuditUnavailableError, exit 8, before anything);
2. the change is committed to the store with its timeline event (a crash after this point never
   loses the incident);
3. an `incident.notify` intent goes to the journal, the sinks are called (concurrently, within
   the command's deadline), each sink's result is put on the timeline and the journal's result
   record closes the intent.
A failing sink never undoes step 2: the operation reports every sink's result and the caller
exits 9. `dry_run` performs none of the writes and sends nothing: it shows the payloads.

A declaration for a service also puts the actions the audit journal holds on that service from
the runbook's `defaults.before_declaration_minutes` (60) before it (responders often mitigate
first and declare when that did not help) on the new incident's timeline, with their own times,
marked "before declaration".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from somactl.core.deadline import Deadline
from somactl.core.errors import UsageError
from somactl.incident import messages as msg
from somactl.incident.audit import AuditJournal, Outcome
from somactl.incident.notify import (
    Notice,
    Page,
    PagerDutySink,
    Sink,
    SinkResult,
    SlackSink,
    StatuspageSink,
    dispatch,
)
from somactl.incident.store import (
    OPEN_STATUSES,
    EarlierEvent,
    Incident,
    IncidentStore,
    crash_point,
    default_actor,
    fmt_ts,
    parse_ts,
    utcnow,
)
from somactl.runbook.schema import Runbook

if TYPE_CHECKING:
    from somactl.config.settings import Settings

# How far back a declaration looks in the audit journal for actions on its service. An hour
# covers "mitigated, watched, then declared" without pulling in the previous, unrelated change;
# a constant until runbooks.yaml carries it.


@dataclass
class IncidentEnv:
    """Everything an operation needs: where, which runbook, which sinks, how long."""

    state_dir: Path
    runbook: Runbook
    sinks: list[Sink]
    deadline: Deadline
    actor: str = field(default_factory=default_actor)
    dry_run: bool = False
    clock: Callable[[], datetime] = utcnow
    skipped_sinks: list[str] = field(default_factory=list)  # configured but incomplete

    def store(self, *, create: bool = True) -> IncidentStore:
        return IncidentStore(self.state_dir, create=create)

    def journal(self) -> AuditJournal:
        return AuditJournal(self.state_dir, actor=self.actor)


def sinks_from_settings(settings: Settings) -> tuple[list[Sink], list[str]]:
    """The configured sinks (secrets read now, registered for redaction) and notes on any that
    are half-configured (e.g. a Statuspage key without a page id)."""
    sinks: list[Sink] = []
    notes: list[str] = []
    webhook = settings.secret("slack.webhook")
    if webhook:
        sinks.append(SlackSink(webhook))
    key = settings.secret("pagerduty.routing_key")
    if key:
        sinks.append(PagerDutySink(settings.get("pagerduty.url") or "", key))
    sp_key = settings.secret("statuspage.api_key")
    page_id = settings.get("statuspage.page_id")
    if sp_key and page_id:
        sinks.append(StatuspageSink(settings.get("statuspage.url") or "", page_id, sp_key))
    elif sp_key or page_id:
        notes.append("statuspage: needs both statuspage.page_id and the statuspage.api_key secret")
    return sinks, notes


def state_dir_of(settings: Settings) -> Path:
    value = settings.get("state_dir")
    if not value:
        raise UsageError("state_dir is not set", "set SOMACTL_STATE_DIR")
    return Path(os.path.expanduser(value))


@dataclass
class OpResult:
    """What an operation did: the incident, the message sent, each sink's result."""

    incident: dict[str, Any]
    message: str = ""
    sinks: list[SinkResult] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SinkResult]:
        return [s for s in self.sinks if not s.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "message": self.message,
            "sinks": [s.to_dict() for s in self.sinks],
            "dry_run": self.dry_run,
            "notes": self.notes,
            **self.extra,
        }


# --- shared plumbing ----------------------------------------------------------------------------


def _preview(num: int, **over: Any) -> Incident:
    """An incident as it would be (dry runs: nothing is written)."""
    now = utcnow()
    base: dict[str, Any] = {
        "num": num,
        "severity": "P2",
        "title": "",
        "impact": "",
        "service": None,
        "category": None,
        "status": "declared",
        "commander": None,
        "responders": (),
        "declared_at": now,
        "acknowledged_at": None,
        "resolved_at": None,
        "last_update_at": now,
        "next_update_due": None,
        "update_count": 0,
        "root_cause": None,
        "fix": None,
        "runbook": None,
        "statuspage_id": None,
        "pagerduty_keys": (),
        "pir_written_at": None,
        "pir_path": None,
    }
    base.update(over)
    return Incident(**base)


def _notify(env: IncidentEnv, store: IncidentStore | None, notice: Notice) -> list[SinkResult]:
    """Send `notice` to the sinks; record keys, results and the journal entry (not in dry run)."""
    if env.dry_run or store is None:
        return dispatch(env.sinks, notice, env.deadline, dry_run=True)
    inc = notice.incident
    preps = [(s, s.prepare(notice)) for s in env.sinks]
    planned = [
        {
            "sink": p.sink,
            "action": p.action,
            "method": p.method,
            "url": p.shown_url,
            "dedup_key": p.dedup_key,
        }
        for _s, ps in preps
        for p in ps
    ]
    if not planned:
        return []
    # PagerDuty keys are stored before the trigger leaves, so a later resolve always knows them
    for p in (p for _s, ps in preps for p in ps):
        if p.sink == "pagerduty" and p.action == "trigger" and p.dedup_key:
            store.add_pagerduty_key(inc.num, p.dedup_key)
    journal = env.journal()
    with journal.action(
        "incident.notify",
        inc.id,
        {"event": notice.event, "requests": planned},
        incident=inc.id,
        timeline=False,
    ) as rec:
        crash_point(f"{notice.event}:before-send")
        results = dispatch(env.sinks, notice, env.deadline)
        crash_point(f"{notice.event}:sent")
        for res in results:
            _record_sink(store, inc, res, notice, env.actor)
        outcome: Outcome = (
            "ok"
            if all(r.ok for r in results)
            else "unknown"
            if all(r.ok or r.status == "unknown" for r in results)
            else "failed"
        )
        rec.result(outcome, {"sinks": [r.to_dict() for r in results]})
    return results


def _record_sink(
    store: IncidentStore, inc: Incident, res: SinkResult, notice: Notice, actor: str
) -> None:
    details = res.to_dict()
    store.append(
        inc.num,
        "notified",
        f"{res.sink} {res.action}: {res.status} - {res.message}",
        details,
        actor=actor,
    )
    if res.sink == "statuspage" and res.ok and res.data.get("statuspage_id"):
        store.set_statuspage_id(inc.num, str(res.data["statuspage_id"]))
    if res.sink == "pagerduty" and res.action == "trigger" and res.ok:
        page = next((p for p in notice.pages if p.dedup_key == res.dedup_key), None)
        roles = ", ".join(page.roles) if page else ""
        store.append(
            inc.num,
            "paged",
            f"Paged via PagerDuty ({roles or 'on-call'})",
            {
                "dedup_key": res.dedup_key,
                "roles": list(page.roles) if page else [],
                "severity": notice.pagerduty_severity,
            },
            actor=actor,
        )


def _earlier_actions(
    env: IncidentEnv, service: str | None, now: datetime
) -> tuple[list[dict[str, Any]], list[EarlierEvent], list[str]]:
    """The journal's actions on `service` in the runbook's before-declaration window: as
    reported, as timeline events, and a note if the journal could not be read."""
    if service is None:
        return [], [], []
    try:
        window = timedelta(minutes=env.runbook.defaults.before_declaration_minutes)
        found = env.journal().actions_between(now - window, now, service=service)
    except OSError as exc:
        return [], [], [f"actions before declaration not added: audit journal: {exc.strerror}"]
    events = sorted((_earlier_event(a) for a in found), key=lambda e: e.at)
    shown = [
        {
            "at": fmt_ts(e.at),
            "kind": e.details["kind"],
            "target": e.details["target"],
            "outcome": e.details["outcome"],
            "actor": e.actor,
            "event_id": e.details["event_id"],
        }
        for e in events
    ]
    return shown, events, []


def _earlier_event(action: dict[str, Any]) -> EarlierEvent:
    """One journaled action as a timeline event: `action_applied` (at its result's time) once it
    ended, `action_planned` while it still runs (its result then reaches the new incident)."""
    end = action.get("result") or {}
    outcome = str(action["outcome"])
    what = f"{action.get('kind')} {action.get('target')}"
    details: dict[str, Any] = {
        "before_declaration": True,
        "event_id": action.get("event_id"),
        "kind": action.get("kind"),
        "target": action.get("target"),
        "outcome": outcome,
        "journal_seq": action.get("seq"),
    }
    at = parse_ts(end.get("ts") or action.get("ts")) or utcnow()
    actor = str(action.get("actor") or "unknown")
    if outcome == "running":
        details["plan"] = action.get("plan") or {}
        return EarlierEvent(
            at, "action_planned", actor, f"before declaration: planned: {what}", details
        )
    summary = f"before declaration: {what}: {outcome}"
    if outcome == "aborted":
        summary += f" ({end.get('reason')})"
    elif not end:
        summary += " (no result recorded)"
    details["details"] = end.get("details") or {}
    return EarlierEvent(at, "action_applied", actor, summary, details)


def _links(runbook: Runbook) -> tuple[tuple[str, str], ...]:
    return (("Status page", runbook.communication.status_page),)


# --- operations ---------------------------------------------------------------------------------


def declare(
    env: IncidentEnv,
    *,
    severity: str,
    title: str,
    impact: str,
    service: str | None = None,
    commander: str | None = None,
    security: bool = False,
    page: bool | None = None,
) -> OpResult:
    """Record a new incident, then announce it (declaration message, page, status page)."""
    severity = severity.upper()
    env.runbook.severity(severity)  # unknown level -> usage error listing the known ones
    if service is not None:
        env.runbook.service(service)
    if not title.strip() or not impact.strip():
        raise UsageError("--title and --impact must not be empty")
    paging = msg.paging_for(env.runbook, severity, override=page)
    category = "security" if security else None
    now = env.clock()
    earlier, earlier_events, earlier_notes = _earlier_actions(env, service, now)
    if env.dry_run:
        num = _peek_next_num(env.state_dir)
        inc = _preview(
            num,
            severity=severity,
            title=title,
            impact=impact,
            service=service,
            commander=commander,
            category=category,
            next_update_due=msg.next_update_due(env.runbook, severity, now),
        )
        store = None
    else:
        env.journal().check_writable()
        store = env.store()
        inc = store.declare(
            severity=severity,
            title=title,
            impact=impact,
            service=service,
            commander=commander,
            category=category,
            next_update_due=msg.next_update_due(env.runbook, severity, now),
            actor=env.actor,
            now=now,
            details={"paging": paging.label},
            earlier=earlier_events,
        )
    try:
        text = msg.declaration_message(env.runbook, inc)
        pages: tuple[Page, ...] = ()
        if paging.page:
            who = " + ".join(paging.roles) or "on-call"
            pages = (
                Page(
                    inc.id,
                    paging.roles,
                    f"[{inc.severity}] {inc.title} - {inc.impact} (page: {who})",
                ),
            )
        notice = Notice(
            "declare",
            inc,
            text,
            f"INCIDENT DECLARED - {inc.severity}: {inc.title}",
            pagerduty_severity=paging.pagerduty_severity,
            pages=pages,
            links=_links(env.runbook),
            details={"war_room": msg.war_room(env.runbook, inc.num), "paging": paging.label},
        )
        results = _notify(env, store, notice)
        final = store.get(inc.num) if store else inc
    finally:
        if store is not None:
            store.close()
    out = OpResult(
        final.to_dict(),
        text,
        results,
        dry_run=env.dry_run,
        notes=[*env.skipped_sinks, *earlier_notes],
    )
    out.incident["war_room"] = msg.war_room(env.runbook, final.num)
    out.extra["before_declaration"] = earlier
    out.extra["before_declaration_window"] = (
        f"{env.runbook.defaults.before_declaration_minutes} minutes"
    )
    out.extra["paging"] = {
        "page": paging.page,
        "roles": list(paging.roles),
        "label": paging.label,
        "pagerduty_severity": paging.pagerduty_severity,
    }
    return out


def _peek_next_num(state_dir: Path) -> int:
    """The id the next declaration would get (dry runs: read only, never creates the store)."""
    if not (state_dir / "incidents.db").exists():
        return 1
    with IncidentStore(state_dir, create=False) as st:
        return st.next_num()


def _load(env: IncidentEnv, ref: str | None) -> tuple[IncidentStore, Incident]:
    if not (env.state_dir / "incidents.db").exists():
        raise UsageError(
            f"no incidents yet in {env.state_dir}", "declare one with `somactl incident declare`"
        )
    store = env.store()
    try:
        return store, store.resolve_ref(ref)
    except BaseException:
        store.close()
        raise


def update(
    env: IncidentEnv,
    ref: str | None,
    *,
    status: str | None,
    impact: str | None,
    actions: str | None,
) -> OpResult:
    """Post "Update #N - HH:MM UTC ... Next update: HH:MM UTC" (next from the cadence).

    `status` None keeps the current one (a just-declared incident becomes investigating).
    """
    if status is not None:
        status = status.lower()
        if status not in OPEN_STATUSES[1:]:
            raise UsageError(
                f"--status must be one of {', '.join(OPEN_STATUSES[1:])}, not {status!r}",
                "to resolve, use `somactl incident resolve --root-cause ... --fix ...`",
            )
    if not env.dry_run:
        env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        if not inc.is_open:
            raise UsageError(f"{inc.id} is resolved", "declare a new incident instead")
        if status is None:
            status = "investigating" if inc.status == "declared" else inc.status
        now = env.clock()
        due = msg.next_update_due(env.runbook, inc.severity, now)
        number = inc.update_count + 1
        preview = replace(inc, status=status, impact=impact or inc.impact)
        text = msg.update_message(
            env.runbook,
            preview,
            number=number,
            at=now,
            status=status,
            impact=impact or inc.impact,
            actions=actions or "",
            next_due=due,
        )
        if env.dry_run:
            target = preview
        else:
            target, number = store.post_update(
                inc.num,
                status=status,
                impact=impact,
                actions=actions,
                next_update_due=due,
                message=text,
                actor=env.actor,
                now=now,
            )
        sev = env.runbook.severity(inc.severity)
        notice = Notice(
            "update",
            target,
            text,
            f"{inc.id} update #{number}",
            pagerduty_severity=sev.pagerduty_severity,
        )
        results = _notify(env, None if env.dry_run else store, notice)
        final = target if env.dry_run else store.get(inc.num)
    finally:
        store.close()
    out = OpResult(final.to_dict(), text, results, dry_run=env.dry_run, notes=env.skipped_sinks)
    out.extra["update"] = number
    out.extra["next_update_due"] = fmt_ts(due) if due else None
    return out


def resolve(
    env: IncidentEnv,
    ref: str | None,
    *,
    root_cause: str,
    fix: str,
    runbook_name: str | None = None,
) -> OpResult:
    """Resolve: the runbook's resolution message with the duration; PagerDuty resolve (same
    dedup keys); the status page incident resolved."""
    if not root_cause.strip() or not fix.strip():
        raise UsageError("--root-cause and --fix must not be empty")
    if runbook_name is not None:
        env.runbook.scenario(runbook_name)
    if not env.dry_run:
        env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        if not inc.is_open:
            raise UsageError(f"{inc.id} is already resolved")
        now = env.clock()
        preview = replace(inc, status="resolved", resolved_at=now, root_cause=root_cause, fix=fix)
        text = msg.resolution_message(env.runbook, preview, root_cause=root_cause, fix=fix)
        target = (
            preview
            if env.dry_run
            else store.resolve(
                inc.num,
                root_cause=root_cause,
                fix=fix,
                runbook=runbook_name,
                message=text,
                actor=env.actor,
                now=now,
            )
        )
        sev = env.runbook.severity(inc.severity)
        notice = Notice(
            "resolve",
            target,
            text,
            f"RESOLVED - {inc.id}",
            pagerduty_severity=sev.pagerduty_severity,
        )
        results = _notify(env, None if env.dry_run else store, notice)
        final = target if env.dry_run else store.get(inc.num)
    finally:
        store.close()
    out = OpResult(final.to_dict(), text, results, dry_run=env.dry_run, notes=env.skipped_sinks)
    out.extra["duration"] = msg.duration_words(final.duration())
    out.extra["duration_seconds"] = int(final.duration().total_seconds())
    if env.runbook.pir.due.seconds is not None and final.resolved_at:
        out.extra["pir_due"] = fmt_ts(
            final.resolved_at + timedelta(seconds=env.runbook.pir.due.seconds)
        )
    return out


def acknowledge(env: IncidentEnv, ref: str | None) -> OpResult:
    """Acknowledge: recorded, and PagerDuty acknowledge with the incident's dedup key(s)."""
    if not env.dry_run:
        env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        target = (
            inc if env.dry_run else store.acknowledge(inc.num, actor=env.actor, now=env.clock())
        )
        notice = Notice(
            "acknowledge", target, f"{inc.id} acknowledged by {env.actor}", f"{inc.id} acknowledged"
        )
        results = _notify(env, None if env.dry_run else store, notice)
        final = target if env.dry_run else store.get(inc.num)
    finally:
        store.close()
    return OpResult(
        final.to_dict(), notice.text, results, dry_run=env.dry_run, notes=env.skipped_sinks
    )


def change_severity(
    env: IncidentEnv, ref: str | None, severity: str, *, reason: str | None = None
) -> OpResult:
    """Re-classify. Moving to a severity that pages opens the page now if none was sent."""
    severity = severity.upper()
    env.runbook.severity(severity)
    if not env.dry_run:
        env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        if not inc.is_open:
            raise UsageError(f"{inc.id} is resolved")
        if inc.severity == severity:
            raise UsageError(f"{inc.id} is already {severity}")
        now = env.clock()
        base = inc.last_update_at or inc.declared_at
        due = msg.next_update_due(env.runbook, severity, base)
        if env.dry_run:
            target = replace(inc, severity=severity)
        else:
            target, _old = store.change_severity(
                inc.num, severity, reason=reason, next_update_due=due, actor=env.actor, now=now
            )
        paging = msg.paging_for(env.runbook, severity)
        pages: tuple[Page, ...] = ()
        if paging.page and inc.id not in inc.pagerduty_keys:
            pages = (
                Page(
                    inc.id,
                    paging.roles,
                    f"[{severity}] {inc.title} - {inc.impact} (re-classified from {inc.severity})",
                ),
            )
        text = (
            f"SEVERITY CHANGED - {inc.id}: {inc.severity} -> {severity}"
            + (f"\nReason: {reason}" if reason else "")
            + f"\nWar room: {msg.war_room(env.runbook, inc.num)}"
        )
        notice = Notice(
            "severity",
            target,
            text,
            f"{inc.id} now {severity}",
            pagerduty_severity=paging.pagerduty_severity,
            pages=pages,
            links=_links(env.runbook),
        )
        results = _notify(env, None if env.dry_run else store, notice)
        final = target if env.dry_run else store.get(inc.num)
    finally:
        store.close()
    out = OpResult(final.to_dict(), text, results, dry_run=env.dry_run, notes=env.skipped_sinks)
    out.extra["from"] = inc.severity
    out.extra["to"] = severity
    return out


def escalate(env: IncidentEnv, ref: str | None, *, security: bool = False) -> OpResult:
    """Who to involve now (runbook escalation paths x elapsed time); pages the security lead
    for a security incident; posts the escalation to the sinks; recorded as `escalated`."""
    if not env.dry_run:
        env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        if security and not inc.is_security and not env.dry_run:
            inc = store.set_category(inc.num, "security", actor=env.actor)
        elif security:
            inc = replace(inc, category="security")
        now = env.clock()
        plan = msg.escalation_plan(env.runbook, inc, now)
        text = msg.escalation_message(env.runbook, inc, plan)
        pages = tuple(
            Page(
                f"{inc.id}-{s.contact}",
                (s.contact,),
                f"[{inc.severity}] {inc.title}: {s.why} ({s.who})",
            )
            for s in plan.now
            if s.page and s.contact
        )
        if not env.dry_run:
            store.append(
                inc.num,
                "escalated",
                "Escalation: " + "; ".join(s.who.split(" (")[0] for s in plan.now),
                {
                    "now": [s.to_dict() for s in plan.now],
                    "later": [s.to_dict() for s in plan.later],
                    "elapsed_seconds": int(plan.elapsed.total_seconds()),
                },
                actor=env.actor,
                now=now,
            )
        sev = env.runbook.severity(inc.severity)
        notice = Notice(
            "escalate",
            inc,
            text,
            f"{inc.id} escalation",
            pagerduty_severity=sev.pagerduty_severity,
            pages=pages,
            links=_links(env.runbook),
        )
        results = _notify(env, None if env.dry_run else store, notice)
        final = inc if env.dry_run else store.get(inc.num)
    finally:
        store.close()
    out = OpResult(final.to_dict(), text, results, dry_run=env.dry_run, notes=env.skipped_sinks)
    out.extra["elapsed_seconds"] = int(plan.elapsed.total_seconds())
    out.extra["now"] = [s.to_dict() for s in plan.now]
    out.extra["later"] = [s.to_dict() for s in plan.later]
    return out


def note(env: IncidentEnv, ref: str | None, text: str) -> OpResult:
    if not text.strip():
        raise UsageError("the note is empty")
    env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        store.append(inc.num, "note", text, {}, actor=env.actor, now=env.clock())
        final = store.get(inc.num)
    finally:
        store.close()
    return OpResult(final.to_dict(), text)


def assign(
    env: IncidentEnv, ref: str | None, *, commander: str | None, responders: Sequence[str]
) -> OpResult:
    if not commander and not responders:
        raise UsageError("give --commander and/or --responder")
    for handle in [commander or "", *responders]:
        if handle and not handle.startswith("@"):
            raise UsageError(f"{handle!r}: people are Slack handles like @alice")
    env.journal().check_writable()
    store, inc = _load(env, ref)
    try:
        final = store.assign(
            inc.num, commander=commander, responders=responders, actor=env.actor, now=env.clock()
        )
    finally:
        store.close()
    return OpResult(final.to_dict(), "")
