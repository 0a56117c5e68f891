"""somactl db: the database as the runbook checks it (pool, sessions, slow queries)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

HELP = "Postgres: the connection pool, active sessions, long-running queries, locks."

EPILOG = """\b
Examples:
  somactl db pool
  somactl db activity
  somactl db activity --slow --older-than 1m
  somactl -o json db activity | jq '.data.sessions[] | select(.blocked_by)'

\b
The role needs pg_read_all_stats (or pg_monitor) to see other roles' sessions; without it they
are reported as hidden (exit 7), never as missing. The password comes from the context's secret
(or PGPASSWORD), never from the command line.
Exit codes: 0 ok, 10 warnings, 11 critical, 6 no answer in time, 7 refused, 3 not configured."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """Postgres: the connection pool, active sessions, long-running queries, locks."""


def _checks_view(data: dict[str, Any], extra: list[Any]) -> Any:
    from rich.console import Group
    from rich.text import Text

    from somactl.ui.findings import checks_table, evidence_lines

    parts: list[Any] = [Text(f"postgres {data.get('target')}", style="bold")]
    parts.append(checks_table(data.get("checks") or []))
    parts.extend(extra)
    for c in data.get("checks") or []:
        lines = evidence_lines(c)
        if lines and c.get("status") != "ok":
            parts.append(Text(f"{c['id']}:", style="bold"))
            parts.extend(Text(f"    {line}", style="dim") for line in lines)
    return Group(*parts)


@app.command("pool", short_help="Connections by state against max_connections (SELECT 1 too).")
def pool(ctx: typer.Context) -> None:
    """Connectivity (SELECT 1 latency) and the pool: sessions by state, database and
    application against max_connections, idle-in-transaction sessions."""
    from somactl.ops.single import db_pool
    from somactl.ui.output import simple_table

    opts = options(ctx)

    def table(data: dict[str, Any]) -> Any:
        extra: list[Any] = []
        act = next((c for c in data["checks"] if c["id"] == "db.activity"), None)
        if act and act.get("evidence"):
            ev = act["evidence"]
            rows = [(s, n) for s, n in (ev.get("by_state") or {}).items()]
            rows.append(("total", f"{ev.get('used')}/{ev.get('max_connections')}"))
            extra.append(simple_table(["STATE", "SESSIONS"], rows))
            apps = list((ev.get("by_user_application") or {}).items())
            if apps:
                extra.append(simple_table(["USER/APPLICATION", "SESSIONS"], apps))
        return _checks_view(data, extra)

    exit_with(emit(opts, db_pool(opts), table))


@app.command("activity", short_help="Sessions, long-running queries and blocking chains.")
def activity(
    ctx: typer.Context,
    slow: Annotated[
        bool, typer.Option("--slow", help="Only active queries older than --older-than.")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Long-running threshold (default: runbooks.yaml, 5m).",
            metavar="DURATION",
        ),
    ] = None,
    include_idle: Annotated[bool, typer.Option("--all", help="Include idle sessions.")] = False,
) -> None:
    """The sessions on the server (not idle unless --all), oldest first, with what they wait
    for and who blocks them; long-running queries, blocking chains and the slowest statements
    of pg_stat_statements."""
    from somactl.core.durations import parse_duration
    from somactl.ops.single import db_activity
    from somactl.ui.output import simple_table

    opts = options(ctx)
    threshold = None if older_than is None else parse_duration(older_than, option="--older-than")

    def table(data: dict[str, Any]) -> Any:
        rows = [
            (
                s["pid"],
                s["user"],
                s["db"],
                s["application"],
                s["state"] or "hidden",
                s["query_age"],
                s["wait"],
                ",".join(str(b) for b in s["blocked_by"] or []),
                (s["query"] or "")[:60],
            )
            for s in data.get("sessions") or []
        ]
        from rich.text import Text

        if not rows:
            what = "active query that old" if slow else "session other than idle ones"
            hint = "" if include_idle else " (--all lists the idle ones too)"
            return _checks_view(data, [Text(f"No {what}{hint}.", style="dim")])
        extra: list[Any] = [
            simple_table(
                ["PID", "USER", "DB", "APPLICATION", "STATE", "AGE", "WAIT", "BLOCKED BY", "QUERY"],
                rows,
                title=f"{len(rows)} session{'s' if len(rows) != 1 else ''}",
            )
        ]
        if data.get("privilege_note"):
            extra.append(Text(str(data["privilege_note"]), style="yellow"))
        return _checks_view(data, extra)

    result = db_activity(opts, older_than=threshold, slow_only=slow, include_idle=include_idle)
    exit_with(emit(opts, result, table))
