"""somactl status: the detection dashboard, every service in one table."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

HELP = "The detection dashboard: every service's pods, up, error rate, p95 and saturation."

EPILOG = """\b
Examples:
  somactl status
  somactl status --watch 15s
  somactl -o json status | jq '.data.services[] | select(.status != "ok")'

\b
Pods ready from the Deployments and StatefulSets, `up`, error rate and p95 from the runbook's
Prometheus queries (thresholds in runbooks.yaml), tool adapters from the tools API. A value
over a threshold is followed by its last two minutes when they read otherwise ("48% 2m 0.0%":
fixed minutes ago, the runbook's 5-minute window still holds the broken minutes).
Exit codes: 0 all ok, 10 warnings, 11 critical, 9 some values could not be read."""

app = typer.Typer(help=HELP, epilog=EPILOG, rich_markup_mode=None)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "ratio":
        return f"{float(value):.1%}" if float(value) < 0.1 else f"{float(value):.0%}"
    if kind == "seconds":
        v = float(value)
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    return str(value)


def _cell(row: dict[str, Any], col: str, kind: str, style: dict[str, str]) -> Any:
    """A value in its status colour; when it is warn/critical over the runbook's window and the
    last two minutes say otherwise, that value after it ("48% 2m 0.0%": falling after a fix)."""
    from rich.text import Text

    text = Text(_fmt(row.get(col), kind), style=style.get(str(row.get(f"{col}_status")), ""))
    last = row.get(f"{col}_recent_status")
    if row.get(f"{col}_recent") is not None and last != row.get(f"{col}_status"):
        text.append(
            f" 2m {_fmt(row[f'{col}_recent'], kind)}",
            style=style.get(str(last), ""),
        )
    return text


def render(data: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    from somactl.ui.findings import STYLE, status_text

    tbl = Table(
        title=f"context {data.get('context') or '-'}  namespace {data.get('namespace')}",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    for col in ("SERVICE", "KIND", "PODS", "UP", "ERROR RATE", "P95", "SATURATION", "STATUS"):
        tbl.add_column(col, no_wrap=True)
    for row in data.get("services") or []:
        if row["kind"] == "tool-adapter":
            pods = Text(
                f"health {row.get('health')}",
                style=STYLE.get(
                    {"healthy": "ok", "degraded": "warn", "down": "critical"}.get(
                        str(row.get("health")), "unknown"
                    ),
                    "",
                ),
            )
            if row.get("breaker") == "open":
                pods.append(" (breaker open)", style="yellow")
            cells: list[Any] = [pods, Text("-"), Text("-"), Text("-"), Text("-")]
        else:
            cells = [
                Text(str(row.get("pods") or "-"), style=STYLE.get(str(row.get("pods_status")), "")),
                Text(_fmt(row.get("up"), "ratio"), style=STYLE.get(str(row.get("up_status")), "")),
                _cell(row, "error_rate", "ratio", STYLE),
                _cell(row, "p95", "seconds", STYLE),
                Text(
                    _fmt(row.get("saturation"), "ratio"),
                    style=STYLE.get(str(row.get("saturation_status")), ""),
                ),
            ]
        tbl.add_row(
            Text(row["service"], style="bold"),
            Text(row["kind"]),
            *cells,
            status_text(str(row.get("status"))),
        )
    return tbl


@app.command("status", help=HELP, epilog=EPILOG)
def status(
    ctx: typer.Context,
    watch: Annotated[
        str | None,
        typer.Option("--watch", help="Refresh every DURATION until Ctrl-C.", metavar="DURATION"),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", help="With --watch: stop after N rounds (0: never).", min=0)
    ] = 0,
) -> None:
    from somactl.core.durations import parse_duration
    from somactl.ops.status import status as run_status

    opts = options(ctx)
    every = None if watch is None else parse_duration(watch, option="--watch")
    if every is not None and every <= 0:
        from somactl.core.errors import UsageError

        raise UsageError("--watch: the interval must be more than 0s", "e.g. --watch 15s")
    rounds = 0
    while True:
        result: Result = run_status(opts)
        rounds += 1
        if every is None:
            exit_with(emit(opts, result, render))
            return
        from somactl.ui.findings import emit_watch_round

        code = emit_watch_round(opts, result, render, rounds)
        if count and rounds >= count:
            exit_with(code)
        time.sleep(every)
