"""Fixtures for the command tests: a small production (the simulated Kubernetes API and the
SomaGent stand-ins, in-process) and a somactl config pointing at it, run through the real CLI in
a subprocess (the deadline, os._exit and the output streams are part of what is tested)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from somactl.lab.kube import Cluster, KubeSimulator, write_kubeconfig
from somactl.lab.kube.seed import NAMESPACE, seed
from somactl.lab.services import ServicesHandle, start_services

GITHUB_TOKEN = "ghp_diagnosetestsgithubtoken0001"


@dataclass
class Run:
    rc: int
    out: str
    err: str
    seconds: float

    def json(self) -> Any:
        import json

        return json.loads(self.out)


@dataclass
class Mini:
    """A sim + stand-ins + a config file whose current context `mini` points at them."""

    dir: Path
    sim: KubeSimulator
    services: ServicesHandle
    env: dict[str, str]
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def write_config(self, current: str = "mini") -> None:
        doc = {"version": 1, "current-context": current, "contexts": self.contexts}
        path = Path(self.env["SOMACTL_CONFIG"])
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)

    def somactl(self, *argv: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Run:
        return run_somactl(argv, {**self.env, **(env or {})}, timeout=timeout)


def run_somactl(
    argv: tuple[str, ...] | list[str], env: Mapping[str, str], timeout: float = 60
) -> Run:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "somactl", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env),
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


def base_env(root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOMACTL_", "PG", "KUBE", "REDIS", "GITHUB_TOKEN"))
    }
    (root / "home").mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "SOMACTL_CONFIG": str(root / "config.yaml"),
            "SOMACTL_STATE_DIR": str(root / "state"),
            "HOME": str(root / "home"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    return env


def start_sim() -> KubeSimulator:
    cluster = Cluster()
    seed(cluster, end_at=time.time() - 600)
    return KubeSimulator(cluster).start()


def context_for(
    root: Path, name: str, sim: KubeSimulator, services: ServicesHandle
) -> dict[str, Any]:
    kubeconfig = write_kubeconfig(root / f"kubeconfig-{name}", sim.url, NAMESPACE)
    token = root / f"github-{name}.token"
    token.write_text(GITHUB_TOKEN + "\n")
    token.chmod(0o600)
    return {
        "kubeconfig": str(kubeconfig),
        "namespace": NAMESPACE,
        "tools-api": services.url("tools"),
        "github": {"api": services.url("github"), "token": {"file": str(token)}},
    }


@pytest.fixture
def mini(tmp_path: Path) -> Iterator[Mini]:
    sim = start_sim()
    services = start_services(
        kube_api=sim.url, namespace=NAMESPACE, poll_interval=0.2, seed=5, github_token=GITHUB_TOKEN
    )
    services.tools.tick(60)
    m = Mini(tmp_path, sim, services, base_env(tmp_path))
    m.contexts["mini"] = context_for(tmp_path, "mini", sim, services)
    m.write_config()
    try:
        yield m
    finally:
        services.stop()
        sim.stop()
