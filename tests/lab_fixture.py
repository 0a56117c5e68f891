"""The whole lab as a pytest fixture: the same `somactl.lab.stack` the demo runs, in a temp dir.

Session-scoped (it takes a few seconds to start); tests that break something heal it in a
`finally`, and each test that needs a clean slate calls `lab.heal()` first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from somactl.lab import scenarios, stack
from tests.helpers import missing


@dataclass
class Lab:
    dir: Path
    env: dict[str, str]  # the process environment a somactl command needs to reach the lab

    @property
    def info(self) -> stack.LabInfo:
        return stack.load(self.dir)

    def break_scenario(self, name: str) -> dict[str, Any]:
        return scenarios.break_scenario(self.info, name)

    def heal(self, *names: str) -> dict[str, Any]:
        return scenarios.heal(self.info, list(names) or None)

    def somactl(
        self,
        *argv: str,
        input: str | None = None,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess against the lab (stdin is /dev/null unless input)."""
        return subprocess.run(
            [sys.executable, "-m", "somactl", *argv],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )


def _lab_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOMACTL_", "PG", "KUBE"))}
    env.update(
        {
            "SOMACTL_CONFIG": str(root / "config.yaml"),
            "SOMACTL_STATE_DIR": str(root / "state"),
            "KUBECACHEDIR": str(root / "kubecache"),
            "HOME": str(root / "home"),
            "NO_COLOR": "1",
        }
    )
    (root / "home").mkdir(parents=True, exist_ok=True)
    return env


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from somactl.lab.runtime.procs import MissingBinaryError

    root = tmp_path_factory.mktemp("lab")
    env = _lab_env(root)
    lab_dir = root / "state" / "lab"
    try:
        stack.up(lab_dir, env=env, tools_port=0)
    except MissingBinaryError as exc:  # fails under CI=true, skips otherwise
        stack.down(lab_dir)
        missing(f"{exc.message} ({exc.hint})")
    env["KUBECONFIG"] = str(lab_dir / "kubeconfig")
    try:
        yield Lab(lab_dir, env)
    finally:
        stack.down(lab_dir)
