"""What a command returns: one object that `ui.output` prints as a table or a versioned envelope."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from somactl.core.exitcodes import ExitCode

ENVELOPE_VERSION = 1


@dataclass
class Result:
    command: str
    data: Any
    exit_code: ExitCode = ExitCode.OK
    status: str = "ok"
    errors: list[dict[str, Any]] = field(default_factory=list)

    def envelope(self) -> dict[str, Any]:
        return {
            "somactl": ENVELOPE_VERSION,
            "command": self.command,
            "status": self.status,
            "exit_code": int(self.exit_code),
            "data": self.data,
            "errors": self.errors,
        }


def error_envelope(command: str, code: ExitCode, message: str, hint: str) -> dict[str, Any]:
    return Result(
        command=command,
        data=None,
        exit_code=code,
        status="error",
        errors=[{"message": message, "hint": hint, "exit_code": int(code)}],
    ).envelope()
