"""A small world for completion tests: config and kubeconfig contexts, an incident store, a
runbooks.yaml of the user's own, all in a temp dir; and helpers that ask the real console script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SOMACTL = str(VENV_BIN / "somactl")
COMPLETIONS = REPO / "completions"
FORBIDDEN = (
    "typer",
    "click",
    "rich",
    "pydantic",
    "yaml",
    "kubernetes",
    "psycopg",
    "redis",
    "httpx",
    "requests",
    "prometheus_api_client",
)

CONFIG = """\
version: 1
current-context: prod   # where somactl points by default
contexts:
  prod:
    kube-context: gke-prod
    namespace: somagent-production
  lab:
    kubeconfig: ~/.somactl/lab/kubeconfig
    namespace: somagent-production
  "staging-eu": {namespace: staging}
"""

KUBECONFIG = """\
apiVersion: v1
clusters:
- cluster:
    server: https://127.0.0.1:6443
  name: gke-prod
contexts:
- context:
    cluster: gke-prod
    user: oncall
  name: gke-prod
- name: kind-lab
  context:
    cluster: gke-prod
    user: oncall
current-context: gke-prod
kind: Config
users:
- name: oncall
  user: {}
"""

EXTRA_SERVICE = """\
services:
  billing-api:
    title: Billing API
    kind: deployment
    workload: billing-api
    job: billing-api
    port: 8010
    criticality: minor
"""


@dataclass
class World:
    root: Path
    env: dict[str, str]
    state: Path
    custom_runbooks: Path
    open_ids: list[str]
    resolved_ids: list[str]


def base_env(root: Path) -> dict[str, str]:
    """An environment of nothing but the world (no user config, state or kubeconfig)."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
        "XDG_STATE_HOME": str(root / "xdg-state"),
        "XDG_DATA_HOME": str(root / "xdg-data"),
        "SOMACTL_STATE_DIR": str(root / "state"),
        "SOMACTL_CONFIG": str(root / "config.yaml"),
        "KUBECONFIG": str(root / "kubeconfig"),
        # Typer wraps zsh/fish help at the terminal width; the fast path never does
        "TERMINAL_WIDTH": "100000",
    }


def make_incidents(
    state: Path, open_count: int, resolved_count: int
) -> tuple[list[str], list[str]]:
    from somactl.incident.store import IncidentStore

    """Declare open + resolved incidents, interleaved (odd ones resolved first)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    total = open_count + resolved_count
    odd = [i for i in range(total) if i % 2 == 1]
    chosen = set(odd[:resolved_count])
    chosen |= set(
        [i for i in reversed(range(total)) if i not in chosen][: resolved_count - len(chosen)]
    )
    opened: list[str] = []
    resolved: list[str] = []
    with IncidentStore(state) as store:
        for i in range(total):
            inc = store.declare(
                severity=f"P{i % 5}",
                title=f"incident {i}",
                impact="tests",
                service="gateway-api",
                actor="tests",
                now=t0 + timedelta(minutes=i),
            )
            if i in chosen:
                store.resolve(inc.num, root_cause="x", fix="y", actor="tests")
                resolved.append(inc.id)
            else:
                opened.append(inc.id)
    return opened, resolved


def run_somactl(
    args: list[str], env: Mapping[str, str], *, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SOMACTL, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make_world(tmp_path: Path) -> World:
    env = base_env(tmp_path)
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    state = tmp_path / "state"
    opened, resolved = make_incidents(state, open_count=3, resolved_count=2)
    custom = tmp_path / "my-runbooks.yaml"
    text = (REPO / "runbooks.yaml").read_text()
    custom.write_text(text.replace("services:\n", EXTRA_SERVICE, 1))
    # a normal somactl command loads it, which feeds the completion names cache
    proc = run_somactl(["--runbooks", str(custom), "runbook", "validate"], env)
    assert proc.returncode == 0, proc.stderr
    return World(tmp_path, env, state, custom, opened, resolved)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Shared by a module's tests: read it, never change it (make_world for your own)."""
    return make_world(tmp_path_factory.mktemp("world"))


# --- asking the fast path ----------------------------------------------------------------------


def request_env(shell: str, line: str, fish_action: str = "get-args") -> dict[str, str]:
    """The variables the shell scripts set for `line` (the cursor at its end)."""
    if shell == "bash":
        words = line.split(" ")
        # the bash script joins COMP_WORDS with IFS=newline
        return {
            "_SOMACTL_COMPLETE": "complete_bash",
            "COMP_WORDS": "\n".join(words),
            "COMP_CWORD": str(len(words) - 1),
        }
    if shell == "fish":
        return {
            "_SOMACTL_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_ARGS": line,
            "_TYPER_COMPLETE_FISH_ACTION": fish_action,
        }
    if shell == "powershell":
        word = "" if line.endswith(" ") else line.rsplit(" ", maxsplit=1)[-1]
        return {
            "_SOMACTL_COMPLETE": "complete_powershell",
            "_TYPER_COMPLETE_ARGS": line,
            "_TYPER_COMPLETE_WORD_TO_COMPLETE": word,
        }
    return {"_SOMACTL_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line}


def complete(
    world_env: Mapping[str, str], shell: str, line: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Ask the real console script, as the shell scripts do."""
    env = {**world_env, **request_env(shell, line), **extra}
    return run_somactl([], env)


def lines_of(out: str) -> list[str]:
    return [line for line in out.split("\n") if line]


def table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((COMPLETIONS / "somactl-table.json").read_text())
    return data
