"""Consent for mutations: only a person at a terminal, typing `yes` (or the target's name).

Piped input is never consent (Click's confirm accepts a piped `y`; we do not): without a
terminal, and without --yes, the command refuses with exit 4 before any mutating request.
Machine output (-o json|yaml) never prompts: it needs --yes, as Terraform's -json does.
"""

from __future__ import annotations

import sys
from typing import TextIO

from somactl.core.errors import NotConfirmedError
from somactl.core.options import GlobalOptions


def _tty_streams() -> tuple[TextIO, TextIO] | None:
    if sys.stdin is not None and sys.stdin.isatty():
        return sys.stdin, sys.stderr
    return None


def require_consent(
    opts: GlobalOptions,
    *,
    yes: bool,
    what: str,
    typed_name: str | None = None,
) -> str:
    """Return how consent was given ("--yes", "typed yes", "typed name"); raise exit 4 otherwise.

    `what` is the action in a few words ("roll back deployment gateway-api to revision 2").
    `typed_name` makes the person type that name instead of `yes` (high-impact actions).
    """
    if yes:
        return "--yes"
    if opts.machine_output:
        raise NotConfirmedError(
            f"confirmation required for: {what}; --output {opts.output} never prompts",
            "review the plan with --dry-run, then re-run with --yes",
        )
    streams = _tty_streams()
    if streams is None:
        raise NotConfirmedError(
            "confirmation required: stdin is not a terminal; re-run with --yes",
            "piped input is never consent; nothing was changed",
        )
    stdin, stderr = streams
    expected = typed_name or "yes"
    prompt = (
        f"Type the name '{typed_name}' to {what}: " if typed_name else f"Type 'yes' to {what}: "
    )
    stderr.write(prompt)
    stderr.flush()
    try:
        answer = stdin.readline()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if not answer:
        raise NotConfirmedError("aborted: no answer", "nothing was changed")
    if answer.strip() != expected:
        raise NotConfirmedError(
            "aborted by user"
            if typed_name is None
            else f"aborted: the name did not match '{expected}'",
            "nothing was changed",
        )
    return "typed name" if typed_name else "typed yes"
