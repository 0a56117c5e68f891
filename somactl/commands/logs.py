"""somactl logs: the last log lines of a service (the pod that explains most)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with, say, write_stdout

HELP = "The last log lines of a service, from its most telling pod."

EPILOG = """\b
Examples:
  somactl logs gateway-api
  somactl logs gateway-api --tail 50 --previous
  somactl logs gateway-api --all --save

\b
Like `kubectl logs deployment/NAME --tail=200`, but the pod is the one in trouble (crash-looping,
not ready, restarting) rather than the first, and a crash-looping container's previous run is
shown. --save writes the logs and a sha256 manifest under the state directory (forensics)."""

app = typer.Typer(help=HELP, epilog=EPILOG, rich_markup_mode=None)


def _complete_service(ctx: typer.Context, incomplete: str) -> list[str]:
    from somactl.runbook.loader import names_for_completion

    path = ctx.find_root().params.get("runbooks")
    return [n for n in names_for_completion("services", path) if n.startswith(incomplete)]


@app.command("logs", help=HELP, epilog=EPILOG)
def logs(
    ctx: typer.Context,
    service: Annotated[
        str,
        typer.Argument(help="A service of runbooks.yaml.", autocompletion=_complete_service),
    ],
    tail: Annotated[
        int | None,
        typer.Option("--tail", help="Lines from the end (default: runbooks.yaml, 200).", min=0),
    ] = None,
    pod: Annotated[str | None, typer.Option("--pod", help="This pod instead.")] = None,
    previous: Annotated[
        bool, typer.Option("--previous", help="The previous (crashed) container's logs.")
    ] = False,
    all_pods: Annotated[bool, typer.Option("--all", help="Every pod of the service.")] = False,
    save: Annotated[
        bool, typer.Option("--save", help="Also write them under the state directory.")
    ] = False,
) -> None:
    from somactl.ops.single import logs as read

    opts = options(ctx)
    result = read(
        opts, service, tail=tail, pod=pod, previous=previous, all_pods=all_pods, save=save
    )

    def table(d: dict[str, Any]) -> None:
        entries = d.get("logs") or []
        for e in entries:
            note = f"pod/{e['pod']} ({e['status']})" + (
                ", previous container" if e["previous"] else ""
            )
            if len(entries) == 1 and not all_pods:
                say(f"Found {d['pods_found']} pods, using {note}: {e['error_lines']} error lines")
            else:
                write_stdout(f"==> {note} <==")
            if e["text"]:
                write_stdout(e["text"])
        if d.get("saved"):
            say(f"saved to {d['saved']}")

    exit_with(emit(opts, result, table))
