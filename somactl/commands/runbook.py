"""somactl runbook: runbooks.yaml as data (validate, show, severities, scenarios), and its
scenarios as guided runs (list, run)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from somactl.core.errors import UsageError
from somactl.core.options import GlobalOptions
from somactl.core.redact import redact
from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

if TYPE_CHECKING:
    from rich.console import RenderableType

    from somactl.runbook.schema import Runbook, Step

HELP = "The runbook as data and guided runs: validate, show, severities, list, run."

EPILOG = """\b
Examples:
  somactl runbook validate
  somactl runbook validate ./my-runbooks.yaml
  somactl runbook show services
  somactl -o json runbook show classification | jq '.data.rules[].id'
  somactl runbook severities
  somactl runbook scenarios
  somactl runbook list
  somactl runbook run gateway-api-down --plan
  somactl runbook run gateway-api-down
  somactl runbook run memory-leak orchestrator --skip 2='no profiler on these pods'
  somactl -o json runbook run gateway-api-down --yes | jq '.data.steps[].outcome'

The runbook is the shipped runbooks.yaml unless --runbooks PATH or SOMACTL_RUNBOOKS says
otherwise."""

# section name -> (runbooks.yaml key, what it holds)
SECTIONS: dict[str, tuple[str, str]] = {
    "severities": ("severities", "P0-P4: response targets, paging, update cadence"),
    "classification": ("classification", "signals and the rules that turn them into a level"),
    "services": ("services", "workloads and tool adapters, their jobs and health endpoints"),
    "queries": ("queries", "named PromQL queries with thresholds"),
    "checks": ("checks", "read-only investigation steps"),
    "actions": ("actions", "mitigations and their consent"),
    "patterns": ("mitigation_patterns", "section 4's mitigation patterns"),
    "scenarios": ("scenarios", "common incident scenarios, step by step"),
    "process": ("process", "the response process, detection to PIR"),
    "escalation": ("escalation", "on-call rotation, incident commander, external escalation"),
    "contacts": ("contacts", "emergency contacts"),
    "communication": ("communication", "channels, status page and message templates"),
    "pir": ("pir", "the post-incident review template"),
    "tools": ("tools", "tools and dashboards"),
    "references": ("references", "related runbooks"),
    "defaults": ("defaults", "where things are unless settings override them"),
}

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """The runbook as data and guided runs: validate, show, severities, list, run."""


def _load(opts: GlobalOptions, path: Path | None = None) -> tuple[Runbook, Path]:
    from somactl.runbook.loader import default_path, load_runbook

    where = path or opts.runbooks or default_path()
    return load_runbook(where), where


def _complete_section(incomplete: str) -> list[str]:
    return [name for name in SECTIONS if name.startswith(incomplete)]


@app.command("validate", short_help="Check runbooks.yaml strictly (exit 3 with file:line).")
def validate(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            help="File to check (default: --runbooks, SOMACTL_RUNBOOKS, the shipped one)."
        ),
    ] = None,
) -> None:
    """Check runbooks.yaml strictly: types, unknown keys, every cross reference.

    Exit 0 with a summary when valid; exit 3 with `file:line: key.path: message` when not.

    Example: somactl runbook validate ./runbooks.yaml
    """
    opts = options(ctx)
    opts.command = "runbook validate"
    runbook, where = _load(opts, path)
    counts = runbook.counts()
    data = {"path": str(where), "valid": True, "version": runbook.version, "counts": counts}

    def table(d: dict[str, Any]) -> str:
        c = d["counts"]
        return (
            f"ok: {d['path']}: {c['services']} services, {c['queries']} queries, "
            f"{c['scenarios']} scenarios, {c['rules']} rules "
            f"({c['signals']} signals, {c['checks']} checks, {c['actions']} actions)"
        )

    exit_with(emit(opts, Result("runbook validate", data), table))


@app.command("show", short_help="Show the runbook or one section of it.")
def show(
    ctx: typer.Context,
    section: Annotated[
        str | None,
        typer.Argument(
            help=f"One of: {', '.join(SECTIONS)}. None: a summary.",
            autocompletion=_complete_section,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show the runbook, or one section of it, as tables (or -o json|yaml data).

    Examples: somactl runbook show scenarios; somactl -o yaml runbook show contacts
    """
    opts = options(ctx)
    opts.command = "runbook show"
    if section is not None and section not in SECTIONS:
        raise UsageError(
            f"unknown section {section!r}", f"sections: {', '.join(SECTIONS)} (or none)"
        )
    runbook, where = _load(opts)
    if section is None:
        data: Any = {
            "path": str(where),
            "version": runbook.version,
            "title": runbook.title,
            "overview": runbook.overview,
            "counts": runbook.counts(),
            "sections": {name: about for name, (_, about) in SECTIONS.items()},
        }
        exit_with(emit(opts, Result("runbook show", data), _render_summary))
        return
    data = runbook.dump(SECTIONS[section][0])
    exit_with(emit(opts, Result("runbook show", data), lambda _d: _RENDER[section](runbook)))


