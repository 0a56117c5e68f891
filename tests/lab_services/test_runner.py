"""`python -m somactl.lab.services`: ports file, port fallback, clean SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from somactl.lab.services import start_services
from somactl.lab.services.runner import parse_metrics_ports
from tests.helpers import wait_until


def port_is_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_runner_writes_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    ports_file = tmp_path / "run" / "services.json"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "somactl.lab.services",
            "--ports-file",
            str(ports_file),
            "--tools-port",
            str(busy),
            "--metrics-ports",
            "gateway-api=0,orchestrator=0",
            "--kube-api",
            "http://127.0.0.1:9",
            "--namespace",
            "somagent-production",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        wait_until(ports_file.exists, timeout=15, message="ports file")
        info = json.loads(ports_file.read_text())
        assert info["version"] == 1 and info["pid"] == proc.pid
        assert info["host"] == "127.0.0.1"
        assert set(info["metrics"]) == {"gateway-api", "orchestrator"}
        assert info["tools"] != busy  # fell back to a free port
        assert info["urls"]["tools"] == f"http://127.0.0.1:{info['tools']}"
        listeners = [*info["metrics"].values(), info["tools"], info["github"]]
        for port in listeners:
            assert port_is_listening(port)
        tools = httpx.get(f"{info['urls']['tools']}/tools/github/health", timeout=5)
        assert tools.status_code == 200
        # the kube API is unreachable: services keep serving (healthy until told otherwise)
        gw = httpx.get(info["urls"]["metrics"]["gateway-api"], timeout=5)
        assert gw.status_code == 200 and "lab_kube_api_up" in gw.text
        assert not list(ports_file.parent.glob(".services.json.*"))  # atomic: no temp left
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        for port in listeners:
            assert not port_is_listening(port)
    finally:
        taken.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_in_process_handle_reports_ports_and_stops(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        with start_services(
            kube_api=None, tools_port=busy, metrics_ports={"gateway-api": 0}
        ) as handle:
            assert handle.tools_port != busy
            assert set(handle.ports) == {
                "gateway-api",
                "orchestrator",
                "kamachiq-service",
                "tools",
                "github",
            }
            handle.write_ports_file(tmp_path / "p.json")
            assert json.loads((tmp_path / "p.json").read_text())["tools"] == handle.tools_port
            ports = list(handle.ports.values())
        for port in ports:
            assert not port_is_listening(port)
        with pytest.raises(OSError):
            start_services(kube_api=None, tools_port=busy, port_fallback=False)
        with pytest.raises(ValueError, match="unknown services"):
            start_services(kube_api=None, metrics_ports={"nope": 0})
    finally:
        blocker.close()


def test_metrics_ports_argument() -> None:
    assert parse_metrics_ports("gateway-api=0, orchestrator=9101") == {
        "gateway-api": 0,
        "orchestrator": 9101,
    }
    for bad in ("gateway-api", "=1", "a=x", "a=70000", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_metrics_ports(bad)


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "somactl.lab.services",
            "--ports-file",
            str(tmp_path / "x"),
            "--metrics-ports",
            "bogus",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert run.returncode == 2
    assert "NAME=PORT" in run.stderr
