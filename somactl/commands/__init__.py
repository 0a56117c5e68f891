"""Command modules, loaded lazily: `somactl --help` must not import any of them.

REGISTRY maps a top-level command name to (module path, short help). Each module defines a
Typer `app` with a callback (so `typer.main.get_command` always yields a group) or, for a
single command, a Typer `app` with exactly one command registered under `command=`.
The short help here is what `somactl --help` lists; keep it equal to the module's own help
(tests/cli/test_registry.py checks).
"""

from __future__ import annotations

from typing import NamedTuple


class CommandSpec(NamedTuple):
    module: str
    help: str
    panel: str


REGISTRY: dict[str, CommandSpec] = {
    "runbook": CommandSpec(
        "somactl.commands.runbook",
        "The runbook as data and guided runs: validate, show, severities, list, run.",
        "Runbook",
    ),
    "severity": CommandSpec(
        "somactl.commands.severity",
        "Classify an incident's severity from its signals (P0-P4).",
        "Runbook",
    ),
    "diagnose": CommandSpec(
        "somactl.commands.diagnose",
        "Diagnose a service: every runbook check at once, a verdict, severity and next steps.",
        "Diagnose",
    ),
    "status": CommandSpec(
        "somactl.commands.status",
        "The detection dashboard: every service's pods, up, error rate, p95 and saturation.",
        "Diagnose",
    ),
    "logs": CommandSpec(
        "somactl.commands.logs",
        "The last log lines of a service, from its most telling pod.",
        "Diagnose",
    ),
    "rollout": CommandSpec(
        "somactl.commands.rollout",
        "A service's rollouts: revisions, change-causes, state.",
        "Diagnose",
    ),
    "db": CommandSpec(
        "somactl.commands.db",
        "Postgres: the connection pool, active sessions, long-running queries, locks.",
        "Backends",
    ),
    "redis": CommandSpec(
        "somactl.commands.redis_cmd",
        "Redis: PING latency, memory against maxmemory, evictions, clients.",
        "Backends",
    ),
    "tools": CommandSpec(
        "somactl.commands.tools",
        "Tool adapters: health, recent invocations, rate limits.",
        "Backends",
    ),
    "config": CommandSpec(
        "somactl.commands.config",
        "Settings and contexts: show, contexts, use-context.",
        "Setup",
    ),
    "completion": CommandSpec(
        "somactl.commands.completion",
        "Shell completion for bash, zsh and fish: show, install.",
        "Setup",
    ),
    "lab": CommandSpec(
        "somactl.commands.lab",
        "A whole SomaGent production on this machine, to break and drill on.",
        "Lab",
    ),
    "mitigate": CommandSpec(
        "somactl.commands.mitigate",
        "Mitigate: rollback, scale, restart, autoscale, isolate, kill queries, flush Redis.",
        "Mitigate",
    ),
    "incident": CommandSpec(
        "somactl.commands.incident",
        "Run the incident: declare, update, status, escalate, resolve.",
        "Incident",
    ),
    "pir": CommandSpec(
        "somactl.commands.pir",
        "The post-incident review (PIR) of an incident, as Markdown or JSON.",
        "Incident",
    ),
    "audit": CommandSpec(
        "somactl.commands.audit",
        "The audit journal: show the last actions, verify the hash chain.",
        "Incident",
    ),
}
