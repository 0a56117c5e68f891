"""The root Typer app: global options, lazy command registration, and the one error handler.

Nothing else lives here. `somactl --help` must stay light: command modules (and the backend
libraries they pull in) are imported only when their command runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from typer import _click
from typer.core import TyperGroup

from somactl import __version__
from somactl.commands import REGISTRY
from somactl.core.durations import parse_duration
from somactl.core.errors import SomactlError, UsageError
from somactl.core.exitcodes import ExitCode, exit_codes_epilog
from somactl.core.options import GlobalOptions, OutputFormat
from somactl.core.redact import redact
from somactl.core.result import error_envelope

HELP = """The on-call CLI for the SomaGent incident-response runbook.

Diagnose a service, mitigate with a plan and consent, run the incident from declaration to
post-incident review; `somactl lab` gives you a whole SomaGent production on this machine.

Examples:

\b
  somactl lab up && somactl lab break gateway-down   # a production to practise on
  somactl status                                     # every service at a glance
  somactl diagnose gateway-api                       # what is wrong, how bad, what to do
  somactl mitigate rollback gateway-api              # plan, consent, apply, verify
  somactl incident declare --severity P0 --title "Gateway API Down" --impact "..."
  somactl runbook run gateway-api-down gateway-api   # the runbook, step by step
  somactl -o json diagnose gateway-api | jq .data.verdict
