"""somactl severity: classify an incident (P0-P4) from measured signals, by the runbook's rules."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from somactl.core.errors import UsageError
from somactl.core.result import Result
from somactl.ui.cli import options, runbook_for
from somactl.ui.output import emit, exit_with, simple_table

if TYPE_CHECKING:
    from rich.console import RenderableType

    from somactl.runbook.classify import SignalValue

HELP = "Classify an incident's severity from its signals (P0-P4)."

EPILOG = """\b
Examples:
  somactl severity classify --error-rate 1.0
  somactl severity classify --p95 6 --adapter-failure-ratio 0.6
  somactl severity classify --service-down kamachiq-service --redis-down
  somactl severity classify --signal cosmetic=true
  somactl -o json severity classify --p95 6.5 | jq -r .data.level
  somactl severity signals"""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """Classify an incident's severity from its signals (P0-P4)."""


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter("must be a finite number")
    return value


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    from somactl.runbook.loader import names_for_completion

    path = ctx.find_root().params.get("runbooks")
    return [n for n in names_for_completion("services", path) if n.startswith(incomplete)]


@app.command("classify", short_help="Classify measured signals into a severity (P0-P4).")
def classify(
    ctx: typer.Context,
    error_rate: Annotated[
        float | None,
        typer.Option(
            "--error-rate",
            help="Share of requests answered 5xx, 0..1.",
            min=0.0,
            max=1.0,
            callback=_finite,
        ),
    ] = None,
    p95: Annotated[
        float | None,
        typer.Option(
            "--p95", help="95th percentile latency in seconds.", min=0.0, callback=_finite
        ),
    ] = None,
    availability: Annotated[
        float | None,
        typer.Option(
            "--availability",
            help="Share of critical services' targets up, 0..1.",
            min=0.0,
            max=1.0,
            callback=_finite,
        ),
    ] = None,
    adapter_failure_ratio: Annotated[
        float | None,
        typer.Option(
            "--adapter-failure-ratio",
            help="Share of workflows hitting a failing tool adapter, 0..1.",
            min=0.0,
            max=1.0,
            callback=_finite,
        ),
    ] = None,
    adapters_failing: Annotated[
        int | None,
        typer.Option("--adapters-failing", help="Number of failing tool adapters.", min=0),
    ] = None,
    service_down: Annotated[
        list[str] | None,
        typer.Option(
            "--service-down",
            help="A service that is down (repeatable); its criticality counts.",
            metavar="SERVICE",
            autocompletion=_complete_service,
        ),
    ] = None,
    redis_down: Annotated[bool, typer.Option("--redis-down", help="Redis is unavailable.")] = False,
    db_down: Annotated[bool, typer.Option("--db-down", help="The database is down.")] = False,
    data_loss: Annotated[
        bool, typer.Option("--data-loss", help="Data loss or corruption.")
    ] = False,
    security_breach: Annotated[
        bool, typer.Option("--security-breach", help="A security breach.")
    ] = False,
    auth_failure: Annotated[
        bool, typer.Option("--auth-failure", help="Authentication is failing.")
    ] = False,
    signal: Annotated[
        list[str] | None,
        typer.Option(
            "--signal",
            "-s",
            help="Any signal of `somactl severity signals` as NAME=VALUE (repeatable).",
            metavar="NAME=VALUE",
        ),
    ] = None,
) -> None:
    """Which severity the runbook gives these signals, which rules fired, the response target.

    Pass what you measured; signals you leave out are unknown and fire no rule.
    Exit 0 (also when no rule fires: not an incident by the runbook).

    Example: somactl severity classify --error-rate 1.0 --p95 6
    """
    from somactl.runbook.classify import parse_signal

    opts = options(ctx)
    opts.command = "severity classify"
    signals: dict[str, SignalValue | None] = {
        "error_rate": error_rate,
        "p95_seconds": p95,
        "availability": availability,
        "adapter_failure_ratio": adapter_failure_ratio,
        "adapters_failing": adapters_failing,
        "service_down": tuple(service_down) if service_down else None,
        "redis_up": False if redis_down else None,
        "db_up": False if db_down else None,
        "data_loss": True if data_loss else None,
        "security_breach": True if security_breach else None,
        "auth_failure": True if auth_failure else None,
    }
    if not any(v is not None for v in signals.values()) and not signal:
        raise UsageError(
            "no signal given: pass what you measured",
            "e.g. `somactl severity classify --error-rate 1.0 --p95 6`; "
            "`somactl severity signals` lists every signal (use --signal NAME=VALUE)",
        )
    runbook = runbook_for(opts)
    for assignment in signal or ():
        name, value = parse_signal(runbook, assignment)
        signals[name] = value
    result = runbook.classify(signals)
    data = result.to_dict()
    data["severity"] = runbook.severity_summary(result.level) if result.level else None
    exit_with(emit(opts, Result("severity classify", data), _render))


@app.command("signals", short_help="The signals the classifier understands.")
def signals_(ctx: typer.Context) -> None:
    """The signals the classifier understands (for --signal NAME=VALUE and diagnose).

    Example: somactl severity signals
    """
    opts = options(ctx)
    opts.command = "severity signals"
    runbook = runbook_for(opts)
    rows = [
        {"name": name, "type": s.type, "worse": s.worse, "help": s.help}
        for name, s in runbook.classification.signals.items()
    ]

    def table(d: list[dict[str, Any]]) -> RenderableType:
        return simple_table(
            ["SIGNAL", "TYPE", "WORSE", "MEANING"],
            [
                [
                    r["name"],
                    r["type"],
                    "-" if r["worse"] is None else str(r["worse"]).lower(),
                    r["help"],
                ]
                for r in d
            ],
        )

    exit_with(emit(opts, Result("severity signals", rows), table))


def _render(d: dict[str, Any]) -> str:
    if d["level"] is None:
        return "no rule fired: these signals are not an incident by the runbook's criteria"
    sev = d["severity"]
    win = d["rule"]
    lines = [
        f"{d['level']} {d['name']}: {sev['response']}",
        f"rule: {win['id']} ({win['description']})",
        f"paging: {sev['paging']}",
        f"incident commander: {sev['incident_commander'] or '-'}",
        f"status updates: {sev['updates'] or 'none'}",
    ]
    others = [r for r in d["fired"] if r["id"] != win["id"]]
    if others:
        lines.append("also fired:")
        lines.extend(f"  {r['severity']} {r['id']} ({r['description']})" for r in others)
    return "\n".join(lines)
