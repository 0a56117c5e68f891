"""The exit-code contract (public API: README, `somactl --help` epilog, one test per code)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    CONFIG = 3
    NOT_CONFIRMED = 4
    PRECONDITION = 5
    UNREACHABLE = 6
    PERMISSION = 7
    AUDIT_UNAVAILABLE = 8
    PARTIAL = 9
    WARNINGS = 10
    CRITICAL = 11
    INTERRUPTED = 130


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "ok: healthy, or the action was applied / nothing needed doing",
    ExitCode.FAILED: "internal error, or the action itself failed",
    ExitCode.USAGE: "usage: bad flags or arguments (no network call was made)",
    ExitCode.CONFIG: "config: settings or runbooks.yaml invalid",
    ExitCode.NOT_CONFIRMED: "not confirmed: declined, or no terminal and no --yes",
    ExitCode.PRECONDITION: "precondition failed: state changed since the plan, conflict, paused, "
    "revision missing",
    ExitCode.UNREACHABLE: "unreachable: a backend did not answer within its deadline",
    ExitCode.PERMISSION: "permission denied",
    ExitCode.AUDIT_UNAVAILABLE: "audit journal unavailable: refused to act",
    ExitCode.PARTIAL: "partial: some checks could not run / some targets failed",
    ExitCode.WARNINGS: "diagnosis found warnings",
    ExitCode.CRITICAL: "diagnosis found critical problems",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_codes_epilog() -> str:
    """The table printed under `somactl --help`."""
    lines = ["\b", "Exit codes:"]
    lines += [f"  {int(code):>3}  {text}" for code, text in EXIT_CODE_MEANINGS.items()]
    return "\n".join(lines)
