"""Entry point: `somactl` and `python -m somactl`.

Kept tiny: the shell-completion fast path (a later step) answers here before Typer is imported.
"""

from __future__ import annotations

import sys


def main() -> None:
    from somactl.app import run

    code = run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    import threading

    if threading.active_count() > 1:
        # Checks abandoned at their deadline may sit in a blocked connect or read; interpreter
        # shutdown would wait for (or crash on) them. Everything is flushed: leave now.
        import os

        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
