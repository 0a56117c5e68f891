"""The command's one absolute deadline, counted from when the process started.

`--timeout 10s` promises that the command is over within 10 s of being typed, so the start-up
(Python, Typer, the runbook) is part of the budget: the deadline is anchored at the process's
start time when this process was started for this command. In a long-lived process (tests calling
`somactl.app.run` in-process, a REPL) the process start says nothing about the command, and the
deadline starts now.
"""

from __future__ import annotations

import os
import time

from somactl.core.deadline import Deadline

# A CLI process reaches its command well within this; anything older is a long-lived process.
MAX_STARTUP = 3.0


def seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux /proc), or None when unknown."""
    try:
        with open(f"/proc/{os.getpid()}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        # the command name (field 2) may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        start_ticks = int(fields[19])  # field 22 (starttime), counted from field 3
        ticks = os.sysconf("SC_CLK_TCK")
        boot_now = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    elapsed = boot_now - start_ticks / ticks
    return elapsed if elapsed >= 0 else None


def command_deadline(seconds: float) -> Deadline:
    """A Deadline of `seconds` for the running command (see the module docstring)."""
    now = time.monotonic()
    since = seconds_since_process_start()
    if since is not None and since <= MAX_STARTUP:
        return Deadline(seconds, start=now - since)
    return Deadline(seconds, start=now)
