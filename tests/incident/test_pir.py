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
from somactl.incident import audit
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


# --- actions taken before the incident was declared ----------------------------------------------


# a P2 for gateway-api, as a responder declares it
DECLARE_GW = ("incident", "declare", "-s", "P2", "--title", "t", "--impact", "i",
              "--service", "gateway-api")  # fmt: skip


def _act_at(
    monkeypatch: pytest.MonkeyPatch,
    state: Path,
    when: datetime,
    kind: str,
    target: str,
    service: str | None,
    outcome: audit.Outcome = "ok",
) -> str:
    """A real journaled action (AuditJournal.action, as `somactl mitigate` runs it), stamped
    `when`."""
    journal = audit.AuditJournal(state)
    with monkeypatch.context() as m:
        m.setattr(audit, "utcnow", lambda: when)
        with journal.action(kind, target, {"to_revision": 6}, service=service) as rec:
            rec.result(outcome, {"message": "done"})
    assert rec.incident is None  # nothing was open: the journal alone
    return rec.event_id


def test_actions_in_the_hour_before_declaration_go_on_the_timeline(
    cli_env: dict[str, str], capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    now = datetime.now(UTC).replace(microsecond=0)
    gw = "deployment/gateway-api (somagent)"
    _act_at(monkeypatch, state, now - timedelta(minutes=70), "mitigate.restart", gw, "gateway-api")
    rollback = _act_at(
        monkeypatch, state, now - timedelta(minutes=50), "mitigate.rollback", gw, "gateway-api"
    )
    _act_at(monkeypatch, state, now - timedelta(minutes=40), "mitigate.scale", gw, "gateway-api",
            outcome="failed")  # fmt: skip
    _act_at(monkeypatch, state, now - timedelta(minutes=5), "mitigate.restart",
            "deployment/billing-api (somagent)", "billing-api")  # fmt: skip
    _act_at(monkeypatch, state, now - timedelta(minutes=3), "k", "t", None)
    rc, env = pir_json(
        capsys, "incident", "declare", "-s", "P1", "--title", "Gateway 5xx", "--impact", "20%",
        "--service", "gateway-api",
    )  # fmt: skip
    assert rc == 0
    before = env["data"]["before_declaration"]
    assert [(a["kind"], a["outcome"]) for a in before] == [
        ("mitigate.rollback", "ok"),
        ("mitigate.scale", "failed"),
    ]
    assert env["data"]["before_declaration_window"] == "60 minutes"
    rc, env = pir_json(capsys, "incident", "timeline")
    assert rc == 0
    events = env["data"]["events"]
    assert [e["kind"] for e in events] == ["action_applied", "action_applied", "declared"]
    first = events[0]
    assert first["at"] == (now - timedelta(minutes=50)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["summary"] == f"before declaration: mitigate.rollback {gw}: ok"
    assert first["details"]["before_declaration"] is True
    assert first["details"]["event_id"] == rollback
    assert first["details"]["outcome"] == "ok"
    rc, md = pir(capsys, "pir")
    assert rc == 0
    at = now - timedelta(minutes=50)
    stamp = at.strftime("%H:%M" if at.date() == now.date() else "%Y-%m-%d %H:%M")  # midnight
    assert f"- {stamp} - before declaration: mitigate.rollback {gw}: ok [oncall-tester]\n" in md
    assert f"Follow up: mitigate.scale {gw} ended failed" in md
    assert "billing-api" not in md and "mitigate.restart" not in md


def test_an_action_running_at_declaration_gets_its_result_on_the_timeline(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    j = audit.AuditJournal(state)
    with j.action("mitigate.rollback", "deployment/gateway-api", {}, service="gateway-api") as rec:
        rc, env = pir_json(capsys, *DECLARE_GW)
        assert rc == 0
        assert [a["outcome"] for a in env["data"]["before_declaration"]] == ["running"]
        rec.result("ok", {"revision": 6})
    assert rec.incident == "INC-1"  # found when the result came
    with IncidentStore(state) as st:
        events = st.timeline(1)
    assert [(e.kind, e.details.get("before_declaration")) for e in events] == [
        ("action_planned", True),
        ("declared", None),
        ("action_applied", None),
    ]
    assert (
        events[0].summary == "before declaration: planned: mitigate.rollback deployment/gateway-api"
    )
    assert events[2].details["event_id"] == rec.event_id and events[2].details["outcome"] == "ok"
    assert [r["incident"] for r in j.records()] == [None, "INC-1"]


def test_the_window_is_the_runbooks(
    cli_env: dict[str, str], capsys: Cap, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    now = datetime.now(UTC).replace(microsecond=0)
    gw = "deployment/gateway-api (somagent)"
    _act_at(monkeypatch, state, now - timedelta(minutes=50), "mitigate.rollback", gw, "gateway-api")
    _act_at(monkeypatch, state, now - timedelta(minutes=20), "mitigate.scale", gw, "gateway-api")
    shipped = (Path(__file__).parents[2] / "runbooks.yaml").read_text()
    assert "  before_declaration_minutes: 60\n" in shipped
    mine = tmp_path / "runbooks.yaml"
    mine.write_text(
        shipped.replace("before_declaration_minutes: 60", "before_declaration_minutes: 30")
    )
    rc, env = pir_json(capsys, "--runbooks", str(mine), *DECLARE_GW)
    assert rc == 0, env
    assert env["data"]["before_declaration_window"] == "30 minutes"
    assert [a["kind"] for a in env["data"]["before_declaration"]] == ["mitigate.scale"]


def test_an_earlier_incidents_actions_stay_on_its_own_timeline(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    """A flapping service: INC-1's rollback, INC-1 resolved, INC-2 declared within the hour:
    the rollback is INC-1's, not copied onto INC-2 (nor into its follow-ups)."""
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    assert run(list(DECLARE_GW)) == 0
    with audit.AuditJournal(state).action(
        "mitigate.rollback", "deployment/gateway-api", {}, service="gateway-api"
    ) as rec:
        rec.result("failed", {"error": "pods not ready"})
    assert rec.incident == "INC-1"
    assert run(["incident", "resolve", "INC-1", "--root-cause", "bad image", "--fix", "x"]) == 0
    capsys.readouterr()
    rc, env = pir_json(capsys, *DECLARE_GW)
    assert rc == 0 and env["data"]["before_declaration"] == [], env["data"]
    with IncidentStore(state) as st:
        assert [e.kind for e in st.timeline(2)] == ["declared"]


def test_an_action_finishing_after_another_services_declaration_stays_off_it(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    j = audit.AuditJournal(state)
    with j.action("mitigate.redis-flush", "redis", {}, service="redis") as rec:
        rc, _env = pir_json(capsys, *DECLARE_GW)
        assert rc == 0
        rec.result("ok", {})
    assert rec.incident is None  # the open incident is gateway-api's, not redis'
    with IncidentStore(state) as st:
        assert [e.kind for e in st.timeline(1)] == ["declared"]


def test_a_dry_run_declaration_lists_the_earlier_actions_and_writes_nothing(
    cli_env: dict[str, str], capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    now = datetime.now(UTC).replace(microsecond=0)
    _act_at(monkeypatch, state, now - timedelta(minutes=10), "mitigate.rollback",
            "deployment/gateway-api (somagent)", "gateway-api")  # fmt: skip
    rc = run([*DECLARE_GW, "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1 action on gateway-api in the 60 minutes before declaration" in out
    assert "mitigate.rollback deployment/gateway-api (somagent): ok" in out
    assert not (state / "incidents.db").exists()


def test_the_window_is_read_from_the_end_of_a_long_journal(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # records_since reads backwards; it must give what a full forward read filtered by time gives,
    # across chunk boundaries (64 KiB) and with a torn last line
    j = audit.AuditJournal(state_dir)
    clock = iter(T0 + timedelta(seconds=i) for i in range(10_000))
    monkeypatch.setattr(audit, "utcnow", lambda: next(clock))
    for i in range(1200):
        j.append({"phase": "intent", "kind": "k", "target": "x" * (i % 97), "event_id": str(i)})
    recs = list(j.records())
    assert j.path.stat().st_size > 4 * 64 * 1024
    with j.path.open("ab") as fh:
        fh.write(b'{"torn": ')
    since = T0 + timedelta(seconds=700)
    got = j.records_since(since)
    assert got == recs[700:] and got[0]["ts"] == "2024-01-15T14:11:40Z"
    assert j.records_since(T0) == recs
    assert j.records_since(T0 + timedelta(days=1)) == []
    assert audit.AuditJournal(state_dir / "none").records_since(since) == []
