"""somactl diagnose: every investigation check of the runbook at once, with a verdict."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

HELP = "Diagnose a service: every runbook check at once, a verdict, severity and next steps."

EPILOG = """\b
Examples:
  somactl diagnose gateway-api
  somactl diagnose postgres --long-running 1m
  somactl diagnose gateway-api --timeout 5s -o json | jq .data.verdict
  somactl diagnose gateway-api --watch 30
  somactl diagnose gateway-api --snapshot ./evidence
  somactl diagnose gateway-api --contexts prod-eu,prod-us

\b
Runs concurrently under one deadline (--timeout, default 10s): the service's pods, events,
rollout and logs; its Prometheus queries with 30-minute sparklines; Postgres connectivity,
pool, long-running queries and blocking chains; Redis PING and memory; tool adapters and the
GitHub rate limit; rollouts and commits of the last hour. A backend that does not answer in
time is reported as unknown and the rest is still shown.

\b
Exit codes: 0 all ok, 10 warnings, 11 critical findings; when nothing was found but checks
could not run: 9, or 7 if a credential or privilege was refused; 2 unknown service.
They judge SERVICE and what it depends on (runbooks.yaml depends_on: gateway-api's Postgres
and Redis, tool-service's adapters); findings about other services are shown as "elsewhere"
with the diagnose command that covers them, and do not change the exit code.
The verdict is also recorded on the open incident's timeline, if there is one."""


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    from somactl.runbook.loader import names_for_completion

    path = ctx.find_root().params.get("runbooks")
    return [n for n in names_for_completion("services", path) if n.startswith(incomplete)]


def _warmup() -> None:
    # Import the renderer while the checks wait on the network: after the deadline every
    # millisecond counts.
    import rich.console
    import rich.table
    import rich.text  # noqa: F401

    import somactl.ui.findings  # noqa: F401


def _seconds(value: str | None, option: str) -> float | None:
    from somactl.core.durations import parse_duration

    return None if value is None else parse_duration(value, option=option)


app = typer.Typer(help=HELP, epilog=EPILOG, rich_markup_mode=None)


@app.command("diagnose", help=HELP, epilog=EPILOG)
def diagnose(
    ctx: typer.Context,
    service: Annotated[
        str,
        typer.Argument(
            help="A service of runbooks.yaml (somactl runbook show services).",
            autocompletion=_complete_service,
            metavar="SERVICE",
        ),
    ],
    watch: Annotated[
        str | None,
        typer.Option("--watch", help="Run again every DURATION until Ctrl-C.", metavar="DURATION"),
    ] = None,
    count: Annotated[
        int,
        typer.Option("--count", help="With --watch: stop after N rounds (0: never).", min=0),
    ] = 0,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            help="Write an evidence bundle (results, logs, metrics, sessions, sha256 manifest) "
            "under DIR.",
            metavar="DIR",
            file_okay=False,
        ),
    ] = None,
    contexts: Annotated[
        str | None,
        typer.Option(
            "--contexts",
            help="Diagnose in several contexts (a,b) and highlight the differences.",
            metavar="A,B",
        ),
    ] = None,
    long_running: Annotated[
        str | None,
        typer.Option(
            "--long-running",
            help="Active queries older than this are long-running (default: runbooks.yaml, 5m).",
            metavar="DURATION",
        ),
    ] = None,
) -> None:
    from somactl.ops.diagnose import DiagnoseRequest, parse_contexts
    from somactl.ops.diagnose import diagnose as run_diagnosis
    from somactl.ui import findings
    from somactl.ui.progress import Ticker

    opts = options(ctx)
    every = _seconds(watch, "--watch")
    if every is not None and every <= 0:
        from somactl.core.errors import UsageError

        raise UsageError("--watch: the interval must be more than 0s", "e.g. --watch 30s")
    req = DiagnoseRequest(
        service=service,
        long_running_seconds=_seconds(long_running, "--long-running"),
        snapshot=snapshot,
        contexts=parse_contexts(contexts),
    )

    def table(data: dict[str, Any]) -> Any:
        return findings.contexts(data) if req.contexts else findings.diagnosis(data)

    rounds = 0
    code = 0
    while True:
        ticker = Ticker(f"diagnosing {service}")
        result: Result = run_diagnosis(
            opts,
            req,
            on_start=ticker.start,
            on_result=ticker.tick,
            warmup=_warmup if not opts.machine_output else None,
        )
        rounds += 1
        if every is None:
            exit_with(emit(opts, result, table))
            return
        code = findings.emit_watch_round(opts, result, table, rounds)
        if count and rounds >= count:
            exit_with(code)
        time.sleep(every)
