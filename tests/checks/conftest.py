"""Fixtures for the check tests: the simulated Kubernetes API and the SomaGent stand-ins
in-process, and the real Postgres and Redis of the integration suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from somactl.clients.kube import KubeTarget
from somactl.core.deadline import Deadline
from somactl.lab.kube import Cluster, KubeSimulator, write_kubeconfig
from somactl.lab.kube.seed import NAMESPACE, seed
from somactl.lab.services import ServicesHandle, start_services
from tests.integration.conftest import (  # noqa: F401 - fixtures, shared with the integration suite
    pg,
    pg_db,
    redis_prefix,
    redis_server,
    runtime_dir,
    runtime_state,
)

GITHUB_TOKEN = "ghp_checkstestsgithubtoken00001"


@pytest.fixture
def sim() -> Iterator[KubeSimulator]:
    cluster = Cluster()
    # settled ten minutes in the past: ticking never pushes the simulator past the wall clock
    seed(cluster, end_at=time.time() - 600)
    server = KubeSimulator(cluster).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube_target(sim: KubeSimulator, tmp_path: Path) -> KubeTarget:
    path = write_kubeconfig(tmp_path / "kubeconfig", sim.url, NAMESPACE)
    return KubeTarget(str(path), None, NAMESPACE)


@pytest.fixture
def services(sim: KubeSimulator) -> Iterator[ServicesHandle]:
    handle = start_services(
        kube_api=sim.url, namespace=NAMESPACE, poll_interval=0.1, seed=11, github_token=GITHUB_TOKEN
    )
    try:
        yield handle
    finally:
        handle.stop()


def deadline(seconds: float = 10.0) -> Deadline:
    return Deadline(seconds)
