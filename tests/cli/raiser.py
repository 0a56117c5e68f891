"""A command module used only by tests: it raises what it is told, to test the one handler."""

from __future__ import annotations

from typing import Annotated

import typer

from somactl.core import errors
from somactl.core.redact import register_secret

app = typer.Typer(help="test-only: raise an error")

ERRORS: dict[str, type[errors.SomactlError]] = {
    "failed": errors.ActionFailedError,
    "usage": errors.UsageError,
    "config": errors.ConfigError,
    "not-confirmed": errors.NotConfirmedError,
    "precondition": errors.PreconditionError,
    "unreachable": errors.UnreachableError,
    "permission": errors.PermissionDeniedError,
    "audit": errors.AuditUnavailableError,
    "partial": errors.PartialError,
}


@app.callback()
def main() -> None:
    """test-only: raise an error"""


@app.command("raise")
def raise_(
    kind: Annotated[str, typer.Argument()],
    secret: Annotated[str, typer.Option()] = "",
) -> None:
    if secret:
        register_secret(secret)
    if kind == "interrupt":
        raise KeyboardInterrupt
    if kind == "internal":
        raise ValueError(f"boom with postgresql://u:{secret}@db/x")
    if kind.startswith("exit-"):
        raise typer.Exit(int(kind[5:]))
    raise ERRORS[kind](f"it failed while holding {secret}", "do the thing")
