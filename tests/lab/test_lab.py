"""`somactl lab`: cold start, idempotent up, clean down, bad input, scenarios made real."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from somactl.lab import scenarios, stack
from somactl.lab.runtime import procs
from tests.helpers import wait_until
from tests.lab_fixture import Lab, _lab_env

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_is_fast_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    env = _lab_env(tmp_path)
    lab_dir = tmp_path / "state" / "lab"
    t0 = time.monotonic()
    first = stack.up(lab_dir, env=env, tools_port=0)
    cold = time.monotonic() - t0
    try:
        assert first["started"] == ["kube-api", "services", "backends", "traffic"]
        assert cold < 30, f"lab up took {cold:.1f}s"
        recs = stack.records(lab_dir)
        assert {r.name for r in recs} >= {
            "kube-api",
            "services",
            "traffic",
            "postgres",
            "redis",
            "prometheus",
            "postgres-exporter",
            "redis-exporter",
        }
        second = stack.up(lab_dir, env=env, tools_port=0)
        assert second["started"] == []
        assert second["already_running"] is True
        assert [r.pid for r in stack.records(lab_dir)] == [r.pid for r in recs]
        # every port is loopback-only and answering
        ports = [p for r in recs for p in r.ports.values()]
        assert ports and all(_listening(p) for p in ports)
        # the config context points somactl at it
        cfg = Path(env["SOMACTL_CONFIG"]).read_text()
        assert "current-context: lab" in cfg
        assert "password" in cfg and "file:" in cfg
        for line in cfg.splitlines():  # secrets only by reference
            assert "ghp_lab" not in line
    finally:
        down = stack.down(lab_dir)
    assert set(down["stopped"]) >= {"kube-api", "services", "postgres", "redis"}
    for r in recs:
        assert not procs.record_alive(r), r.name
    wait_until(
        lambda: not any(_listening(p) for p in ports), timeout=10, message="every lab port closed"
    )


def test_down_on_a_half_started_lab_cleans_up_what_exists(tmp_path: Path) -> None:
    env = _lab_env(tmp_path)
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir(parents=True)
    kube = stack._start_kube(lab_dir, time.monotonic() + 20)
    rec = next(r for r in stack.records(lab_dir) if r.name == "kube-api")
    assert procs.record_alive(rec)
    assert kube["url"].startswith("http://127.0.0.1:")
    result = stack.down(lab_dir)
    assert "kube-api" in result["stopped"]
    assert not procs.record_alive(rec)
    del env


def test_tools_port_in_use_falls_back_to_a_free_port(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    env = _lab_env(tmp_path)
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir(parents=True)
    try:
        kube = stack._start_kube(lab_dir, time.monotonic() + 20)
        ports = stack._start_services(lab_dir, kube["url"], port, time.monotonic() + 20)
        assert ports["tools"] != port
        assert _listening(ports["tools"])
    finally:
        stack.down(lab_dir)
        busy.close()
    del env


def test_cli_unknown_scenario_lists_the_known_ones(lab: Lab) -> None:
    proc = lab.somactl("lab", "break", "volcano")
    assert proc.returncode == 2
    assert "unknown scenario 'volcano'; known: gateway-down, db-pool-exhaustion" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_status_and_env(lab: Lab) -> None:
    proc = lab.somactl("-o", "json", "lab", "status")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["healthy"] is True
    assert {c["component"] for c in data["components"]} >= {"kube-api", "postgres"}
    proc = lab.somactl("lab", "env")
    assert proc.returncode == 0
    assert f"export KUBECONFIG={lab.dir / 'kubeconfig'}" in proc.stdout


def test_lab_not_running_is_a_precondition_failure(tmp_path: Path) -> None:
    env = _lab_env(tmp_path)
    from tests.lab_fixture import Lab as L

    proc = L(tmp_path / "nolab", env).somactl(
        "lab", "break", "gateway-down", "--dir", str(tmp_path / "nolab")
    )
    assert proc.returncode == 5
    assert "no lab in" in proc.stderr


def test_gateway_down_is_a_real_bad_deploy_and_heals(lab: Lab) -> None:
    import subprocess

    lab.heal()
    info = lab.info
    try:
        lab.break_scenario("gateway-down")
        assert "gateway-down" in lab.info.data["scenarios"]

        def crashlooping() -> bool:
            out = subprocess.run(
                ["kubectl", "get", "pods", "-l", "app=gateway-api", "--no-headers"],
                capture_output=True,
                text=True,
                env=lab.env,
                timeout=30,
            ).stdout
            lines = [ln for ln in out.splitlines() if ln.strip()]
            return bool(lines) and all("CrashLoopBackOff" in ln or "Error" in ln for ln in lines)

        wait_until(crashlooping, timeout=30, message="gateway-api pods crash-looping")
        fixed, why = scenarios.is_fixed(info, "gateway-down")
        assert not fixed
        assert "crashloop" in why
        history = subprocess.run(
            ["kubectl", "rollout", "history", "deploy/gateway-api"],
            capture_output=True,
            text=True,
            env=lab.env,
            timeout=30,
        ).stdout
        import re

        assert re.search(r"deploy gateway-api 1\.9\.0-b\d+ \(SOMA-447\)", history), history
    finally:
        lab.heal()
    wait_until(
        lambda: scenarios.is_fixed(info, "gateway-down")[0],
        timeout=60,
        message="gateway-api healthy again",
    )


def test_database_scenarios_make_real_sessions(lab: Lab) -> None:
    lab.heal()
    info = lab.info
    try:
        details = lab.break_scenario("db-pool-exhaustion")
        held = details["details"]["idle_in_transaction_sessions"]
        assert held >= 10
        assert scenarios._count_sessions(info, "idle in transaction") == held
        assert not scenarios.is_fixed(info, "db-pool-exhaustion")[0]
    finally:
        lab.heal()
    wait_until(
        lambda: scenarios.is_fixed(info, "db-pool-exhaustion")[0],
        timeout=20,
        message="idle sessions gone",
    )
    try:
        lab.break_scenario("slow-queries")
        wait_until(
            lambda: not scenarios.is_fixed(info, "slow-queries")[0],
            timeout=10,
            message="lock chain present",
        )
    finally:
        lab.heal()
    wait_until(
        lambda: scenarios.is_fixed(info, "slow-queries")[0], timeout=20, message="lock chain gone"
    )


def test_redis_github_tools_and_load_scenarios_break_and_heal(lab: Lab) -> None:
    lab.heal()
    info = lab.info
    for name in (
        "redis-memory-pressure",
        "github-rate-limited",
        "tool-adapter-failures",
        "high-load",
    ):
        try:
            lab.break_scenario(name)
            fixed, why = scenarios.is_fixed(info, name)
            assert not fixed, (name, why)
        finally:
            lab.heal()
        assert scenarios.is_fixed(info, name)[0], name
    assert os.environ.get("SOMACTL_CONFIG") != lab.env["SOMACTL_CONFIG"]


def test_drill_hides_the_scenario_and_times_the_fix(lab: Lab) -> None:
    import subprocess
    import sys

    lab.heal()
    proc = subprocess.Popen(
        [sys.executable, "-m", "somactl", "-o", "json", "lab", "drill", "--seed", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=lab.env,
    )
    try:
        # seed 1 picks github-rate-limited: wait until it is broken, then fix it as on-call
        # would (open the github circuit breaker through the tools API)
        wait_until(
            lambda: "github-rate-limited" in lab.info.data.get("scenarios", []),
            timeout=20,
            message="drill broke something",
        )
        assert not scenarios.is_fixed(lab.info, "github-rate-limited")[0]
        fix = lab.somactl("lab", "heal", "github-rate-limited")
        assert fix.returncode == 0, fix.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    env = json.loads(out)
    assert env["data"]["fixed"] is True
    assert env["data"]["scenario"] == "github-rate-limited"
    assert env["data"]["seconds"] >= 0
    assert "github" not in err  # the page does not say what broke
    assert "Drill started" in err


def test_drill_stopped_by_sigterm_says_what_it_left_broken(lab: Lab) -> None:
    import signal
    import subprocess
    import sys

    lab.heal()
    proc = subprocess.Popen(
        [sys.executable, "-m", "somactl", "lab", "drill", "--seed", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=lab.env,
    )
    try:
        wait_until(
            lambda: "github-rate-limited" in lab.info.data.get("scenarios", []),
            timeout=20,
            message="drill broke something",
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        lab.heal()
    assert proc.returncode == 130, err
    assert "NOT FIXED after" in out
    assert "it was github-rate-limited" in out
    assert "somactl lab heal github-rate-limited" in out
