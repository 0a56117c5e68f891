"""The post-incident review: what it says about the incident's severity and its actions.

Every test states the exit code it expects; the store, the journal and the app are the real ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from somactl.app import run
from somactl.incident.store import IncidentStore

Cap = pytest.CaptureFixture[str]

T0 = datetime(2024, 1, 15, 14, 0, tzinfo=UTC)


def pir(capsys: Cap, *argv: str) -> tuple[int, str]:
    rc = run(list(argv))
    return rc, capsys.readouterr().out


def pir_json(capsys: Cap, *argv: str) -> tuple[int, dict[str, Any]]:
    rc, out = pir(capsys, "-o", "json", *argv)
    return rc, json.loads(out)


def test_pir_shows_the_peak_severity_and_its_history(cli_env: dict[str, str], capsys: Cap) -> None:
    # declared P2, escalated to P0, downgraded to P1, resolved: the review is about a P0
    with IncidentStore(Path(cli_env["SOMACTL_STATE_DIR"])) as st:
        num = st.declare(severity="P2", title="Slow checkout", impact="p95 8s", now=T0).num
        st.change_severity(num, "P0", reason="all payments fail", now=T0 + timedelta(minutes=10))
        st.change_severity(num, "P1", reason="EU only", now=T0 + timedelta(minutes=30))
        st.resolve(num, root_cause="pool", fix="bigger pool", now=T0 + timedelta(minutes=45))
    rc, md = pir(capsys, "pir", "INC-1")
    assert rc == 0
    assert "- **Severity:** P0 (peak; P2 at 14:00 -> P0 at 14:10 -> P1 at 14:30)\n" in md
    rc, env = pir_json(capsys, "pir", "INC-1")
    assert rc == 0
    sev = env["data"]["severity"]
    assert sev["peak"] == "P0" and sev["declared"] == "P2" and sev["final"] == "P1"
    assert sev["history"] == [
        {"severity": "P2", "at": "2024-01-15T14:00:00Z", "reason": None},
        {"severity": "P0", "at": "2024-01-15T14:10:00Z", "reason": "all payments fail"},
        {"severity": "P1", "at": "2024-01-15T14:30:00Z", "reason": "EU only"},
    ]
    assert env["data"]["fields"]["severity"].startswith("P0 (peak;")
    assert "- **Severity:** P0 (peak;" in env["data"]["markdown"]


def test_pir_of_an_incident_that_kept_its_severity_says_just_the_level(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    with IncidentStore(Path(cli_env["SOMACTL_STATE_DIR"])) as st:
        num = st.declare(severity="P1", title="Redis down", impact="sessions lost", now=T0).num
        st.resolve(num, root_cause="oom", fix="maxmemory", now=T0 + timedelta(minutes=20))
    rc, env = pir_json(capsys, "pir", "1")
    assert rc == 0
    assert env["data"]["fields"]["severity"] == "P1"
    assert "- **Severity:** P1\n" in env["data"]["markdown"]
    assert env["data"]["severity"] == {
        "peak": "P1",
        "declared": "P1",
        "final": "P1",
        "history": [{"severity": "P1", "at": "2024-01-15T14:00:00Z", "reason": None}],
    }


def test_a_severity_change_on_a_later_day_carries_its_date(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    with IncidentStore(Path(cli_env["SOMACTL_STATE_DIR"])) as st:
        num = st.declare(severity="P3", title="Sync lag", impact="delayed", now=T0).num
        st.change_severity(num, "P1", now=T0 + timedelta(hours=12))
    rc, md = pir(capsys, "pir", "1")
    assert rc == 0  # still open: the review can be drafted
    assert "- **Severity:** P1 (peak; P3 at 14:00 -> P1 at 2024-01-16 02:00)\n" in md