@app.command("severities", short_help="The severity levels P0-P4 as a table.")
def severities(ctx: typer.Context) -> None:
    """The severity levels: response target, paging, incident commander, update cadence.

    Example: somactl runbook severities
    """
    opts = options(ctx)
    opts.command = "runbook severities"
    runbook, _ = _load(opts)
    rows = [runbook.severity_summary(level) for level in runbook.severities]
    exit_with(emit(opts, Result("runbook severities", rows), _severity_table))


@app.command("list", short_help="The scenarios you can run: id, title, steps, signals.")
def list_(ctx: typer.Context) -> None:
    """The scenarios `runbook run` walks: id, title, step count, the signals that suggest it.

    Example: somactl runbook list; then somactl runbook run gateway-api-down --plan
    """
    from somactl.ops.runbook_run import list_scenarios
    from somactl.ui.runbook_run import render_list

    opts = options(ctx)
    opts.command = "runbook list"
    exit_with(emit(opts, list_scenarios(opts), render_list))


@app.command(
    "run", short_help="Walk a scenario step by step: checks, actions (asked), manual steps."
)
def run(
    ctx: typer.Context,
    scenario: Annotated[
        str, typer.Argument(help="A scenario id (`somactl runbook list`).", show_default=False)
    ],
    service: Annotated[
        str | None,
        typer.Argument(help="The service (default: the scenario's own).", show_default=False),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Approve every action without a prompt.")
    ] = False,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            metavar="STEP[=REASON]",
            help="Skip a step (its number or check/action id), with an optional reason. "
            "Repeatable.",
        ),
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print the steps as somactl commands; run nothing.")
    ] = False,
    verify: Annotated[
        str,
        typer.Option(
            "--verify",
            metavar="DURATION",
            help="After each action, follow it and re-check the service this long (0: skip).",
        ),
    ] = "2m",
) -> None:
    """Walk a scenario of the runbook in order, recording each step on the open incident.

    \b
    - check step: runs the check and shows its finding;
    - action step: shows the plan built from live state and asks: type `yes` (or the
      target's name for high-impact actions) to apply, `skip` (you are asked why) or `stop`;
      --yes approves every action; --skip STEP skips one (scripts);
    - manual step (page the security lead, capture a heap dump...): shows the instructions
      and asks `done`, `skip` (with a reason) or `stop`; with nobody to ask it stays pending.

    Every outcome (executed, skipped + reason, failed + error, not applicable + why) goes on
    the open incident's timeline, and the post-incident review lists them. Without a
    terminal and without --yes, checks run but the first action is refused: the run stops
    there (exit 4), never skipping an action silently. The run ends with the service's state.

    Exit codes: 0 every step executed or skipped by you; 4 not confirmed (refused, or you
    stopped); 9 a step failed or a check could not run; 2 unknown scenario or service.

    Example: somactl runbook run gateway-api-down --plan
    """
    from somactl.core.durations import parse_duration

    opts = options(ctx)
    opts.command = "runbook run"
    if plan:
        from somactl.ops.runbook_run import plan as plan_steps
        from somactl.ui.runbook_run import render_plan

        exit_with(emit(opts, plan_steps(opts, scenario, service), render_plan))
        return
    from somactl.ui.runbook_run import render_run, run_runbook

    seconds = parse_duration(verify, option="--verify")
    result = run_runbook(opts, scenario, service, yes=yes, skips=skip or [], verify=seconds)
    exit_with(emit(opts, result, render_run))


