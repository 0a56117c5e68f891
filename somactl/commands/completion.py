"""somactl completion: print or install the bash, zsh or fish completion script."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated, Any

import typer

from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with, say

HELP = "Shell completion for bash, zsh and fish: show, install."

EPILOG = """\b
Examples:
  somactl completion install            # for $SHELL
  somactl completion install zsh
  somactl completion show bash > /etc/bash_completion.d/somactl

\b
Completion answers before the rest of somactl loads (a TAB costs about what starting Python
does): commands, options and their values, service and scenario names, contexts (config and
kubeconfig), tool names, severities and incident ids, all from local files. A runbooks.yaml
of your own (--runbooks, $SOMACTL_RUNBOOKS) completes once a somactl command has loaded it."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.callback()
def main() -> None:
    """Shell completion for bash, zsh and fish: show, install."""


@app.command("show")
def show(
    ctx: typer.Context,
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the completion script for SHELL.

    Example: somactl completion show zsh > ~/.zfunc/_somactl
    """
    from somactl.complete.scripts import script

    opts = options(ctx)
    data = {"shell": shell.value, "script": script(shell.value)}
    exit_with(emit(opts, Result("completion show", data), lambda d: d["script"]))


@app.command("install")
def install(
    ctx: typer.Context,
    shell: Annotated[
        Shell | None,
        typer.Argument(help="bash, zsh or fish (default: from $SHELL).", show_default=False),
    ] = None,
) -> None:
    """Write the completion script where SHELL loads it from, and say what was done.

    Example: somactl completion install
    """
    from somactl.complete.install import install as do_install

    opts = options(ctx)
    done = do_install(shell.value if shell else None, os.environ)

    def text(d: dict[str, Any]) -> str:
        verb = "wrote" if d["changed"] else "up to date:"
        return f"{verb} {d['path']} ({d['shell']})"

    code = emit(opts, Result("completion install", done), text)
    say(done["activate"])
    exit_with(code)
