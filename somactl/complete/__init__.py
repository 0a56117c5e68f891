"""Shell completion that answers before Typer is imported.

`somactl` (the console script) hands a request carrying `_SOMACTL_COMPLETE` to `respond()`, which
answers from a table generated at build time by walking the real Typer tree
(`scripts/gen-completions.py` -> completions/somactl-table.json) plus a few local, read-only
sources for dynamic values (runbook names cache, config and kubeconfig contexts, the incident
store). It speaks Typer's own protocol and output formats, so Typer's scripts and ours both work.

Standard library only, and nothing from somactl outside this package except somactl.core:
importing typer, rich, pydantic, yaml or a backend library here would cost 15x the answer.
"""

from __future__ import annotations

COMPLETE_VAR = "_SOMACTL_COMPLETE"
SLOW_VAR = "SOMACTL_COMPLETE_SLOW"


def respond() -> None:
    """Answer the completion request in the environment and end the process (exit 0 or 1).

    Returns only when the table cannot be read, so that the caller can fall back to Typer.
    """
    from somactl.complete.engine import respond as _respond

    _respond()
