"""somactl redis: Redis as the runbook checks it (PING, memory, clients, evictions)."""

from __future__ import annotations

from typing import Any

import typer

from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

HELP = "Redis: PING latency, memory against maxmemory, evictions, clients."

EPILOG = """\b
Examples:
  somactl redis info
  somactl -o json redis info | jq '.data.checks[1].evidence.ratio'

\b
The password comes from the context's secret (or REDISCLI_AUTH), never from the command line.
Exit codes: 0 ok, 10 warnings, 11 critical, 6 no answer in time, 7 refused, 3 not configured."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """Redis: PING latency, memory against maxmemory, evictions, clients."""


@app.command("info", short_help="PING latency, memory, evictions, clients (redis-cli ping).")
def info(ctx: typer.Context) -> None:
    """PING latency, memory used against maxmemory (and the eviction policy), evicted keys,
    writes rejected with OOM, connected clients."""
    from somactl.ops.single import redis_info

    opts = options(ctx)

    def table(data: dict[str, Any]) -> Any:
        from rich.console import Group
        from rich.text import Text

        from somactl.ui.findings import checks_table, evidence_lines

        parts: list[Any] = [Text(f"redis {data.get('target')}", style="bold")]
        parts.append(checks_table(data.get("checks") or []))
        for c in data.get("checks") or []:
            parts.extend(Text(f"    {line}", style="dim") for line in evidence_lines(c))
        return Group(*parts)

    exit_with(emit(opts, redis_info(opts), table))
