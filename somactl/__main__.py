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
    sys.exit(code)


if __name__ == "__main__":
    main()
