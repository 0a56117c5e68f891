"""somactl pir: the post-incident review, from the runbook's template and the incident timeline."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from somactl.core.options import OutputFormat
from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with, say, write_stdout

HELP = "The post-incident review (PIR) of an incident, as Markdown or JSON."

EPILOG = """\b
Examples:
  somactl pir INC-7
  somactl pir 7 --out reviews/INC-7.md
  somactl pir INC-7 --format json | jq -r .data.markdown

\b
The review is due within 48 hours of resolution (runbooks.yaml pir.due); `somactl incident
status` reminds until it has been written with --out. The timeline lists every declaration,
update, somactl check (with its verdict) and action (with its outcome) and its time."""


class Format(StrEnum):
    markdown = "markdown"
    json = "json"


def _complete_incident(ctx: typer.Context, incomplete: str) -> list[str]:
    import os

    from somactl.config.settings import default_state_dir
    from somactl.incident.store import completion_ids

    state = os.environ.get("SOMACTL_STATE_DIR") or default_state_dir(os.environ)
    return [i for i in completion_ids(Path(state)) if i.startswith(incomplete.upper())]


app = typer.Typer(help=HELP, epilog=EPILOG, rich_markup_mode=None)


@app.command("pir", help=HELP, epilog=EPILOG)
def pir(
    ctx: typer.Context,
    incident: Annotated[
        str | None,
        typer.Argument(
            help="INC-7 or 7 (default: the only incident awaiting its review, or the only open "
            "one).",
            autocompletion=_complete_incident,
            show_default=False,
            metavar="INCIDENT",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the Markdown to FILE and record it on the timeline.",
            dir_okay=False,
            metavar="FILE",
        ),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="markdown (default) or json (the -o json envelope).")
    ] = Format.markdown,
) -> None:
    from somactl.incident.manage import state_dir_of
    from somactl.incident.pir import pir_for
    from somactl.runbook.loader import load_runbook
    from somactl.ui.settings import settings_for

    opts = options(ctx)
    if fmt is Format.json and not opts.machine_output:
        opts.output = OutputFormat.json
    doc = pir_for(state_dir_of(settings_for(opts)), incident, load_runbook(opts.runbooks), out=out)
    if doc.get("late"):
        say(
            f"warning: the review of {doc['incident']} is late (was due {doc['pir_due']})",
            style="yellow",
        )
    if out is not None and not opts.machine_output:
        say(f"wrote {out} ({doc['incident']}; recorded on its timeline)")
        exit_with(0)

    def table(d: dict[str, Any]) -> None:
        write_stdout(d["markdown"])

    exit_with(emit(opts, Result("pir", doc), table))
