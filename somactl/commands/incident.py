"""somactl incident: declare, update, escalate and resolve an incident from the terminal."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.core.result import Result
from somactl.ui.cli import options, runbook_for
from somactl.ui.output import emit, exit_with, say, simple_table, warn

if TYPE_CHECKING:
    from somactl.incident.manage import IncidentEnv, OpResult

HELP = "Run the incident: declare, update, status, escalate, resolve."

EPILOG = """\b
Examples:
  somactl incident declare -s P0 --title "Gateway API Down" \\
      --impact "All API requests failing (100% error rate)" --service gateway-api
  somactl incident update --status investigating --impact "80% of requests fail" \\
      --actions "Rolled back to v1.2.3, monitoring recovery"
  somactl incident status
  somactl incident severity P0 INC-7 --reason "all regions affected"
  somactl incident escalate
  somactl incident resolve --root-cause "DB connection pool exhaustion" \\
      --fix "Increased max_connections from 100 to 200"
  somactl pir INC-7 --out pir.md

\b
INCIDENT is INC-7 or 7; when only one incident is open it is the default.
Sinks (each optional; see `somactl config --help`): Slack incoming webhook
(SOMACTL_SLACK_WEBHOOK), PagerDuty Events v2 (SOMACTL_PAGERDUTY_ROUTING_KEY),
Statuspage (SOMACTL_STATUSPAGE_PAGE_ID + SOMACTL_STATUSPAGE_API_KEY).
The incident is recorded first; a failing sink is reported and exits 9.
Store and audit journal: $SOMACTL_STATE_DIR (incidents.db, audit.jsonl)."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """Run the incident: declare, update, status, escalate, resolve."""


# --- plumbing -----------------------------------------------------------------------------------


def _state_dir(opts: GlobalOptions) -> Any:
    from somactl.incident.manage import state_dir_of
    from somactl.ui.settings import settings_for

    return state_dir_of(settings_for(opts))


def _env(opts: GlobalOptions, *, dry_run: bool = False, sinks: bool = True) -> IncidentEnv:
    from somactl.core.deadline import Deadline
    from somactl.incident.manage import IncidentEnv, sinks_from_settings, state_dir_of
    from somactl.ui.settings import settings_for

    settings = settings_for(opts)
    found, notes = sinks_from_settings(settings) if sinks else ([], [])
    return IncidentEnv(
        state_dir=state_dir_of(settings),
        runbook=runbook_for(opts),
        sinks=found,
        deadline=Deadline(opts.timeout),
        dry_run=dry_run,
        skipped_sinks=notes,
    )


def _complete_incident(ctx: typer.Context, incomplete: str) -> list[str]:
    import os
    from pathlib import Path

    from somactl.config.settings import default_state_dir
    from somactl.incident.store import completion_ids

    state = os.environ.get("SOMACTL_STATE_DIR") or default_state_dir(os.environ)
    return [i for i in completion_ids(Path(state)) if i.startswith(incomplete.upper())]


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    from somactl.runbook.loader import names_for_completion

    path = ctx.find_root().params.get("runbooks")
    return [n for n in names_for_completion("services", path) if n.startswith(incomplete)]


def _complete_level(incomplete: str) -> list[str]:
    return [p for p in ("P0", "P1", "P2", "P3", "P4") if p.startswith(incomplete.upper())]


IncidentArg = Annotated[
    str | None,
    typer.Argument(
        help="INC-7 or 7 (default: the only open incident).",
        autocompletion=_complete_incident,
        show_default=False,
        metavar="INCIDENT",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print each sink's payload (secrets masked); send nothing."),
]

_MARK = {"sent": "ok", "dry-run": "dry-run", "failed": "FAILED", "unknown": "UNKNOWN"}


def _render_op(opts: GlobalOptions, d: dict[str, Any]) -> str:
    lines = [d["message"]] if d.get("message") else []
    for s in d.get("sinks", []):
        if s["status"] == "dry-run":
            lines.append("")
            lines.append(f"--- {s['sink']} {s['action']} (dry run: not sent)")
            lines.append(json.dumps(s.get("request"), indent=2, ensure_ascii=False))
        else:
            lines.append(
                f"{s['sink']:<11} {s['action']:<12} {_MARK.get(s['status'], s['status'])}"
                f"  {s['message']}"
            )
    if not d.get("sinks") and d.get("message") and not d.get("dry_run"):
        lines.append("(no sinks configured: recorded locally only)")
        if (d.get("paging") or {}).get("page"):
            lines.append(
                "PAGE NOT SENT: this severity pages the on-call and the incident commander, "
                "and no PagerDuty routing key is configured: page them by hand"
            )
    earlier = d.get("before_declaration") or []
    if earlier:
        service = (d.get("incident") or {}).get("service")
        n = len(earlier)
        lines += [
            "",
            f"{n} action{'' if n == 1 else 's'} on {service} in the "
            f"{d['before_declaration_window']} before declaration "
            + ("would go" if d.get("dry_run") else "went")
            + " on the timeline:",
        ]
        lines += [
            f"  {a['at'][11:16]}  {a['kind']} {a['target']}: {a['outcome']} (by {a['actor']})"
            for a in earlier
        ]
    incident = d.get("incident")
    ref = incident.get("id") if isinstance(incident, dict) else incident
    if ref and d.get("dry_run"):
        lines.insert(0, f"{ref} (dry run: nothing recorded, nothing sent)")
    elif ref:
        lines.insert(
            0, f"{ref} ({incident.get('status', '')})" if isinstance(incident, dict) else str(ref)
        )
    return "\n".join(lines)


def _finish(opts: GlobalOptions, command: str, op: OpResult) -> None:
    for note in op.notes:
        warn(note)
    if opts.debug:
        for s in op.sinks:
            say(
                f"debug: {s.sink} {s.action}: {s.status} http={s.http_status} attempts={s.attempts}"
            )
    failed = op.failed
    result = Result(
        command,
        op.to_dict(),
        exit_code=ExitCode.PARTIAL if failed else ExitCode.OK,
        status="partial" if failed else "ok",
        errors=[{"message": s.message, "sink": s.sink, "action": s.action} for s in failed],
    )
    exit_with(emit(opts, result, lambda d: _render_op(opts, d)))


# --- commands -----------------------------------------------------------------------------------


@app.command("declare")
def declare(
    ctx: typer.Context,
    severity: Annotated[
        str,
        typer.Option(
            "--severity",
            "-s",
            help="P0-P4 (see `somactl runbook severities`).",
            autocompletion=_complete_level,
        ),
    ],
    title: Annotated[str, typer.Option("--title", "-t", help="What is broken, in a few words.")],
    impact: Annotated[str, typer.Option("--impact", help="Who is affected and how.")],
    service: Annotated[
        str | None,
        typer.Option(
            "--service", help="The runbook service affected.", autocompletion=_complete_service
        ),
    ] = None,
    commander: Annotated[
        str | None, typer.Option("--commander", help="Incident commander (@handle).")
    ] = None,
    security: Annotated[
        bool,
        typer.Option(
            "--security",
            help="A security incident (pages the security lead on escalate; names legal and PR).",
        ),
    ] = False,
    page: Annotated[
        bool | None,
        typer.Option(
            "--page/--no-page",
            help="Force or suppress the PagerDuty page (default: the severity's paging).",
        ),
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Record a new incident and announce it (Slack, PagerDuty, status page).

    Example: somactl incident declare -s P1 --title "Redis unavailable" --impact "Sessions lost"
    """
    from somactl.incident import manage

    opts = options(ctx)
    if commander is not None and not commander.startswith("@"):
        raise typer.BadParameter("use a Slack handle like @alice", param_hint="--commander")
    op = manage.declare(
        _env(opts, dry_run=dry_run),
        severity=severity,
        title=title,
        impact=impact,
        service=service,
        commander=commander,
        security=security,
        page=page,
    )
    _finish(opts, "incident declare", op)


