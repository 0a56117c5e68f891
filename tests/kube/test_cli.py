"""`somactl lab kube-api` as a process: seeded, writes a kubeconfig, stops cleanly on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from somactl.commands import REGISTRY


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "somactl",
            "lab",
            "kube-api",
            "--kubeconfig",
            str(kubeconfig),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SOMACTL_STATE_DIR": str(tmp_path / "state")},
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[0].startswith("simulated Kubernetes API (v1.32) on http://127.0.0.1:"), lines
    assert lines[2] == f"export KUBECONFIG={kubeconfig}\n"
    return proc, kubeconfig


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_kube_api_process_serves_and_stops(tmp_path: Path, sig: int, code: int) -> None:
    snap = tmp_path / "snap.json"
    proc, kubeconfig = _start(tmp_path, "--snapshot", str(snap), "--tick", "0.2")
    try:
        text = kubeconfig.read_text()
        assert "name: somactl-lab" in text and "current-context: lab" in text
        assert "namespace: somagent-production" in text
        assert (kubeconfig.stat().st_mode & 0o777) == 0o600
        api = config.new_client_from_config(config_file=str(kubeconfig))
        deps = client.AppsV1Api(api).list_namespaced_deployment("somagent-production")
        assert sorted(d.metadata.name for d in deps.items) == [
            "gateway-api",
            "kamachiq-service",
            "orchestrator",
            "redis",
            "tool-service",
        ]
        api.close()
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == code, err
    assert out.endswith("stopped\n")
    assert snap.exists() and b"gateway-api" in snap.read_bytes()


def test_snapshot_restores_state(tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    proc, kubeconfig = _start(tmp_path, "--snapshot", str(snap), "--tick", "0")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        "redis", "somagent-production", {"spec": {"replicas": 4}}
    )
    api.close()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    proc2, kubeconfig2 = _start(tmp_path, "--snapshot", str(snap), "--tick", "0")
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig2))
        d = client.AppsV1Api(api).read_namespaced_deployment("redis", "somagent-production")
        assert d.spec.replicas == 4
        api.close()
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.communicate(timeout=15)
    assert proc2.returncode == 0


def test_lab_is_registered_and_helpful() -> None:
    spec = REGISTRY["lab"]
    assert (spec.module, spec.panel) == ("somactl.commands.lab", "Lab")
    out = subprocess.run(
        [sys.executable, "-m", "somactl", "lab", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert out.returncode == 0
    assert "kube-api" in out.stdout and "Examples:" in out.stdout
    t0 = time.monotonic()
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "import somactl.lab.kube, sys; "
            "sys.exit('typer' in sys.modules or 'rich' in sys.modules)",
        ],
        check=False,
        timeout=30,
    ).returncode
    assert code == 0, "somactl.lab must not import typer or rich"
    assert time.monotonic() - t0 < 30