"""

# Global options and how many values each takes: they are accepted anywhere on the command line
# (kubectl-style) and moved in front of the subcommand before Click parses.
GLOBAL_OPTIONS: dict[str, int] = {
    "--context": 1,
    "--namespace": 1,
    "-n": 1,
    "--output": 1,
    "-o": 1,
    "--timeout": 1,
    "--runbooks": 1,
    "--debug": 0,
}


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move global options that follow a subcommand to the front (`diagnose x -o json`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest.extend(args[i:])
            break
        name = tok.split("=", 1)[0] if tok.startswith("--") else tok
        if name in GLOBAL_OPTIONS:
            arity = GLOBAL_OPTIONS[name] if "=" not in tok else 0
            front.extend(args[i : i + 1 + arity])
            i += 1 + arity
            continue
        if len(tok) > 2 and tok[:2] in ("-o", "-n") and not tok.startswith("--"):
            front.extend([tok[:2], tok[2:]])
            i += 1
            continue
        rest.append(tok)
        i += 1
    return front + rest


_TYPER_COMPLETION_PARAMS = ("install_completion", "show_completion")


# The command path being run ("db pool"), for error envelopes raised before a Result exists.
_current_command: list[str] = []


def _track_invocations(command: _click.Command, path: str) -> None:
    """Record the full path of whichever leaf command runs (error envelopes name it)."""
    subcommands = getattr(command, "commands", None)
    if isinstance(subcommands, dict) and subcommands:
        for name, sub in subcommands.items():
            _track_invocations(sub, f"{path} {name}")
        return
    original = command.invoke

    def invoke(ctx: _click.Context) -> object:
        _current_command[:] = [path]
        return original(ctx)

    command.invoke = invoke  # type: ignore[method-assign]


class LazyGroup(TyperGroup):
    """A TyperGroup whose subcommands are imported on first use, listed from REGISTRY."""

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(REGISTRY)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        spec = REGISTRY.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec.module)
        command = typer.main.get_command(module.app)
        command.name = cmd_name
        # Typer adds --install-completion/--show-completion to every app; somactl has its own
        # `completion` command, so the sub-apps must not offer them.
        command.params = [p for p in command.params if p.name not in _TYPER_COMPLETION_PARAMS]
        _track_invocations(command, cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for name, spec in REGISTRY.items():
            panels.setdefault(spec.panel, []).append((name, spec.help))
        for panel, rows in panels.items():
            with formatter.section(f"{panel} commands"):
                formatter.write_dl(rows)

    def shell_complete(
        self, ctx: _click.Context, incomplete: str
    ) -> list[_click.shell_completion.CompletionItem]:
        from typer._click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=spec.help)
            for name, spec in REGISTRY.items()
            if name.startswith(incomplete)
        ]
        items.extend(_click.Command.shell_complete(self, ctx, incomplete))
        return items


app = typer.Typer(
    cls=LazyGroup,
    help=HELP,
    epilog=exit_codes_epilog(),
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"somactl {__version__}\n")
        raise typer.Exit(0)


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    seconds = parse_duration(value, option="--timeout")
    if seconds <= 0:
        raise UsageError("--timeout: the deadline must be more than 0s", "e.g. --timeout 10s")
    return seconds


@app.callback()
def main(
    ctx: typer.Context,
    context: Annotated[
        str | None, typer.Option("--context", help="Named context from the config file.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Kubernetes namespace override.")
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="table for people; json/yaml for scripts."),
    ] = OutputFormat.table,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", help="Total deadline of the command, e.g. 10s, 1m.", metavar="DURATION"
        ),
    ] = None,
    runbooks: Annotated[
        Path | None,
        typer.Option(
            "--runbooks", help="runbooks.yaml to use (default: the shipped one).", metavar="PATH"
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (secrets still masked).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """The on-call CLI for the SomaGent incident-response runbook."""
    opts = GlobalOptions(
        context=context,
        namespace=namespace,
        output=output,
        runbooks=runbooks,
        debug=debug,
        command=ctx.invoked_subcommand or "somactl",
    )
    parsed = _timeout(timeout)
    if parsed is not None:
        opts.timeout = parsed
        opts.extra["timeout_explicit"] = True
    ctx.obj = opts


def _wants_json(argv: Sequence[str]) -> OutputFormat:
    for i, tok in enumerate(argv):
        if tok in ("-o", "--output") and i + 1 < len(argv):
            return (
                OutputFormat(argv[i + 1]) if argv[i + 1] in ("json", "yaml") else OutputFormat.table
            )
        if tok.startswith("--output="):
            val = tok.split("=", 1)[1]
            return OutputFormat(val) if val in ("json", "yaml") else OutputFormat.table
    return OutputFormat.table


def _report(argv: Sequence[str], code: ExitCode, message: str, hint: str) -> None:
    from somactl.ui.output import dumps_json, dumps_yaml, write_stdout

    message, hint = redact(message), redact(hint)
    fmt = _wants_json(argv)
    if fmt is not OutputFormat.table:
        command = (_current_command or [next((a for a in argv if a in REGISTRY), "somactl")])[0]
        env = error_envelope(command, code, message, hint)
        write_stdout(dumps_json(env) if fmt is OutputFormat.json else dumps_yaml(env))
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")


def _usage_hint(exc: _click.exceptions.UsageError) -> str:
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "somactl"
    return f"see `{path} --help`"


def run(argv: Sequence[str] | None = None) -> int:
    """Run somactl with `argv` and return the process exit status (never raises)."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    _current_command.clear()
    debug = "--debug" in args or os.environ.get("SOMACTL_DEBUG") == "1"
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="somactl", standalone_mode=False)
        code = int(rv) if isinstance(rv, int) else 0
        if code == ExitCode.INTERRUPTED:  # Typer turns KeyboardInterrupt into Exit(130)
            sys.stderr.write("interrupted\n")
        return code
    except SomactlError as exc:
        if debug:
            _print_traceback(exc)
        _report(args, exc.code, exc.message, exc.hint)
        return int(exc.code)
    except _click.exceptions.UsageError as exc:
        _report(args, ExitCode.USAGE, exc.format_message(), _usage_hint(exc))
        return int(ExitCode.USAGE)
    except _click.exceptions.ClickException as exc:
        _report(args, ExitCode.FAILED, exc.format_message(), "")
        return int(ExitCode.FAILED)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):
            _report(args, ExitCode.NOT_CONFIRMED, "no answer (end of input)", "nothing was changed")
            return int(ExitCode.NOT_CONFIRMED)
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one last-resort handler: no traceback for users
        if debug:
            _print_traceback(exc)
        _report(
            args,
            ExitCode.FAILED,
            f"internal error ({type(exc).__name__}): {exc}",
            "re-run with --debug and report it with the output",
        )
        return int(ExitCode.FAILED)


def _print_traceback(exc: BaseException) -> None:
    """A traceback for --debug: frames and messages (never locals), redacted."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(redact(text))
