"""Entry point: `somactl` and `python -m somactl`.

Kept tiny: a shell-completion request is answered here, before Typer is imported
(somactl.complete: about 1x `python -c pass`, against 8x through Typer; bench/completion.py).
"""

from __future__ import annotations

import os
import sys


def _complete() -> None:
    """Answer a completion request from the generated table, then exit (never returns).

    With SOMACTL_COMPLETE_SLOW=1, or when the table cannot be read, return and let Typer answer.
    """
    if os.environ.get("SOMACTL_COMPLETE_SLOW") != "1":
        from somactl.complete import respond

        respond()
    # Typer's own completion. The root app has add_completion=False, so Typer never registered
    # its shell classes (it would answer "Shell bash not supported."): register them here.
    from typer._completion_classes import completion_init

    completion_init()


def main() -> None:
    if "_SOMACTL_COMPLETE" in os.environ:
        _complete()

    from somactl.app import run

    code = run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    # Leave without the interpreter's shutdown: everything is flushed, stores commit as they
    # go, and shutdown costs 200-400 ms once kubernetes/psycopg/redis/httpx are loaded (past a
    # diagnosis's deadline), or waits on (and can crash with) checks abandoned at their
    # deadline in a blocked connect or read (performance.md: "os._exit after flushing").
    os._exit(code)


if __name__ == "__main__":
    main()