@app.command("update")
def update(
    ctx: typer.Context,
    incident: IncidentArg = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="investigating, identified or monitoring (default: unchanged; a just-declared "
            "incident becomes investigating).",
        ),
    ] = None,
    impact: Annotated[str | None, typer.Option("--impact", help="Current impact.")] = None,
    actions: Annotated[str | None, typer.Option("--actions", help="What is being done.")] = None,
    dry_run: DryRun = False,
) -> None:
    """Post a status update ("Update #N - HH:MM UTC ... Next update: HH:MM UTC").

    The next update time follows the severity's cadence in runbooks.yaml.
    Example: somactl incident update --status identified --actions "Rolled back to v1.2.3"
    """
    from somactl.incident import manage

    opts = options(ctx)
    op = manage.update(
        _env(opts, dry_run=dry_run), incident, status=status, impact=impact, actions=actions
    )
    _finish(opts, "incident update", op)


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    root_cause: Annotated[str, typer.Option("--root-cause", help="Why it happened.")],
    fix: Annotated[str, typer.Option("--fix", help="What fixed it.")],
    incident: IncidentArg = None,
    runbook: Annotated[
        str | None, typer.Option("--runbook", help="The runbook scenario that was followed.")
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Resolve: the resolution message with the duration; PagerDuty resolve; status page resolved.

    Example: somactl incident resolve INC-7 --root-cause "DB pool exhausted" --fix "max 200"
    """
    from somactl.incident import manage

    opts = options(ctx)
    op = manage.resolve(
        _env(opts, dry_run=dry_run), incident, root_cause=root_cause, fix=fix, runbook_name=runbook
    )
    _finish(opts, "incident resolve", op)


@app.command("ack")
def ack(ctx: typer.Context, incident: IncidentArg = None, dry_run: DryRun = False) -> None:
    """Acknowledge the incident (PagerDuty acknowledge with the same dedup_key).

    Example: somactl incident ack INC-7
    """
    from somactl.incident import manage

    opts = options(ctx)
    _finish(opts, "incident ack", manage.acknowledge(_env(opts, dry_run=dry_run), incident))


@app.command("severity")
def severity(
    ctx: typer.Context,
    level: Annotated[
        str,
        typer.Argument(
            help="The new severity, P0-P4.",
            autocompletion=_complete_level,
            show_default=False,
            metavar="LEVEL",
        ),
    ],
    incident: IncidentArg = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why it changed.")] = None,
    dry_run: DryRun = False,
    incident_option: Annotated[
        str | None,
        typer.Option(
            "--incident",
            hidden=True,  # deprecated: the incident is an argument, as in the other subcommands
            help="Deprecated: give INCIDENT as an argument.",
            autocompletion=_complete_incident,
        ),
    ] = None,
) -> None:
    """Re-classify the incident (recorded; pages when the new severity pages).

    \b
    Examples:
      somactl incident severity P1 INC-7 --reason "only EU traffic affected"
      somactl incident severity P0    (the only open incident)
    """
    from somactl.incident import manage
    from somactl.incident.store import SEVERITY_RE, parse_incident_ref

    opts = options(ctx)
    if incident and not SEVERITY_RE.match(level.upper()) and SEVERITY_RE.match(incident.upper()):
        level, incident = incident, level  # `severity INC-7 P1`: the incident first
    if incident_option is not None:
        if incident and parse_incident_ref(incident) != parse_incident_ref(incident_option):
            raise typer.BadParameter(
                f"the argument names {incident} and --incident {incident_option}; give one",
                param_hint="INCIDENT",
            )
        warn("--incident is deprecated: give the incident as an argument (severity P1 INC-7)")
        incident = incident or incident_option
    op = manage.change_severity(_env(opts, dry_run=dry_run), incident, level, reason=reason)
    _finish(opts, "incident severity", op)


@app.command("escalate")
def escalate(
    ctx: typer.Context,
    incident: IncidentArg = None,
    security: Annotated[
        bool, typer.Option("--security", help="Mark it a security incident first.")
    ] = False,
    dry_run: DryRun = False,
) -> None:
    """Who to involve now, from runbooks.yaml's escalation paths and the elapsed time.

    A security incident pages the security lead and names legal and PR.
    Example: somactl incident escalate --security
    """
    from somactl.incident import manage

    opts = options(ctx)
    op = manage.escalate(_env(opts, dry_run=dry_run), incident, security=security)
    _finish(opts, "incident escalate", op)


@app.command("note")
def note(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The note, e.g. what you just saw.")],
    incident: Annotated[
        str | None,
        typer.Option(
            "--incident",
            help="INC-7 or 7 (default: the only open one).",
            autocompletion=_complete_incident,
        ),
    ] = None,
) -> None:
    """Add a note to the incident's timeline.

    Example: somactl incident note "error rate falling since 14:20"
    """
    from somactl.incident import manage

    opts = options(ctx)
    op = manage.note(_env(opts, sinks=False), incident, text)
    exit_with(
        emit(
            opts,
            Result("incident note", op.to_dict()),
            lambda d: f"{d['incident']['id']}: note added",
        )
    )


@app.command("assign")
def assign(
    ctx: typer.Context,
    incident: IncidentArg = None,
    commander: Annotated[
        str | None, typer.Option("--commander", help="The incident commander (@handle).")
    ] = None,
    responder: Annotated[
        list[str] | None, typer.Option("--responder", help="A responder (@handle); repeatable.")
    ] = None,
) -> None:
    """Set the incident commander and add responders.

    Example: somactl incident assign --commander @alice --responder @bob
    """
    from somactl.incident import manage

    opts = options(ctx)
    op = manage.assign(
        _env(opts, sinks=False), incident, commander=commander, responders=responder or []
    )

    def table(d: dict[str, Any]) -> str:
        inc = d["incident"]
        return (
            f"{inc['id']}: commander {inc['commander'] or '-'}; responders "
            f"{', '.join(inc['responders']) or '-'}"
        )

    exit_with(emit(opts, Result("incident assign", op.to_dict()), table))


def _ago(seconds: int) -> str:
    from somactl.core.durations import human_duration

    return human_duration(seconds)


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Open incidents with time since declared; overdue updates flagged; reviews due.

    Updates are due at the severity's cadence (runbooks.yaml: P0 every 15 minutes, P1 every
    30, P2 hourly); reviews within 48 hours of resolution.
    Example: somactl incident status
    """
    from somactl.incident import views

    opts = options(ctx)
    data = views.status(_state_dir(opts), runbook_for(opts))
    for row in data["open"]:
        if row["overdue"]:
            warn(
                f"{row['id']} ({row['severity']}) UPDATE OVERDUE by "
                f"{_ago(row['overdue_seconds'])} ({row['update_cadence']})"
            )
    for row in data["pir"]:
        if row["late"]:
            warn(f"{row['id']} post-incident review LATE by {_ago(-row['seconds_left'])}")

    def table(d: dict[str, Any]) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        if not d["open"]:
            parts.append(Text("no open incidents"))
        else:
            tbl = Table(
                box=None,
                header_style="bold",
                pad_edge=False,
                title=f"open incidents ({len(d['open'])}, {d['overdue']} overdue)",
            )
            for col in ("ID", "SEV", "STATUS", "AGE", "COMMANDER", "NEXT UPDATE", "TITLE"):
                tbl.add_column(col)
            for r in d["open"]:
                if r["overdue"]:
                    nxt = Text(f"OVERDUE {_ago(r['overdue_seconds'])}", style="bold red")
                elif r["next_update_due"]:
                    nxt = Text(r["next_update_due"][11:16] + " UTC")
                else:
                    nxt = Text("-")
                tbl.add_row(
                    r["id"],
                    r["severity"],
                    r["status"],
                    _ago(r["age_seconds"]),
                    r["commander"] or "-",
                    nxt,
                    Text(r["title"]),
                )
            parts.append(tbl)
        if d["pir"]:
            more = d["pir_total"] - len(d["pir"])
            tbl = Table(
                box=None,
                header_style="bold",
                pad_edge=False,
                title=f"post-incident reviews pending ({d['pir_total']}; "
                f"{d['pir_due_label'].lower()})",
            )
            for col in ("ID", "SEV", "RESOLVED", "REVIEW", "TITLE"):
                tbl.add_column(col)
            for r in d["pir"]:
                due = (
                    Text(f"LATE {_ago(-r['seconds_left'])}", style="bold red")
                    if r["late"]
                    else Text(f"due in {_ago(r['seconds_left'])}", style="yellow")
                )
                tbl.add_row(
                    r["id"],
                    r["severity"],
                    r["resolved_at"][:16].replace("T", " "),
                    due,
                    Text(r["title"]),
                )
            parts.append(tbl)
            if more > 0:
                parts.append(Text(f"... and {more} more (somactl incident list)"))
        return Group(*parts)

    exit_with(emit(opts, Result("incident status", data), table))


@app.command("list")
def list_(
    ctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most N.")] = 50,
) -> None:
    """Incidents, newest first.

    Example: somactl incident list --open
    """
    from somactl.incident import views

    opts = options(ctx)
    rows = views.list_incidents(_state_dir(opts), include_resolved=not open_only, limit=limit)

    def table(d: list[dict[str, Any]]) -> Any:
        if not d:
            return "no incidents"
        return simple_table(
            ["ID", "SEV", "STATUS", "DECLARED", "SERVICE", "COMMANDER", "TITLE"],
            [
                [
                    r["id"],
                    r["severity"],
                    r["status"],
                    r["declared_at"][:16].replace("T", " "),
                    r["service"] or "-",
                    r["commander"] or "-",
                    r["title"],
                ]
                for r in d
            ],
        )

    exit_with(emit(opts, Result("incident list", rows), table))


@app.command("show")
def show(ctx: typer.Context, incident: IncidentArg = None) -> None:
    """One incident: fields, update cadence, last sink results, recent timeline.

    Example: somactl incident show INC-7
    """
    from somactl.incident import views

    opts = options(ctx)
    data = views.show(_state_dir(opts), incident, runbook_for(opts))

    def table(d: dict[str, Any]) -> str:
        lines = [
            f"{d['id']}  {d['severity']}  {d['status']}  {d['title']}",
            f"impact:     {d['impact']}",
            f"service:    {d['service'] or '-'}",
            f"commander:  {d['commander'] or '-'}   responders: "
            f"{', '.join(d['responders']) or '-'}",
            f"war room:   {d['war_room']}",
            f"declared:   {d['declared_at']}   duration: {d['duration']}",
        ]
        if d.get("acknowledged_at"):
            lines.append(f"acked:      {d['acknowledged_at']}")
        if d.get("resolved_at"):
            lines.append(f"resolved:   {d['resolved_at']}")
            lines.append(f"root cause: {d['root_cause']}")
            lines.append(f"fix:        {d['fix']}")
        upd = d.get("update")
        if upd and upd.get("due"):
            flag = "  OVERDUE" if upd["overdue"] else ""
            lines.append(
                f"updates:    {d['update_count']} posted; next due {upd['due']}"
                f" ({upd['cadence']}){flag}"
            )
        for s in d["sinks"]:
            lines.append(
                f"sink:       {s.get('sink')} {s.get('action')}: {s.get('status')} ({s.get('at')})"
            )
        lines.append(f"timeline:   {d['events']} events (somactl incident timeline {d['id']})")
        for e in d["recent"]:
            lines.append(f"  {e['at'][11:19]}  {e['kind']:<15} {e['summary']}")
        return "\n".join(lines)

    exit_with(emit(opts, Result("incident show", data), table))


@app.command("timeline")
def timeline(
    ctx: typer.Context,
    incident: IncidentArg = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only these event kinds; repeatable.")
    ] = None,
) -> None:
    """The incident's timeline: every declaration, update, check, action, page and note.

    Example: somactl -o json incident timeline INC-7 | jq '.data.events[] | .summary'
    """
    from somactl.incident import views
    from somactl.incident.store import EVENT_KINDS

    opts = options(ctx)
    for k in kind or []:
        if k not in EVENT_KINDS:
            raise typer.BadParameter(f"{k!r}; one of {', '.join(EVENT_KINDS)}", param_hint="--kind")
    data = views.timeline(_state_dir(opts), incident, kinds=kind)

    def table(d: dict[str, Any]) -> Any:
        rows: list[list[str]] = []
        day = ""
        for e in d["events"]:
            if e["at"][:10] != day:
                day = e["at"][:10]
                rows.append([day, "", "", ""])
            rows.append([e["at"][11:19], e["kind"], e["actor"], e["summary"]])
        return simple_table(
            ["TIME (UTC)", "KIND", "ACTOR", "SUMMARY"], rows, title=f"{d['incident']}: {d['title']}"
        )

    exit_with(emit(opts, Result("incident timeline", data), table))