@app.command("scenarios", short_help="The common incident scenarios.")
def scenarios(ctx: typer.Context) -> None:
    """The common incident scenarios (id, title, typical severity, steps).

    Example: somactl runbook scenarios; then somactl runbook show scenarios
    """
    opts = options(ctx)
    opts.command = "runbook scenarios"
    runbook, _ = _load(opts)
    rows = [
        {
            "id": sid,
            "title": sc.title,
            "severity": sc.severity,
            "service": sc.service,
            "steps": len(sc.steps),
            "match": sc.match.describe() if sc.match else None,
        }
        for sid, sc in runbook.scenarios.items()
    ]

    def table(d: list[dict[str, Any]]) -> RenderableType:
        return simple_table(
            ["ID", "TITLE", "SEVERITY", "SERVICE", "STEPS"],
            [[r["id"], r["title"], r["severity"], r["service"] or "-", r["steps"]] for r in d],
        )

    exit_with(emit(opts, Result("runbook scenarios", rows), table))


# -- renderers ---------------------------------------------------------------------------------


def simple_table(
    columns: list[str], rows: list[list[Any]], title: str | None = None
) -> RenderableType:
    """A borderless table whose first column (ids people copy) never wraps or truncates."""
    from rich.table import Table

    tbl = Table(title=title, box=None, header_style="bold", pad_edge=False, title_justify="left")
    for i, col in enumerate(columns):
        tbl.add_column(col, no_wrap=i == 0, overflow="fold")
    for row in rows:
        tbl.add_row(*[redact("" if cell is None else str(cell)) for cell in row])
    return tbl


def _group(*parts: RenderableType | str) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    items: list[RenderableType] = []
    for part in parts:
        items.append(Text(part) if isinstance(part, str) else part)
    return Group(*items)


def _render_summary(d: dict[str, Any]) -> RenderableType:
    counts = ", ".join(f"{v} {k}" for k, v in d["counts"].items())
    head = f"{d['title']} (version {d['version']}): {d['path']}\n{d['overview']}\n{counts}\n"
    rows = [[name, about] for name, about in d["sections"].items()]
    foot = "\nsomactl runbook show SECTION for one section; -o json|yaml for the data."
    return _group(head, simple_table(["SECTION", "HOLDS"], rows), foot)


def _severity_table(rows: list[dict[str, Any]]) -> RenderableType:
    return simple_table(
        ["LEVEL", "NAME", "RESPONSE", "PAGING", "INCIDENT COMMANDER", "UPDATES", "EXAMPLES"],
        [
            [
                r["level"],
                r["name"],
                r["response"],
                r["paging"],
                r["incident_commander"] or "-",
                r["updates"] or "-",
                "; ".join(r["examples"] or r["criteria"]),
            ]
            for r in rows
        ],
    )


def _severities(rb: Runbook) -> RenderableType:
    detail = [f"{lvl} {sev.name}: " + "; ".join(sev.criteria) for lvl, sev in rb.severities.items()]
    return _group(
        _severity_table([rb.severity_summary(lvl) for lvl in rb.severities]),
        "",
        *detail,
    )


def _classification(rb: Runbook) -> RenderableType:
    spec = rb.classification
    signals = simple_table(
        ["SIGNAL", "TYPE", "WORSE", "MEANING"],
        [
            [name, s.type, "-" if s.worse is None else str(s.worse).lower(), s.help]
            for name, s in spec.signals.items()
        ],
        title="signals",
    )
    rules = simple_table(
        ["LEVEL", "RULE", "WHEN", "RUNBOOK"],
        [[r.severity, r.id, r.when.describe(), r.description] for r in spec.rules],
        title="rules (highest severity first; the first that fires wins)",
    )
    return _group(signals, "", rules)


