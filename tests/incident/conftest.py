"""Fixtures for the incident tests: a private state dir, loopback sink receivers, CLI runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.incident.receivers import (
    PagerDutyReceiver,
    SlackReceiver,
    StatuspageReceiver,
    start_all,
)

# Sentinels: if any of these shows up in output, a file or an error, a secret leaked.
SLACK_PATH = "/services/T0SENTINEL/B0SENTINEL/sl4ckS3cretW3bhookP4th"
ROUTING_KEY = "R0UT1NGk3ySENTINEL0123456789abcd"  # 32 characters, as PagerDuty requires
SP_KEY = "sp-ap1-k3y-SENTINEL-42"
SECRETS = (SLACK_PATH, "sl4ckS3cretW3bhookP4th", "T0SENTINEL/B0SENTINEL", ROUTING_KEY, SP_KEY)
PAGE_ID = "pg123abc"

SOMACTL = str(Path(sys.executable).parent / "somactl")
REPO = Path(__file__).resolve().parents[2]

_ENV_DROP = (
    "SOMACTL_CONTEXT",
    "SOMACTL_SLACK_WEBHOOK",
    "SOMACTL_PAGERDUTY_ROUTING_KEY",
    "SOMACTL_PAGERDUTY_URL",
    "SOMACTL_STATUSPAGE_API_KEY",
    "SOMACTL_STATUSPAGE_PAGE_ID",
    "SOMACTL_STATUSPAGE_URL",
    "SOMACTL_RUNBOOKS",
    "SOMACTL_CRASH_AT",
    "SOMACTL_DEBUG",
    "XDG_STATE_HOME",
    "XDG_CONFIG_HOME",
)


@dataclass
class Sinks:
    slack: SlackReceiver
    pagerduty: PagerDutyReceiver
    statuspage: StatuspageReceiver
    env: dict[str, str]
    state_dir: Path

    @property
    def all(self) -> tuple[SlackReceiver, PagerDutyReceiver, StatuspageReceiver]:
        return (self.slack, self.pagerduty, self.statuspage)

    def total_requests(self) -> int:
        return sum(r.count for r in self.all)

    def violations(self) -> list[str]:
        return [v for r in self.all for v in r.violations]


def base_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "SOMACTL_CONFIG": str(tmp_path / "no-config.yaml"),
        "SOMACTL_STATE_DIR": str(tmp_path / "state"),
        "SOMACTL_ACTOR": "oncall-tester",
    }


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for in-process runs with no sinks configured."""
    for name in _ENV_DROP:
        monkeypatch.delenv(name, raising=False)
    env = base_env(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def sinks(
    tmp_path: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sinks]:
    """All three receivers running, and the environment (set in-process too) pointing at them."""
    slack, pd, sp = start_all(SP_KEY)
    env = dict(cli_env)
    env.update(
        {
            "SOMACTL_SLACK_WEBHOOK": slack.url + SLACK_PATH,
            "SOMACTL_PAGERDUTY_URL": pd.url,
            "SOMACTL_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "SOMACTL_STATUSPAGE_URL": sp.url + "/v1",
            "SOMACTL_STATUSPAGE_PAGE_ID": PAGE_ID,
            "SOMACTL_STATUSPAGE_API_KEY": SP_KEY,
        }
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        yield Sinks(slack, pd, sp, env, Path(env["SOMACTL_STATE_DIR"]))
    finally:
        for r in (slack, pd, sp):
            r.stop()


def run_cli(
    env: dict[str, str], *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real console script in a subprocess (for kill -9, concurrency and sentinel scans)."""
    clean = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    return subprocess.run(
        [SOMACTL, *argv],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def envelope(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data


def files_bytes(state: Path) -> bytes:
    """Every byte under the state dir (DB, WAL, journal) for sentinel scans."""
    out = b""
    if state.exists():
        for p in sorted(state.rglob("*")):
            if p.is_file():
                out += p.read_bytes()
    return out


def assert_no_secrets(*texts: str | bytes) -> None:
    for text in texts:
        raw = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in raw, f"secret {secret[:6]}... leaked"
