"""The runbook's words for an incident: messages, cadences, paging and escalation.

Everything numeric or textual comes from runbooks.yaml (severities' update cadence and paging,
escalation paths, contacts, channels, message templates); this module only fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from somactl.incident.store import Incident
from somactl.runbook.schema import Runbook
from somactl.runbook.templates import render_channel, render_template

WAR_ROOM_CHANNEL = "war-room"
DECLARATION = "declaration"
UPDATE = "update"
RESOLUTION = "resolution"


def hhmm(when: datetime) -> str:
    return when.strftime("%H:%M")


def duration_words(delta: timedelta) -> str:
    """`45 minutes`, `1 hour 5 minutes`, `2 days 3 hours` (the runbook's "Duration: 45 minutes")."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 1:
        secs = max(0, int(delta.total_seconds()))
        return f"{secs} second{'s' if secs != 1 else ''}"
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if mins and not days:
        parts.append(f"{mins} minute{'s' if mins != 1 else ''}")
    return " ".join(parts) or "0 minutes"


def update_cadence(runbook: Runbook, severity: str) -> timedelta | None:
    """How often this severity posts updates (None: the runbook sets no cadence)."""
    sev = runbook.severity(severity)
    if sev.updates is None or sev.updates.seconds is None:
        return None
    return timedelta(seconds=sev.updates.seconds)


def next_update_due(runbook: Runbook, severity: str, after: datetime) -> datetime | None:
    cadence = update_cadence(runbook, severity)
    return after + cadence if cadence else None


def war_room(runbook: Runbook, num: int) -> str:
    return render_channel(WAR_ROOM_CHANNEL, runbook=runbook, number=num)


def _fields(runbook: Runbook, inc: Incident) -> dict[str, Any]:
    return {
        "severity": inc.severity,
        "severity_name": runbook.severity(inc.severity).name,
        "title": inc.title,
        "impact": inc.impact,
        "assigned": inc.commander or _on_call_who(runbook),
        "war_room": war_room(runbook, inc.num),
        "status_page": runbook.communication.status_page,
        "service": inc.service or "",
        "incident_id": inc.id,
    }


def _on_call_who(runbook: Runbook) -> str:
    for lvl in runbook.escalation.on_call:
        if lvl.level == "primary":
            return lvl.who
    return "on-call"


def declaration_message(runbook: Runbook, inc: Incident) -> str:
    return render_template(DECLARATION, runbook=runbook, **_fields(runbook, inc))


def update_message(
    runbook: Runbook,
    inc: Incident,
    *,
    number: int,
    at: datetime,
    status: str,
    impact: str,
    actions: str,
    next_due: datetime | None,
) -> str:
    fields = _fields(runbook, inc)
    fields.update(
        number=number,
        time=hhmm(at),
        status=status.capitalize(),
        impact=impact,
        actions=actions or "-",
        next_time=hhmm(next_due) if next_due else "-",
    )
    return render_template(UPDATE, runbook=runbook, **fields)


def resolution_message(runbook: Runbook, inc: Incident, *, root_cause: str, fix: str) -> str:
    resolved = inc.resolved_at or inc.last_update_at or inc.declared_at
    fields = _fields(runbook, inc)
    fields.update(
        time=hhmm(resolved),
        root_cause=root_cause,
        fix=fix,
        duration=duration_words(resolved - inc.declared_at),
    )
    return render_template(RESOLUTION, runbook=runbook, **fields)


# --- paging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paging:
    page: bool  # trigger a PagerDuty alert at declaration
    roles: tuple[str, ...]  # contact ids paged: on-call, incident commander
    label: str  # the runbook's wording ("Page on-call immediately + Incident Commander")
    pagerduty_severity: str


def paging_for(runbook: Runbook, severity: str, *, override: bool | None = None) -> Paging:
    """Who the runbook pages for `severity` (override: --page / --no-page)."""
    sev = runbook.severity(severity)
    roles: list[str] = []
    on_call = _contact_for_level(runbook, "primary") or "on-call-engineer"
    if sev.paging.on_call or override:
        roles.append(on_call)
    if sev.paging.incident_commander:
        roles.append(_ic_contact(runbook))
    page = bool(roles) if override is None else override
    return Paging(
        page=page,
        roles=tuple(roles) if page else (),
        label=sev.paging.label,
        pagerduty_severity=sev.pagerduty_severity,
    )


def _contact_for_level(runbook: Runbook, level: str) -> str | None:
    for lvl in runbook.escalation.on_call:
        if lvl.level == level and lvl.contact:
            return lvl.contact
    return None


def _ic_contact(runbook: Runbook) -> str:
    for cid, contact in runbook.contacts.items():
        if contact.role.lower() == "incident commander":
            return cid
    return "incident-commander"


def contact_line(runbook: Runbook, contact_id: str) -> str:
    if contact_id not in runbook.contacts:
        return contact_id
    c = runbook.contacts[contact_id]
    who = str(c.primary) + (f", secondary {c.secondary}" if c.secondary else "")
    return f"{c.role}: {who}"


# --- escalation ---------------------------------------------------------------------------------


@dataclass
class EscalationStep:
    level: str  # primary, secondary, escalation, final, incident-commander, external id
    who: str
    why: str
    now: bool  # involve now (True) or later (False, with `at`)
    at: datetime | None = None
    contact: str | None = None
    page: bool = False  # somactl opens a PagerDuty alert for this one

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "who": self.who,
            "why": self.why,
            "now": self.now,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.at else None,
            "contact": self.contact,
            "page": self.page,
        }


