"""Fixtures: an in-process simulator on a free loopback port, and the real kubectl 1.32."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from somactl.lab.kube import Cluster, KubeSimulator, write_kubeconfig
from somactl.lab.kube.seed import NAMESPACE, seed
from tests.helpers import missing

KUBECTL_132 = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"


def kubectl_path() -> str | None:
    if os.path.exists(KUBECTL_132):
        return KUBECTL_132
    return shutil.which("kubectl")


@dataclass
class Run:
    rc: int
    out: str
    err: str


class Kubectl:
    """Runs the real kubectl with an isolated HOME, KUBECACHEDIR and kubeconfig."""

    def __init__(self, binary: str, env: dict[str, str]) -> None:
        self.binary = binary
        self.env = env

    def __call__(self, *args: str, timeout: float = 30.0) -> Run:
        proc = subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binary, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def sim() -> Iterator[KubeSimulator]:
    cluster = Cluster()
    # Settle ten minutes in the past so ticks never push server time past the wall clock
    # (kubectl describe computes event ages client-side).
    seed(cluster, end_at=time.time() - 600)
    server = KubeSimulator(cluster).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig(sim: KubeSimulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", sim.url, NAMESPACE)


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    binary = kubectl_path()
    if binary is None:
        missing("kubectl is not installed; these tests use it as the referee")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(tmp_path / "kubecache"),
        "TZ": "UTC",
    }

    return Kubectl(binary, env)


@pytest.fixture
def ticker(sim: KubeSimulator) -> Iterator[Callable[[float], None]]:
    """Drive the clock from a background thread (for commands that wait, like rollout status)."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(step: float = 1.0, every: float = 0.02) -> None:
        def loop() -> None:
            while not stop.wait(every):
                sim.tick(step)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        threads.append(t)

    yield start
    stop.set()
    for t in threads:
        t.join(timeout=5)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
