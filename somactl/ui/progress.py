"""Progress for long commands: one line per finished check, on a terminal only (stderr).

Piped or redirected stderr, `--output json|yaml` consumers and `SOMACTL_NO_PROGRESS=1` get no
ticks; the result itself always goes to stdout.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from somactl.core.redact import redact

if TYPE_CHECKING:
    from somactl.checks.base import CheckResult

SYMBOL = {"ok": "✓", "warn": "!", "critical": "✗", "unknown": "?"}
STYLE = {"ok": "green", "warn": "yellow", "critical": "bold red", "unknown": "magenta"}


def enabled() -> bool:
    if os.environ.get("SOMACTL_NO_PROGRESS") == "1":
        return False
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


class Ticker:
    """Prints `✓ k8s.pods  ok  45 ms  3/3 ready` to stderr as each check finishes."""

    def __init__(self, what: str, *, active: bool | None = None) -> None:
        self.what = what
        self.active = enabled() if active is None else active
        self.done = 0
        self.total = 0

    def start(self, total: int, seconds_left: float) -> None:
        self.total = total
        if self.active:
            from somactl.ui.output import err

            err().print(
                f"{self.what}: {total} checks, deadline {seconds_left:.1f}s",
                style="dim",
                markup=False,
                highlight=False,
            )

    def tick(self, result: CheckResult) -> None:
        self.done += 1
        if not self.active:
            return
        from rich.text import Text

        from somactl.ui.output import err

        status = str(result.status)
        line = Text()
        line.append(f"  {SYMBOL.get(status, '?')} ", style=STYLE.get(status))
        line.append(f"{result.id:<24}", style="bold")
        line.append(f"{status:<9}", style=STYLE.get(status))
        line.append(f"{result.duration * 1000:>7.0f} ms  ", style="dim")
        line.append(redact(result.summary)[:110])
        err().print(line, soft_wrap=False, overflow="ellipsis", no_wrap=True)
