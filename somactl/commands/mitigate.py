"""somactl mitigate: the runbook's mitigation section as guarded actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer import _click
from typer.core import TyperGroup

from somactl.core.durations import parse_duration
from somactl.ui.cli import options, runbook_for
from somactl.ui.output import exit_with

if TYPE_CHECKING:
    from somactl.ops.mitigate import Env, Prepared

HELP = "Mitigate: rollback, scale, restart, autoscale, isolate, kill queries, flush Redis."

EPILOG = """\b
Every action builds a plan from live state, shows it, asks for consent (type `yes`, or the
target's name for high-impact actions; piped input is never consent: use --yes), records an
intent in the audit journal, applies with preconditions (exit 5 if the target changed since
the plan), records the result and verifies (--verify, default 2m, 0 to skip).

\b
Examples:
  somactl mitigate rollback gateway-api --dry-run
  somactl mitigate rollback gateway-api --to-revision 6
  somactl mitigate scale gateway-api --replicas 5
  somactl mitigate restart orchestrator --dry-run=server
  somactl mitigate autoscale gateway-api --min 3 --max 10 --cpu-percent 70
  somactl mitigate kill-queries --older-than 5m --state idle-in-transaction
  somactl mitigate redis-flush
  somactl mitigate circuit-breaker enable github
  somactl -o json mitigate rollback gateway-api --dry-run | jq .data.plan"""


def rewrite_dry_run(args: Sequence[str]) -> list[str]:
    """`--dry-run=server` / `--dry-run=client` -> the hidden `--dry-run-mode X` (Typer has no
    option with an optional value); `--dry-run` alone stays the flag."""
    out: list[str] = []
    for i, tok in enumerate(args):
        if tok == "--":
            out.extend(args[i:])
            break
        if tok.startswith("--dry-run="):
            out.extend(["--dry-run-mode", tok.split("=", 1)[1] or "none"])
        else:
            out.append(tok)
    return out


class _MitigateGroup(TyperGroup):
    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        return list(super().parse_args(ctx, rewrite_dry_run(args)))


app = typer.Typer(
    cls=_MitigateGroup,
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.callback()
def main() -> None:
    """Mitigate: rollback, scale, restart, autoscale, isolate, kill queries, flush Redis."""


Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="Approve the plan without a prompt (scripts).")
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show the plan and stop. --dry-run=server: the API server validates the writes "
        "(dryRun=All), nothing is persisted.",
    ),
]
# kill-queries, redis-flush and circuit-breaker talk to Postgres, Redis and the tools API:
# no API server to validate a write, so no =server in their help (it is refused: exit 2)
DryRunPlan = Annotated[
    bool, typer.Option("--dry-run", help="Show the plan and stop; nothing is changed.")
]
DryRunMode = Annotated[str | None, typer.Option("--dry-run-mode", hidden=True)]
Verify = Annotated[
    str,
    typer.Option(
        "--verify",
        metavar="DURATION",
        help="Follow the rollout and re-check error rate and p95 for this long (0: skip).",
    ),
]
VerifyResult = Annotated[
    str,
    typer.Option(
        "--verify",
        metavar="DURATION",
        help="Re-check the result, then error rate and p95, for this long (0: skip).",
    ),
]
Service = Annotated[str, typer.Argument(help="A service of runbooks.yaml (e.g. gateway-api).")]


def _run(
    ctx: typer.Context,
    verb: str,
    yes: bool,
    dry_run: bool,
    dry_run_mode: str | None,
    verify: str,
    build: Callable[[Env], Prepared],
) -> None:
    from somactl.ops.mitigate import Env, parse_dry_run
    from somactl.ui.actions import execute
    from somactl.ui.settings import settings_for

    opts = options(ctx)
    opts.command = f"mitigate {verb}"
    mode = parse_dry_run(
        dry_run_mode if dry_run_mode is not None else ("client" if dry_run else None)
    )
    seconds = parse_duration(verify, option="--verify")
    env = Env(opts, settings_for(opts), runbook_for(opts), dry_run=mode, verify_seconds=seconds)
    exit_with(execute(opts, build(env), yes=yes, dry_run=mode))


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    service: Service,
    to_revision: Annotated[
        int | None,
        typer.Option(
            "--to-revision",
            min=1,
            max=2**31 - 1,
            help="Revision to restore (default: the previous one, resolved in the plan).",
        ),
    ] = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Roll a deployment back to an explicit revision (kubectl rollout undo, made retry-safe).

    Example: somactl mitigate rollback gateway-api --to-revision 6
    """
    from somactl.ops.mitigate import prepare_rollback

    _run(ctx, "rollback", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_rollback(env, service, to_revision))  # fmt: skip


@app.command("scale")
def scale(
    ctx: typer.Context,
    service: Service,
    replicas: Annotated[
        int,
        typer.Option("--replicas", help="Desired replicas, 0-1000 (0 needs the typed name)."),
    ],
    override_hpa: Annotated[
        bool, typer.Option("--override-hpa", help="Scale even though an HPA manages it.")
    ] = False,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Scale a workload, guarded by its current replicas and resourceVersion.

    Example: somactl mitigate scale gateway-api --replicas 5
    """
    from somactl.ops.mitigate import prepare_scale

    _run(ctx, "scale", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_scale(env, service, replicas, override_hpa))  # fmt: skip


@app.command("restart")
def restart(
    ctx: typer.Context,
    service: Service,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Rolling restart (kubectl rollout restart); the database needs its typed name.

    Example: somactl mitigate restart orchestrator
    """
    from somactl.ops.mitigate import prepare_restart

    _run(ctx, "restart", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_restart(env, service))  # fmt: skip


@app.command("redis-restart")
def redis_restart(
    ctx: typer.Context,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Restart the Redis deployment (the runbook's Redis Issues step 2).

    Example: somactl mitigate redis-restart
    """
    from somactl.ops.mitigate import prepare_redis_restart

    _run(ctx, "redis-restart", yes, dry_run, dry_run_mode, verify, prepare_redis_restart)


@app.command("autoscale")
def autoscale(
    ctx: typer.Context,
    service: Service,
    min_replicas: Annotated[
        int | None, typer.Option("--min", help="Minimum replicas (runbook default 3).")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option("--max", help="Maximum replicas (runbook default 10).")
    ] = None,
    cpu_percent: Annotated[
        int | None,
        typer.Option("--cpu-percent", help="Target CPU utilization (runbook default 70)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Update an existing HPA of the workload.")
    ] = False,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Create (or --replace) an autoscaling/v2 HPA on CPU.

    Example: somactl mitigate autoscale gateway-api --min 3 --max 10 --cpu-percent 70
    """
    from somactl.ops.mitigate import prepare_autoscale

    _run(ctx, "autoscale", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_autoscale(env, service, min_replicas, max_replicas, cpu_percent,
                                       replace))  # fmt: skip


@app.command("isolate")
def isolate(
    ctx: typer.Context,
    service: Service,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Snapshot evidence, then deny all traffic to and from the service's pods.

    Example: somactl mitigate isolate kamachiq-service
    """
    from somactl.ops.mitigate import prepare_isolate

    _run(ctx, "isolate", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_isolate(env, service))  # fmt: skip


@app.command("unisolate")
def unisolate(
    ctx: typer.Context,
    service: Service,
    yes: Yes = False,
    dry_run: DryRun = False,
    dry_run_mode: DryRunMode = None,
    verify: Verify = "2m",
) -> None:
    """Remove exactly the NetworkPolicy `mitigate isolate` created.

    Example: somactl mitigate unisolate kamachiq-service
    """
    from somactl.ops.mitigate import prepare_unisolate

    _run(ctx, "unisolate", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_unisolate(env, service))  # fmt: skip


@app.command("kill-queries")
def kill_queries(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", metavar="DURATION", help="Minimum age of the query.")
    ] = "5m",
    database: Annotated[
        str | None, typer.Option("--database", help="Database (default: the runbook's).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this role's sessions.")] = None,
    state: Annotated[
        str, typer.Option("--state", help="active or idle-in-transaction.")
    ] = "active",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=10000, help="At most N targets.")
    ] = None,
    grace: Annotated[
        str,
        typer.Option("--grace", metavar="DURATION", help="Wait after cancel before terminate."),
    ] = "5s",
    yes: Yes = False,
    dry_run: DryRunPlan = False,
    dry_run_mode: DryRunMode = None,
    verify: VerifyResult = "2m",
) -> None:
    """Cancel long-running queries, terminate what a cancel does not end.

    Needs pg_read_all_stats (or pg_monitor) to see and pg_signal_backend to signal others'
    sessions. Example: somactl mitigate kill-queries --older-than 5m --limit 10
    """
    from somactl.ops.mitigate import prepare_kill_queries

    age = parse_duration(older_than, option="--older-than")
    wait = parse_duration(grace, option="--grace")
    _run(ctx, "kill-queries", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_kill_queries(env, older_than=age, database=database, user=user,
                                          state=state, limit=limit, grace=wait))  # fmt: skip


@app.command("redis-flush")
def redis_flush(
    ctx: typer.Context,
    yes: Yes = False,
    dry_run: DryRunPlan = False,
    dry_run_mode: DryRunMode = None,
    verify: VerifyResult = "2m",
) -> None:
    """FLUSHALL the cache (if corrupted); the instance's name must be typed.

    Example: somactl mitigate redis-flush --dry-run
    """
    from somactl.ops.mitigate import prepare_redis_flush

    _run(ctx, "redis-flush", yes, dry_run, dry_run_mode, verify, prepare_redis_flush)


@app.command("circuit-breaker")
def circuit_breaker(
    ctx: typer.Context,
    verb: Annotated[str, typer.Argument(metavar="enable|disable", help="Open or close it.")],
    tool: Annotated[str, typer.Argument(help="A tool adapter (github, notion, slack, jira).")],
    yes: Yes = False,
    dry_run: DryRunPlan = False,
    dry_run_mode: DryRunMode = None,
    verify: VerifyResult = "2m",
) -> None:
    """Open (enable) or close (disable) a tool adapter's circuit breaker.

    Example: somactl mitigate circuit-breaker enable github
    """
    from somactl.ops.mitigate import prepare_circuit_breaker

    _run(ctx, "circuit-breaker", yes, dry_run, dry_run_mode, verify,
         lambda env: prepare_circuit_breaker(env, verb, tool))  # fmt: skip


__all__: list[Any] = ["app"]