def _services(rb: Runbook) -> RenderableType:
    return simple_table(
        ["SERVICE", "KIND", "WORKLOAD", "NAMESPACE", "JOB", "PORT", "HEALTH", "CRITICALITY"],
        [
            [
                name,
                s.kind,
                s.workload,
                rb.namespace_of(name),
                s.job,
                s.port,
                s.health or "-",
                s.criticality,
            ]
            for name, s in rb.services.items()
        ],
    )


def _queries(rb: Runbook) -> RenderableType:
    return simple_table(
        ["QUERY", "UNIT", "WARN", "CRITICAL", "SIGNAL", "PROMQL (runbook)"],
        [
            [
                qid,
                q.unit,
                f"{'>=' if q.direction == 'above' else '<'} {q.warn:g}",
                f"{'>=' if q.direction == 'above' else '<'} {q.critical:g}",
                q.signal or "-",
                q.seed,
            ]
            for qid, q in rb.queries.items()
        ],
    )


def _checks(rb: Runbook) -> RenderableType:
    return simple_table(
        ["CHECK", "TITLE", "BACKEND", "FOR", "SOMACTL", "RUNBOOK COMMAND"],
        [
            [
                cid,
                c.title,
                c.backend,
                c.service or ", ".join(c.applies_to) or "-",
                c.somactl or "-",
                c.command or c.sql or (f"query {c.query}" if c.query else "-"),
            ]
            for cid, c in rb.checks.items()
        ],
    )


def _actions(rb: Runbook) -> RenderableType:
    return simple_table(
        ["ACTION", "TITLE", "FOR", "MUTATES", "CONFIRM", "SOMACTL", "RUNBOOK COMMAND"],
        [
            [
                aid,
                a.title,
                a.service or ", ".join(a.applies_to) or "-",
                "yes" if a.mutates else "no",
                a.confirm + (" (last resort)" if a.last_resort else ""),
                a.somactl or "-",
                a.command or a.sql or "-",
            ]
            for aid, a in rb.actions.items()
        ],
    )


def _step_text(rb: Runbook, step: Step, service: str | None) -> str:
    from somactl.runbook.templates import placeholders, render_command

    extra = ""
    if step.action is not None:
        action = rb.actions[step.action]
        params = {**action.params, **step.params}
        target = action.service or service
        cmd = action.somactl or action.command or ""
        known = rb.command_fields(target, **params)
        if all(name in known and known[name] for name in placeholders(cmd)):
            cmd = render_command(cmd, rb, target, **params)
        extra = f"  [action {step.action}: {cmd}]"
    elif step.check is not None or step.checks:
        ids = [step.check] if step.check else list(step.checks)
        extra = f"  [check {', '.join(i for i in ids if i)}]"
    elif step.pattern is not None:
        extra = f"  [pattern {step.pattern}]"
    notes = []
    if step.severities:
        notes.append(f"{'/'.join(step.severities)} only")
    if step.when:
        notes.append(f"when {step.when}")
    if step.contact:
        notes.append(f"contact: {rb.contacts[step.contact].primary}")
    if step.escalate:
        notes.append(f"escalate: {rb.external(step.escalate).who}")
    if step.reference and rb.references[step.reference].path not in step.title:
        notes.append(f"see {rb.references[step.reference].path}")
    text = step.title + extra + (f" ({'; '.join(notes)})" if notes else "")
    if step.instructions:
        text += f"\n     {step.instructions}"
    return text


def _numbered(rb: Runbook, steps: tuple[Step, ...], service: str | None) -> list[str]:
    return [f"  {i}. {_step_text(rb, s, service)}" for i, s in enumerate(steps, 1)]


def _scenarios(rb: Runbook) -> RenderableType:
    parts: list[str] = []
    for sid, sc in rb.scenarios.items():
        where = f", service {sc.service}" if sc.service else ""
        parts.append(f"{sc.title} [{sid}] (typically {sc.severity}{where})")
        if sc.match is not None:
            parts.append(f"  suggested when: {sc.match.describe()}")
        parts.extend(_numbered(rb, sc.steps, sc.service))
        parts.append("")
    return "\n".join(parts).rstrip()


