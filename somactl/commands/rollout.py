"""somactl rollout: a service's rollouts (the runbook's `kubectl rollout history`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with

HELP = "A service's rollouts: revisions, change-causes, state."

EPILOG = """\b
Examples:
  somactl rollout history gateway-api
  somactl -o json rollout history gateway-api | jq .data.checks[0].evidence.previous_revision

\b
Exit codes: 0 complete, 10 progressing or paused, 11 stalled (progress deadline exceeded)."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """A service's rollouts: revisions, change-causes, state."""


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    from somactl.runbook.loader import names_for_completion

    path = ctx.find_root().params.get("runbooks")
    return [n for n in names_for_completion("services", path) if n.startswith(incomplete)]


@app.command("history", short_help="Revisions with change-cause and age; the current marked.")
def history(
    ctx: typer.Context,
    service: Annotated[
        str, typer.Argument(help="A service of runbooks.yaml.", autocompletion=_complete_service)
    ],
) -> None:
    """The revisions of the service's Deployment (its ReplicaSets), newest last, with the
    change-cause, image and age; the current one marked; the rollout state."""
    from somactl.ops.single import rollout_history

    opts = options(ctx)

    def table(data: dict[str, Any]) -> Any:
        from rich.console import Group
        from rich.text import Text

        from somactl.ui.output import simple_table

        check = data["checks"][0]
        ev = check.get("evidence") or {}
        rows = [
            (
                ("* " if r.get("current") else "  ") + str(r.get("revision")),
                r.get("change_cause") or "<none>",
                r.get("created"),
                r.get("image"),
                f"{r.get('ready')}/{r.get('replicas')}",
            )
            for r in ev.get("revisions") or []
        ]
        return Group(
            Text(f"{data['workload']} in {data['namespace']}", style="bold"),
            simple_table(["REVISION", "CHANGE-CAUSE", "CREATED", "IMAGE", "READY"], rows),
            Text(f"{check.get('status')}: {check.get('summary')}"),
        )

    exit_with(emit(opts, rollout_history(opts, service), table))
