"""Dynamic completion values, from local files only (never the network, never YAML parsing).

- service, scenario, tool: runbooks.yaml's services, scenarios and tool-adapter services; from
  the table for the shipped file, else from the names cache (--runbooks, $SOMACTL_RUNBOOKS);
- severity (P0-P4) and lab-scenario (`somactl lab break`): from the table;
- context: the somactl config file's contexts (a tiny reader of its `contexts:` keys);
- kube-context: the kubeconfig's contexts ($SOMACTL_KUBECONFIG, $KUBECONFIG, ~/.kube/config);
- incident: ids in the state dir's incidents.db, open first (SQLite, read-only).

Every reader fails quietly: a broken file or database gives no names.
"""

from __future__ import annotations

import os

from somactl.complete.paths import config_path, kubeconfig_paths, shipped_runbooks, state_dir

TYPE_CHECKING = False  # not typing's: importing typing costs a tenth of a TAB
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

KINDS = (
    "service",
    "scenario",
    "tool",
    "severity",
    "lab-scenario",
    "context",
    "kube-context",
    "incident",
)
RUNBOOK_SECTIONS = {"service": "services", "scenario": "scenarios", "tool": "tools"}
INCIDENT_LIMIT = 50
MAX_FILE_BYTES = 4 * 1024 * 1024  # a kubeconfig with embedded certificates is ~10-100 kB


def values(
    kind: str, table: Mapping[str, Any], root_params: Mapping[str, Any], env: Mapping[str, str]
) -> list[str]:
    """The names a parameter of `kind` completes to, in the order Typer's callbacks give them."""
    try:
        if kind in RUNBOOK_SECTIONS:
            return runbook_values(kind, table, root_params.get("runbooks"), env)
        if kind == "context":
            return config_contexts(env)
        if kind == "kube-context":
            return kube_contexts(env)
        if kind == "incident":
            return incident_ids(state_dir(env))
        return [str(v) for v in table.get("values", {}).get(kind, ())]
    except Exception:  # noqa: BLE001 - completion never fails loudly
        return []


def runbook_values(
    kind: str, table: Mapping[str, Any], runbooks: Any, env: Mapping[str, str]
) -> list[str]:
    """From the table for the shipped runbooks.yaml, else from the names cache."""
    path = os.fspath(runbooks) if runbooks else env.get("SOMACTL_RUNBOOKS")
    if path:
        real = os.path.realpath(path)
        if real != os.path.realpath(shipped_runbooks()):
            from somactl.complete.cache import runbook_names

            return runbook_names(real, RUNBOOK_SECTIONS[kind], env)
    return [str(v) for v in table.get("values", {}).get(kind, ())]


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES:
        return None
    return data.decode("utf-8", errors="replace")


def config_contexts(env: Mapping[str, str]) -> list[str]:
    text = _read_text(config_path(env))
    if text is None:
        return []
    from somactl.complete.yamlish import mapping_keys

    return mapping_keys(text, "contexts") or []


def kube_contexts(env: Mapping[str, str]) -> list[str]:
    from somactl.complete.yamlish import list_item_names

    names: list[str] = []
    for path in kubeconfig_paths(env):
        text = _read_text(path)
        if text is not None:
            names.extend(list_item_names(text, "contexts") or [])
    return list(dict.fromkeys(names))


def _sqlite_uri(path: str) -> str:
    quoted = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{quoted}?mode=ro"


def incident_ids(state: str, limit: int = INCIDENT_LIMIT) -> list[str]:
    """Open incidents newest first, then the latest resolved ones (incident.store.completion_ids).

    Read-only (never creates the database), two indexed queries: the open ones through the
    partial index, the resolved ones by a reverse rowid scan that stops at the limit.
    """
    path = os.path.join(state, "incidents.db")
    if not os.path.isfile(path):
        return []
    import sqlite3

    try:
        db = sqlite3.connect(_sqlite_uri(path), uri=True, timeout=0.5)
        try:
            rows = db.execute(
                "SELECT num FROM incidents WHERE status <> 'resolved' ORDER BY num DESC LIMIT ?",
                (limit,),
            ).fetchall()
            if len(rows) < limit:
                rows += db.execute(
                    "SELECT num FROM incidents WHERE status = 'resolved' ORDER BY num DESC LIMIT ?",
                    (limit - len(rows),),
                ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [f"INC-{int(r[0])}" for r in rows]