def _patterns(rb: Runbook) -> RenderableType:
    parts: list[str] = []
    for pid, pattern in rb.mitigation_patterns.items():
        parts.append(f"{pattern.title} [{pid}]")
        parts.extend(_numbered(rb, pattern.steps, None))
        parts.append("")
    return "\n".join(parts).rstrip()


def _process(rb: Runbook) -> RenderableType:
    parts: list[str] = []
    for n, phase in enumerate(rb.process, 1):
        parts.append(f"{n}. {phase.title} [{phase.id}] - who: {phase.who}")
        parts.extend(_numbered(rb, phase.steps, None))
        parts.append("")
    return "\n".join(parts).rstrip()


def _escalation(rb: Runbook) -> RenderableType:
    esc = rb.escalation
    on_call = simple_table(
        ["LEVEL", "WHO", "VIA", "AFTER"],
        [
            [lvl.level, lvl.who, lvl.via or "-", lvl.after.label if lvl.after else "-"]
            for lvl in esc.on_call
        ],
        title="on-call rotation",
    )
    ic = simple_table(
        ["SEVERITIES", "INCIDENT COMMANDER"],
        [["/".join(r.severities), r.who] for r in esc.incident_commander],
        title="incident commander",
    )
    external = simple_table(
        ["WHO", "WHEN"], [[e.who, e.when] for e in esc.external], title="external escalation"
    )
    return _group(on_call, "", ic, "", external)


def _contacts(rb: Runbook) -> RenderableType:
    return simple_table(
        ["ROLE", "PRIMARY", "SECONDARY"],
        [
            [c.role, str(c.primary), str(c.secondary) if c.secondary else "-"]
            for c in rb.contacts.values()
        ],
    )


def _communication(rb: Runbook) -> RenderableType:
    comm = rb.communication
    channels = simple_table(
        ["CHANNEL", "NAME", "PURPOSE"],
        [[cid, ch.name, ch.purpose] for cid, ch in comm.channels.items()],
        title=f"status page: {comm.status_page}",
    )
    cadence = "updates: " + ", ".join(
        f"{lvl} {sev.updates.label.lower()}" for lvl, sev in rb.severities.items() if sev.updates
    )
    parts: list[RenderableType | str] = [channels, "", cadence]
    for tid, tmpl in comm.templates.items():
        parts.append(f"\ntemplate {tid} (posted in {comm.channels[tmpl.channel].name}):")
        parts.append("\n".join(f"  {line}" for line in tmpl.text.splitlines()))
    return _group(*parts)


def _pir(rb: Runbook) -> RenderableType:
    pir = rb.pir
    lines = [
        f"due: {pir.due.label}",
        f"participants: {', '.join(pir.participants)}",
        f"title: {pir.title}",
        "sections:",
    ]
    for section in pir.sections:
        shape = section.item or " / ".join(section.lines)
        lines.append(f"  {section.heading}: {shape}")
    return "\n".join(lines)


def _tools(rb: Runbook) -> RenderableType:
    return simple_table(
        ["TOOL", "URL"],
        [
            [t.title, t.url + (f" (or `{t.command}`)" if t.command else "")]
            for t in rb.tools.values()
        ],
    )


def _references(rb: Runbook) -> RenderableType:
    return simple_table(["REFERENCE", "PATH"], [[r.title, r.path] for r in rb.references.values()])


def _defaults(rb: Runbook) -> RenderableType:
    data = rb.dump("defaults")
    rows: list[list[Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend([f"{key}.{k}", v] for k, v in value.items())
        else:
            rows.append([key, value])
    return simple_table(["KEY", "VALUE"], rows)


_RENDER = {
    "severities": _severities,
    "classification": _classification,
    "services": _services,
    "queries": _queries,
    "checks": _checks,
    "actions": _actions,
    "patterns": _patterns,
    "scenarios": _scenarios,
    "process": _process,
    "escalation": _escalation,
    "contacts": _contacts,
    "communication": _communication,
    "pir": _pir,
    "tools": _tools,
    "references": _references,
    "defaults": _defaults,
}
