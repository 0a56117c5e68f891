"""The global options every command sees (parsed once by the root callback)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


DEFAULT_TIMEOUT = 10.0


@dataclass
class GlobalOptions:
    context: str | None = None
    namespace: str | None = None
    output: OutputFormat = OutputFormat.table
    timeout: float = DEFAULT_TIMEOUT
    runbooks: Path | None = None
    debug: bool = False
    # set by the command being run, so the error handler can label the JSON envelope
    command: str = "somactl"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def machine_output(self) -> bool:
        return self.output is not OutputFormat.table
