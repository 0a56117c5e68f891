"""What every command module needs from the root: its global options and the runbook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from somactl.core.options import GlobalOptions

if TYPE_CHECKING:
    import typer

    from somactl.runbook.schema import Runbook


def options(ctx: typer.Context) -> GlobalOptions:
    """The GlobalOptions the root callback parsed (defaults when run outside the app)."""
    obj: Any = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def runbook_for(opts: GlobalOptions) -> Runbook:
    """The runbook of --runbooks, $SOMACTL_RUNBOOKS or the shipped file (cached per process)."""
    from somactl.runbook.loader import load_runbook

    return load_runbook(opts.runbooks)