@dataclass
class EscalationPlan:
    elapsed: timedelta
    steps: list[EscalationStep] = field(default_factory=list)

    @property
    def now(self) -> list[EscalationStep]:
        return [s for s in self.steps if s.now]

    @property
    def later(self) -> list[EscalationStep]:
        return [s for s in self.steps if not s.now]


SECURITY_LEAD_ROLE = "security lead"
SECURITY_EXTERNAL = ("legal", "pr")  # ids starting with these are named for security incidents
CUSTOMER_EXTERNAL = ("customer",)


def escalation_plan(runbook: Runbook, inc: Incident, now: datetime) -> EscalationPlan:
    """Who to involve now, from the runbook's escalation paths and the time since declaration.

    - on-call levels in order: the primary always; the secondary while nobody acknowledged;
      a level with `after` once that much time has passed (else listed for later, with when);
      the final level once the timed level is due, for severities that page the IC (major
      incidents), else later;
    - the incident-commander rule for the severity, when no commander is assigned;
    - external escalations: legal and PR for a security incident (and the security lead is
      paged), customer success for severities that page the IC (customer impact).
    """
    elapsed = now - inc.declared_at
    plan = EscalationPlan(elapsed=elapsed)
    sev = runbook.severity(inc.severity)
    major = sev.paging.incident_commander
    timed_due = False
    last_after: datetime | None = None
    for lvl in runbook.escalation.on_call:
        who = lvl.who + (f" ({contact_line(runbook, lvl.contact)})" if lvl.contact else "")
        if lvl.level == "primary":
            plan.steps.append(
                EscalationStep(lvl.level, who, "first responder", True, contact=lvl.contact)
            )
        elif lvl.level == "secondary":
            if inc.acknowledged_at is None:
                plan.steps.append(
                    EscalationStep(
                        lvl.level, who, "nobody has acknowledged yet", True, contact=lvl.contact
                    )
                )
        elif lvl.after is not None and lvl.after.seconds is not None:
            when = inc.declared_at + timedelta(seconds=lvl.after.seconds)
            last_after = when
            due = now >= when
            timed_due = timed_due or due
            why = f"{lvl.after.label} ({'due' if due else 'not yet'}; "
            why += f"{int(elapsed.total_seconds() // 60)} min since declared)"
            plan.steps.append(
                EscalationStep(lvl.level, who, why, due, at=when, contact=lvl.contact)
            )
        else:
            now_ = timed_due and major
            why = (
                "the escalation level is due and this is a major incident"
                if now_
                else "if the escalation level cannot resolve it"
            )
            plan.steps.append(
                EscalationStep(
                    lvl.level, who, why, now_, at=None if now_ else last_after, contact=lvl.contact
                )
            )
    ic = runbook.ic_rule(inc.severity)
    if ic is not None and not inc.commander:
        plan.steps.append(
            EscalationStep(
                "incident-commander",
                ic.who,
                "no incident commander assigned" + ("" if not ic.self_ic else " (self-IC allowed)"),
                True,
                contact=_ic_contact(runbook),
            )
        )
    if inc.is_security:
        for cid, contact in runbook.contacts.items():
            if contact.role.lower() == SECURITY_LEAD_ROLE:
                plan.steps.append(
                    EscalationStep(
                        "security-lead",
                        contact_line(runbook, cid),
                        "security incident: page the Security Lead immediately",
                        True,
                        contact=cid,
                        page=True,
                    )
                )
    for ext in runbook.escalation.external:
        if inc.is_security and ext.id.startswith(SECURITY_EXTERNAL):
            plan.steps.append(
                EscalationStep(ext.id, ext.who, f"security incident: {ext.when}", True)
            )
        elif major and ext.id.startswith(CUSTOMER_EXTERNAL):
            plan.steps.append(EscalationStep(ext.id, ext.who, f"{inc.severity}: {ext.when}", True))
    return plan


def escalation_message(runbook: Runbook, inc: Incident, plan: EscalationPlan) -> str:
    lines = [
        f"ESCALATION - {inc.id} ({inc.severity}) {inc.title}",
        f"{int(plan.elapsed.total_seconds() // 60)} min since declared; "
        f"war room {war_room(runbook, inc.num)}",
        "Involve now:",
    ]
    lines += [f"- {s.who}: {s.why}" for s in plan.now]
    if plan.later:
        lines.append("Later:")
        lines += [
            f"- {s.who}: {s.why}" + (f" (at {hhmm(s.at)} UTC)" if s.at else "") for s in plan.later
        ]
    return "\n".join(lines)
