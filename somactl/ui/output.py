"""Printing results: tables for people on stdout, a versioned JSON/YAML envelope for scripts.

Data goes to stdout; progress, hints, warnings and errors go to stderr. Every string passes
through `redact` on the way out.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions, OutputFormat
from somactl.core.redact import redact, redact_obj
from somactl.core.result import Result

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

_consoles: dict[str, Console] = {}


def _console(stream: str) -> Console:
    if stream not in _consoles:
        from rich.console import Console

        is_err = stream == "err"
        tty = (sys.stderr if is_err else sys.stdout).isatty()
        # Not a terminal (a pipe, a file, CI): rich would wrap at 80 columns, which splits
        # one-line errors and squeezes tables. Use $COLUMNS or a wide page instead.
        width = None if tty else int(os.environ.get("COLUMNS") or 160)
        _consoles[stream] = Console(
            stderr=is_err,
            no_color=bool(os.environ.get("NO_COLOR")),
            highlight=False,
            soft_wrap=is_err,
            width=width,
        )
    return _consoles[stream]


def out() -> Console:
    return _console("out")


def err() -> Console:
    return _console("err")


def say(message: str, *, style: str | None = None) -> None:
    """A message for the human: stderr, redacted."""
    err().print(redact(message), style=style, markup=False)


def warn(message: str) -> None:
    say(f"warning: {message}", style="yellow")


def dumps_json(obj: Any) -> str:
    return json.dumps(redact_obj(obj), indent=2, ensure_ascii=False, default=str)


def dumps_yaml(obj: Any) -> str:
    import yaml

    return str(
        yaml.safe_dump(
            json.loads(json.dumps(redact_obj(obj), default=str)),
            sort_keys=False,
            allow_unicode=True,
        )
    )


def write_stdout(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit(
    opts: GlobalOptions,
    result: Result,
    table: Callable[[Any], RenderableType | str | None] | None = None,
) -> int:
    """Print `result` in the chosen format and return its exit code."""
    if opts.output is OutputFormat.json:
        write_stdout(dumps_json(result.envelope()))
    elif opts.output is OutputFormat.yaml:
        write_stdout(dumps_yaml(result.envelope()))
    else:
        rendered = table(result.data) if table is not None else None
        if rendered is None:
            pass
        elif isinstance(rendered, str):
            write_stdout(redact(rendered))
        else:
            out().print(rendered)
        for error in result.errors:
            say(f"error: {error.get('message', '')}", style="red")
    return int(result.exit_code)


def simple_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> RenderableType:
    from rich.table import Table

    tbl = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*[redact("" if cell is None else str(cell)) for cell in row])
    return tbl


def exit_with(code: int | ExitCode) -> None:
    """End the command with `code` (the app's handler turns this into the process status)."""
    import typer

    raise typer.Exit(int(code))
