"""Typer `autocompletion=` callbacks over the same local sources as the fast path.

When a command's parameter uses one of these, Typer's own completion and the fast path give the
same names, and scripts/gen-completions.py knows the parameter's kind without guessing:

    from somactl.complete import callbacks
    service: Annotated[str, typer.Argument(autocompletion=callbacks.services)]

Standard library only, like the rest of this package.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

KIND_ATTR = "__somactl_kind__"

_table: dict[str, dict[str, Any]] = {}  # the generated table, loaded on first use


def _root_params(ctx: Any) -> dict[str, Any]:
    try:
        return dict(ctx.find_root().params)
    except (AttributeError, TypeError):
        return {}


def _for_kind(kind: str) -> Callable[[Any, str], list[str]]:
    def complete(ctx: Any, incomplete: str) -> list[str]:
        from somactl.complete.engine import load_table
        from somactl.complete.sources import values

        if "table" not in _table:
            _table["table"] = load_table() or {}
        found = values(kind, _table["table"], _root_params(ctx), os.environ)
        return [v for v in found if v.startswith(incomplete)]

    name = kind.replace("-", "_")
    complete.__name__ = complete.__qualname__ = f"complete_{name}"
    complete.__doc__ = f"Shell completion: {kind} names from local data."
    setattr(complete, KIND_ATTR, kind)
    return complete


services = _for_kind("service")
scenarios = _for_kind("scenario")
tools = _for_kind("tool")
severities = _for_kind("severity")
lab_scenarios = _for_kind("lab-scenario")
contexts = _for_kind("context")
kube_contexts = _for_kind("kube-context")
incidents = _for_kind("incident")

BY_KIND: dict[str, Callable[[Any, str], list[str]]] = {
    "service": services,
    "scenario": scenarios,
    "tool": tools,
    "severity": severities,
    "lab-scenario": lab_scenarios,
    "context": contexts,
    "kube-context": kube_contexts,
    "incident": incidents,
}
