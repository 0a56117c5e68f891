"""somactl's error hierarchy. Every error carries one line, a hint and its exit code.

Layers below `app` raise these; the one handler in `somactl.app` prints them. Messages pass
through `redact()` when printed, but callers must still never put a secret into one.
"""

from __future__ import annotations

from somactl.core.exitcodes import ExitCode


class SomactlError(Exception):
    """Base class: `error: <message>` / `hint: <hint>` on stderr, exit `code`."""

    code: ExitCode = ExitCode.FAILED
    default_hint: str = "re-run with --debug for details"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(SomactlError):
    code = ExitCode.USAGE
    default_hint = "see --help for the accepted values"


class ConfigError(SomactlError):
    code = ExitCode.CONFIG
    default_hint = "fix the file named above; `somactl runbook validate` / `somactl config show`"


class NotConfirmedError(SomactlError):
    code = ExitCode.NOT_CONFIRMED
    default_hint = "nothing was changed; re-run in a terminal, or with --yes to approve the plan"


class PreconditionError(SomactlError):
    code = ExitCode.PRECONDITION
    default_hint = "nothing was changed; re-run to build a new plan from the current state"


class UnreachableError(SomactlError):
    code = ExitCode.UNREACHABLE
    default_hint = "check the address in `somactl config show` and that the backend is up"


class PermissionDeniedError(SomactlError):
    code = ExitCode.PERMISSION
    default_hint = "ask for the privilege named above, or use a context whose role has it"


class AuditUnavailableError(SomactlError):
    code = ExitCode.AUDIT_UNAVAILABLE
    default_hint = "make the state directory writable (SOMACTL_STATE_DIR); nothing was changed"


class PartialError(SomactlError):
    code = ExitCode.PARTIAL
    default_hint = "the results above show which parts failed"


class ActionFailedError(SomactlError):
    code = ExitCode.FAILED
