"""The runbook names cache: completion for a user's own runbooks.yaml without parsing YAML.

Normal somactl commands that load a runbook (somactl.runbook.loader.load_runbook) record its
service, scenario and tool names here, keyed by the file's real path, mtime and size; completion
reads them back and offers nothing for a file it has not seen in that exact version.
A small JSON file in the state dir; every failure is silent.
"""

from __future__ import annotations

import json
import os

from somactl.complete.paths import state_dir

TYPE_CHECKING = False  # not typing's: completion imports nothing it does not need
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

CACHE_NAME = "completion-cache.json"
MAX_RUNBOOKS = 16
SECTIONS = ("services", "scenarios", "tools")


def cache_path(env: Mapping[str, str]) -> str:
    return os.path.join(state_dir(env), CACHE_NAME)


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def runbook_names(real_path: str, section: str, env: Mapping[str, str]) -> list[str]:
    """The cached names of `section` for the file at `real_path` as it is now, else []."""
    try:
        st = os.stat(real_path)
    except OSError:
        return []
    runbooks = _read(cache_path(env)).get("runbooks")
    entry = runbooks.get(real_path) if isinstance(runbooks, dict) else None
    if not isinstance(entry, dict):
        return []
    if entry.get("mtime_ns") != st.st_mtime_ns or entry.get("size") != st.st_size:
        return []
    names = entry.get(section)
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def remember_runbook(
    real_path: str,
    mtime_ns: int,
    size: int,
    names: Mapping[str, Sequence[str]],
    env: Mapping[str, str] | None = None,
) -> None:
    """Record a successfully loaded runbook's names (no write when nothing changed)."""
    env = os.environ if env is None else env
    path = cache_path(env)
    try:
        data = _read(path)
        runbooks = data.get("runbooks")
        if not isinstance(runbooks, dict):
            runbooks = {}
        entry: dict[str, Any] = {"mtime_ns": mtime_ns, "size": size}
        entry.update({k: list(names.get(k, ())) for k in SECTIONS})
        if runbooks.get(real_path) == entry:
            return
        runbooks.pop(real_path, None)
        runbooks[real_path] = entry  # most recent last; the oldest go first
        while len(runbooks) > MAX_RUNBOOKS:
            runbooks.pop(next(iter(runbooks)))
        data["runbooks"] = runbooks
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, ValueError, TypeError):
        return
