"""somactl tools: the tool adapters as the runbook checks them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

HELP = "Tool adapters: health, recent invocations, rate limits."

EPILOG = """\b
Examples:
  somactl tools health
  somactl tools health github
  somactl tools recent --limit 50
  somactl tools rate-limit github

\b
Exit codes: 0 ok, 10 warnings, 11 critical (an adapter down, most workflows failing),
6 no answer in time or a rate limit exhausted (never waited for), 7 refused."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """Tool adapters: health, recent invocations, rate limits."""


def _complete_tool(ctx: typer.Context, incomplete: str) -> list[str]:
    from somactl.runbook.loader import load_runbook

    try:
        names = load_runbook(ctx.find_root().params.get("runbooks")).tool_adapters()
    except Exception:  # noqa: BLE001 - completion must never fail
        return []
    return [n for n in names if n.startswith(incomplete)]


def _view(data: dict[str, Any], rows: list[Any] | None = None) -> Any:
    from rich.console import Group

    from somactl.ui.findings import checks_table

    parts: list[Any] = [checks_table(data.get("checks") or [])]
    parts.extend(rows or [])
    return Group(*parts)


@app.command("health", short_help="Health of every adapter (or one): status, errors, breaker.")
def health(
    ctx: typer.Context,
    tool: Annotated[
        str | None,
        typer.Argument(help="One adapter (default: all).", autocompletion=_complete_tool),
    ] = None,
) -> None:
    """GET /tools/<tool>/health for each adapter: status, latency, error rate, circuit breaker,
    provider rate limit, last error."""
    from somactl.ops.single import tools_health
    from somactl.ui.output import simple_table

    opts = options(ctx)

    def table(data: dict[str, Any]) -> Any:
        adapters = data["checks"][0]["evidence"].get("adapters") or []
        rows = [
            (
                a.get("tool"),
                a.get("status"),
                a.get("latency_ms"),
                "-" if a.get("error_rate") is None else f"{float(a['error_rate']):.0%}",
                a.get("breaker"),
                a.get("rate_limit_remaining"),
                (a.get("last_error") or a.get("error") or "")[:60],
            )
            for a in adapters
        ]
        return _view(
            data,
            [
                simple_table(
                    [
                        "TOOL",
                        "STATUS",
                        "LATENCY MS",
                        "ERRORS",
                        "BREAKER",
                        "RATE LEFT",
                        "LAST ERROR",
                    ],
                    rows,
                )
            ],
        )

    exit_with(emit(opts, tools_health(opts, tool), table))


@app.command("recent", short_help="Recent invocations and the share of workflows failing.")
def recent(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", help="How many invocations (1-1000).", min=1, max=1000)
    ] = 50,
    tool: Annotated[
        str | None,
        typer.Option(
            "--tool", help="Only this adapter's invocations.", autocompletion=_complete_tool
        ),
    ] = None,
) -> None:
    """GET /tools/recent?limit=N: the latest invocations, newest first, and the share of
    workflows that hit a failing adapter."""
    from somactl.ops.single import tools_recent
    from somactl.ui.output import simple_table

    opts = options(ctx)

    def table(data: dict[str, Any]) -> Any:
        rows = [
            (
                i.get("timestamp"),
                i.get("tool"),
                i.get("operation"),
                i.get("status") + (" (breaker)" if i.get("short_circuited") else ""),
                i.get("duration_ms"),
                i.get("workflow_id"),
                (i.get("error") or "")[:60],
            )
            for i in data.get("invocations") or []
        ]
        return _view(
            data,
            [
                simple_table(
                    ["TIME", "TOOL", "OPERATION", "STATUS", "MS", "WORKFLOW", "ERROR"], rows
                )
            ],
        )

    exit_with(emit(opts, tools_recent(opts, limit, tool), table))


@app.command("rate-limit", short_help="A provider's rate limit: remaining and reset (github).")
def rate_limit(
    ctx: typer.Context,
    provider: Annotated[
        str, typer.Argument(help="github (GitHub's /rate_limit), or another adapter's health.")
    ],
) -> None:
    """GitHub: GET /rate_limit (does not count against the limit); every resource's limit,
    remaining and reset. An exhausted limit is reported with its reset time (exit 6), never
    waited for. The token is read from the context's secret (or GITHUB_TOKEN) and never shown."""
    from somactl.ops.single import tools_rate_limit
    from somactl.ui.output import simple_table

    opts = options(ctx)

    def table(data: dict[str, Any]) -> Any:
        ev = data["checks"][0].get("evidence") or {}
        rows = [
            (
                r.get("resource"),
                r.get("limit"),
                r.get("remaining"),
                r.get("used"),
                r.get("reset_at") or r.get("reset"),
            )
            for r in ev.get("resources") or []
        ]
        extra = (
            [simple_table(["RESOURCE", "LIMIT", "REMAINING", "USED", "RESET"], rows)]
            if rows
            else []
        )
        return _view(data, extra)

    exit_with(emit(opts, tools_rate_limit(opts, provider), table))
