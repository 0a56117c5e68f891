"""`somactl incident|pir|audit` end to end against loopback Slack, PagerDuty and Statuspage.

Every test states the exit code it expects. Receivers check payload shapes
(shared/reference/integrations.md); `sinks.violations()` must stay empty.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from somactl.app import run
from somactl.incident import audit
from somactl.incident.store import IncidentStore, record_on_open_incident
from tests.incident.conftest import (
    ROUTING_KEY,
    SLACK_PATH,
    Sinks,
    assert_no_secrets,
    files_bytes,
    run_cli,
)
from tests.incident.receivers import Reply
from tests.incident.test_audit import read_only

Cap = pytest.CaptureFixture[str]


def cli(capsys: Cap, *argv: str) -> tuple[int, str, str]:
    """Run in-process; stderr comes back with rich's line wrapping undone (one line per message)."""
    rc = run(list(argv))
    out, err = capsys.readouterr()
    return rc, out, _unwrap(err)


def _unwrap(err: str) -> str:
    # ui.output.say wraps at the console width (80 when not a terminal)
    return re.sub(r" ?\n(?!(error|hint|warning|debug|wrote): )", " ", err.rstrip("\n")) + "\n"


def jcli(capsys: Cap, *argv: str) -> tuple[int, dict[str, Any], str]:
    rc, out, err = cli(capsys, "-o", "json", *argv)
    return rc, json.loads(out), err


DECLARE_P0 = (
    "incident",
    "declare",
    "-s",
    "P0",
    "--title",
    "Gateway API Down",
    "--impact",
    "All API requests failing (100% error rate)",
    "--service",
    "gateway-api",
    "--commander",
    "@alice",
)


def sink_result(env: dict[str, Any], sink: str, action: str | None = None) -> dict[str, Any]:
    found = [
        s
        for s in env["data"]["sinks"]
        if s["sink"] == sink and (action is None or s["action"] == action)
    ]
    assert len(found) == 1, env["data"]["sinks"]
    return found[0]


# --- declare ------------------------------------------------------------------------------------


def test_declare_p0_reaches_every_sink_with_the_runbook_message(sinks: Sinks, capsys: Cap) -> None:
    rc, env, _ = jcli(capsys, *DECLARE_P0)
    assert rc == 0
    assert env["status"] == "ok" and env["data"]["incident"]["id"] == "INC-1"
    text = env["data"]["message"]
    assert text == (
        "🚨 INCIDENT DECLARED - P0\nTitle: Gateway API Down\n"
        "Impact: All API requests failing (100% error rate)\nAssigned: @alice\n"
        "War room: #incident-1\nStatus page: https://status.somagent.ai"
    )
    (slack,) = sinks.slack.bodies()
    assert slack["text"] == text and slack["blocks"][0]["text"]["text"] == text
    (pd,) = sinks.pagerduty.bodies()
    assert pd["event_action"] == "trigger" and pd["dedup_key"] == "INC-1"
    assert pd["payload"]["severity"] == "critical"  # runbooks.yaml: P0 -> critical
    assert set(pd["payload"]["custom_details"]["page"]) == {
        "on-call-engineer",
        "incident-commander",
    }
    (sp,) = sinks.statuspage.bodies()
    assert sp["incident"]["status"] == "investigating"
    assert sp["incident"]["impact_override"] == "critical"
    assert sinks.statuspage.requests[0].path == "/v1/pages/pg123abc/incidents"
    assert sinks.violations() == []
    with IncidentStore(sinks.state_dir) as st:
        inc = st.get(1)
        assert inc.statuspage_id == "sp0001" and inc.pagerduty_keys == ("INC-1",)
        kinds = [e.kind for e in st.timeline(1)]
    assert kinds[0] == "declared"
    assert kinds.count("notified") == 3 and kinds.count("paged") == 1


def test_p3_does_not_page_and_page_flag_forces_it(sinks: Sinks, capsys: Cap) -> None:
    rc, env, _ = jcli(
        capsys, "incident", "declare", "-s", "P3", "--title", "Docs typo", "--impact", "none"
    )
    assert rc == 0
    assert sinks.pagerduty.count == 0 and env["data"]["paging"]["page"] is False
    rc, env, _ = jcli(
        capsys,
        "incident",
        "declare",
        "-s",
        "P3",
        "--title",
        "Docs typo 2",
        "--impact",
        "none",
        "--page",
    )
    assert rc == 0
    (pd,) = sinks.pagerduty.bodies()
    assert pd["payload"]["severity"] == "warning" and pd["dedup_key"] == "INC-2"


def test_case_29_pagerduty_429_then_202_is_exactly_one_alert(sinks: Sinks, capsys: Cap) -> None:
    sinks.pagerduty.queue(Reply(429, {"status": "throttle"}, {"Retry-After": "1"}))
    rc, env, _ = jcli(capsys, *DECLARE_P0)
    assert rc == 0
    assert sinks.pagerduty.count == 2  # retried once
    assert sinks.pagerduty.alert_count == 1  # exactly one alert
    assert {b["dedup_key"] for b in sinks.pagerduty.bodies()} == {"INC-1"}  # the same key
    pd = sink_result(env, "pagerduty")
    assert pd["ok"] and pd["attempts"] == 2 and pd["data"]["statuses"] == [429, 202]
    slack = sink_result(env, "slack")
    assert slack["ok"] and slack["attempts"] == 1  # reported separately
    assert sinks.violations() == []


def test_case_30_pagerduty_400_is_not_retried_and_exits_9(sinks: Sinks, capsys: Cap) -> None:
    sinks.pagerduty.queue(
        Reply(
            400,
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["'payload.summary' is missing or blank"],
            },
        )
    )
    rc, out, err = cli(capsys, *DECLARE_P0)
    assert rc == 9
    assert sinks.pagerduty.count == 1 and sinks.pagerduty.alert_count == 0
    assert "'payload.summary' is missing or blank" in err  # names the invalid field
    assert "not retried" in err
    assert sinks.slack.count == 1 and sinks.statuspage.count == 1  # the others still notified
    assert "slack" in out and "FAILED" in out
    with IncidentStore(sinks.state_dir) as st:  # the incident is recorded
        assert st.get(1).title == "Gateway API Down"
        failed = [e for e in st.timeline(1, kinds=["notified"]) if not e.details["ok"]]
    assert [e.details["sink"] for e in failed] == ["pagerduty"]


def test_case_31_slack_404_names_status_and_never_the_webhook_path(
    sinks: Sinks, capsys: Cap
) -> None:
    rc, _, _ = cli(capsys, *DECLARE_P0)
    assert rc == 0
    sinks.slack.queue(Reply(404, "channel_not_found"))
    rc, out, err = cli(
        capsys,
        "--debug",
        "incident",
        "update",
        "--status",
        "identified",
        "--actions",
        "rolled back",
    )
    assert rc == 9
    assert "slack webhook rejected (404): channel_not_found" in err
    assert "debug: slack post: failed http=404" in err
    assert_no_secrets(out, err, files_bytes(sinks.state_dir))
    # the same through the real console script, -o json and --debug
    sinks.slack.queue(Reply(404, "channel_not_found"))
    proc = run_cli(sinks.env, "--debug", "-o", "json", "incident", "note", "x")
    assert proc.returncode == 0
    proc = run_cli(sinks.env, "--debug", "-o", "json", "incident", "update", "--actions", "y")
    assert proc.returncode == 9
    env = json.loads(proc.stdout)
    assert env["status"] == "partial" and env["exit_code"] == 9
    assert env["errors"][0]["message"] == "slack webhook rejected (404): channel_not_found"
    assert_no_secrets(proc.stdout, proc.stderr, files_bytes(sinks.state_dir))


def test_unreachable_sink_is_partial_and_the_incident_is_kept(
    sinks: Sinks, capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("SOMACTL_PAGERDUTY_URL", f"http://127.0.0.1:{dead}")
    rc, env, _ = jcli(capsys, "--timeout", "5s", *DECLARE_P0)
    assert rc == 9
    pd = sink_result(env, "pagerduty")
    assert pd["status"] == "failed" and "connection refused" in pd["message"]
    assert f"127.0.0.1:{dead}" in pd["message"]
    assert env["data"]["incident"]["id"] == "INC-1"


def test_dry_run_prints_masked_payloads_and_sends_nothing(sinks: Sinks, capsys: Cap) -> None:
    rc, out, err = cli(capsys, *DECLARE_P0, "--dry-run")
    assert rc == 0
    assert sinks.total_requests() == 0
    assert not (sinks.state_dir / "incidents.db").exists()  # a dry run never writes
    assert "slack webhook (configured; URL not shown)" in out
    assert '"routing_key": "****"' in out
    assert '"authorization": "****"' in out
    assert "INC-1" in out and "(dry run: not sent)" in out
    assert_no_secrets(out, err)


def test_secrets_never_reach_any_output_or_file(sinks: Sinks, capsys: Cap) -> None:
    outputs: list[str] = []
    for argv in (
        ("--debug", *DECLARE_P0),
        ("-o", "json", "--debug", "incident", "ack"),
        ("-o", "yaml", "incident", "update", "--status", "monitoring"),
        ("incident", "escalate", "--security", "--dry-run"),
        ("--debug", "incident", "resolve", "--root-cause", "pool", "--fix", "more"),
        ("-o", "json", "incident", "timeline", "1"),
        ("-o", "json", "audit", "show", "--last", "100"),
        ("-o", "json", "pir", "INC-1"),
    ):
        rc, out, err = cli(capsys, *argv)
        assert rc == 0, (argv, err)
        outputs += [out, err]
    proc = run_cli(sinks.env, "--debug", "config", "show")
    outputs += [proc.stdout, proc.stderr]
    assert_no_secrets(*outputs, files_bytes(sinks.state_dir))
    assert ROUTING_KEY not in "".join(outputs)
    assert sinks.violations() == []


# --- the lifecycle ------------------------------------------------------------------------------


def test_update_follows_the_severity_cadence_and_patches_the_status_page(
    sinks: Sinks, capsys: Cap
) -> None:
    assert cli(capsys, *DECLARE_P0)[0] == 0
    rc, env, _ = jcli(
        capsys,
        "incident",
        "update",
        "--status",
        "identified",
        "--impact",
        "80% of requests fail",
        "--actions",
        "Rolled back to v1.2.3",
    )
    assert rc == 0
    text = env["data"]["message"]
    m = re.fullmatch(
        r"Update #1 - (\d\d):(\d\d) UTC\nStatus: Identified\nImpact: 80% of requests fail\n"
        r"Actions: Rolled back to v1\.2\.3\nNext update: (\d\d):(\d\d) UTC",
        text,
    )
    assert m, text
    sent = int(m[1]) * 60 + int(m[2])
    nxt = int(m[3]) * 60 + int(m[4])
    assert (nxt - sent) % 1440 == 15  # runbooks.yaml: P0 every 15 minutes
    assert sinks.pagerduty.count == 1  # updates do not page
    patch = sinks.statuspage.requests[-1]
    assert patch.method == "PATCH" and patch.path == "/v1/pages/pg123abc/incidents/sp0001"
    assert patch.json()["incident"]["status"] == "identified"
    rc, env, _ = jcli(capsys, "incident", "update", "INC-1", "--actions", "watching")
    assert rc == 0 and env["data"]["update"] == 2
    assert env["data"]["incident"]["status"] == "identified"  # unchanged without --status


def test_ack_and_resolve_use_the_same_dedup_key(sinks: Sinks, capsys: Cap) -> None:
    assert cli(capsys, *DECLARE_P0)[0] == 0
    rc, _, _ = cli(capsys, "incident", "ack", "INC-1")
    assert rc == 0
    assert sinks.pagerduty.alerts["INC-1"]["state"] == "acknowledged"
    rc, env, _ = jcli(
        capsys,
        "incident",
        "resolve",
        "1",
        "--root-cause",
        "Database connection pool exhaustion",
        "--fix",
        "Increased max_connections from 100 to 200",
    )
    assert rc == 0
    actions = [(b["event_action"], b["dedup_key"]) for b in sinks.pagerduty.bodies()]
    assert actions == [("trigger", "INC-1"), ("acknowledge", "INC-1"), ("resolve", "INC-1")]
    assert sinks.pagerduty.alerts["INC-1"]["state"] == "resolved"
    assert sinks.pagerduty.alert_count == 1
    assert sinks.statuspage.incidents["sp0001"]["status"] == "resolved"
    text = env["data"]["message"]
    assert re.fullmatch(
        r"✅ RESOLVED - \d\d:\d\d UTC\nRoot cause: Database connection pool exhaustion\n"
        r"Fix: Increased max_connections from 100 to 200\nDuration: \d+ seconds?",
        text,
    ), text
    assert sinks.slack.bodies()[-1]["text"] == text
    assert env["data"]["pir_due"]
    assert sinks.violations() == []
    rc, _, err = cli(capsys, "incident", "resolve", "1", "--root-cause", "x", "--fix", "y")
    assert rc == 2 and "already resolved" in err


def test_reclassification_to_a_paging_severity_pages_now(sinks: Sinks, capsys: Cap) -> None:
    assert (
        cli(
            capsys,
            "incident",
            "declare",
            "-s",
            "P3",
            "--title",
            "Slow sync",
            "--impact",
            "Notion sync delayed",
        )[0]
        == 0
    )
    assert sinks.pagerduty.count == 0
    rc, env, _ = jcli(capsys, "incident", "severity", "P1", "--reason", "half the workflows")
    assert rc == 0 and env["data"]["from"] == "P3" and env["data"]["to"] == "P1"
    (pd,) = sinks.pagerduty.bodies()
    assert pd["event_action"] == "trigger" and pd["payload"]["severity"] == "critical"
    with IncidentStore(sinks.state_dir) as st:
        (ev,) = st.timeline(1, kinds=["severity_changed"])
    assert ev.details == {"from": "P3", "to": "P1", "reason": "half the workflows"}


def test_severity_takes_the_incident_positionally_like_the_other_subcommands(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    with IncidentStore(Path(cli_env["SOMACTL_STATE_DIR"])) as st:
        st.declare(severity="P2", title="one", impact="i")
        st.declare(severity="P3", title="two", impact="i")
    rc, env, _ = jcli(capsys, "incident", "severity", "P1", "INC-2", "--reason", "spreading")
    assert rc == 0 and env["data"]["incident"]["id"] == "INC-2"
    assert env["data"]["from"] == "P3" and env["data"]["to"] == "P1"
    # the incident first, as in `incident resolve INC-7 ...`: told apart from the level by form
    rc, env, _ = jcli(capsys, "incident", "severity", "1", "P0")
    assert rc == 0 and env["data"]["incident"]["id"] == "INC-1" and env["data"]["to"] == "P0"
    # the old option still works (hidden, deprecated)
    rc, env, err = jcli(capsys, "incident", "severity", "P3", "--incident", "INC-1")
    assert rc == 0 and env["data"]["incident"]["id"] == "INC-1" and env["data"]["to"] == "P3"
    assert "--incident is deprecated" in err
    rc, _, err = cli(capsys, "incident", "severity", "P2", "INC-1", "--incident", "INC-2")
    assert rc == 2 and "INC-1" in err and "INC-2" in err
    # two open: no default, as for the other subcommands
    rc, _, err = cli(capsys, "incident", "severity", "P2")
    assert rc == 2 and "more than one incident is open" in err
    with IncidentStore(Path(cli_env["SOMACTL_STATE_DIR"])) as st:
        st.resolve(2, root_cause="r", fix="f")
    rc, env, _ = jcli(capsys, "incident", "severity", "P2")  # the only open one
    assert rc == 0 and env["data"]["incident"]["id"] == "INC-1"
    rc, out, _ = cli(capsys, "incident", "severity", "--help")
    assert rc == 0
    assert "{LEVEL} [INCIDENT]" in out and "--incident" not in out
    assert "somactl incident severity P1 INC-7" in out


def test_escalate_security_pages_the_security_lead_and_names_legal_and_pr(
    sinks: Sinks, capsys: Cap
) -> None:
    assert cli(capsys, *DECLARE_P0)[0] == 0
    rc, env, _ = jcli(capsys, "incident", "escalate", "--security")
    assert rc == 0
    text = env["data"]["message"]
    assert "Charlie (@charlie)" in text and "Legal" in text and "PR/Marketing" in text
    levels = {s["level"] for s in env["data"]["now"]}
    assert {"security-lead", "legal", "pr-marketing", "primary"} <= levels
    later = {s["level"] for s in env["data"]["later"]}
    assert "escalation" in later  # the Engineering Manager comes after 15 minutes
    page = sinks.pagerduty.bodies()[-1]
    assert page["dedup_key"] == "INC-1-security-lead"
    assert page["payload"]["custom_details"]["page"] == ["security-lead"]
    rc, _, _ = cli(capsys, "incident", "resolve", "--root-cause", "r", "--fix", "f")
    assert rc == 0
    resolved = {b["dedup_key"] for b in sinks.pagerduty.bodies() if b["event_action"] == "resolve"}
    assert resolved == {"INC-1", "INC-1-security-lead"}


def test_escalation_after_15_minutes_involves_the_engineering_manager(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    with IncidentStore(state) as st:
        st.declare(
            severity="P1",
            title="KAMACHIQ down",
            impact="x",
            now=datetime.now(UTC) - timedelta(minutes=20),
        )
    rc, env, _ = jcli(capsys, "incident", "escalate")
    assert rc == 0  # no sinks configured: recorded locally
    now = {s["level"] for s in env["data"]["now"]}
    assert {"primary", "secondary", "escalation", "final", "incident-commander"} <= now
    with IncidentStore(state) as st:
        assert [e.kind for e in st.timeline(1)] == ["declared", "escalated"]


# --- refusal (exit 8) ---------------------------------------------------------------------------


def test_read_only_state_dir_exits_8_and_nothing_is_sent(sinks: Sinks, capsys: Cap) -> None:
    sinks.state_dir.mkdir(parents=True)
    with read_only(sinks.state_dir):
        rc, _, err = cli(capsys, *DECLARE_P0)
    assert rc == 8
    assert "cannot write audit record" in err and "refusing to act" in err
    assert sinks.total_requests() == 0
    assert not (sinks.state_dir / "incidents.db").exists()


def test_disk_full_journal_exits_8_before_any_sink(
    sinks: Sinks, capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit, "_os_write", full)
    rc, _, err = cli(capsys, *DECLARE_P0)
    assert rc == 8
    assert "no space left on device" in err
    assert sinks.total_requests() == 0


# --- status, views, PIR -------------------------------------------------------------------------


def test_status_flags_overdue_updates_per_cadence_and_pending_reviews(
    cli_env: dict[str, str], capsys: Cap
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    now = datetime.now(UTC).replace(microsecond=0)
    with IncidentStore(state) as st:
        st.declare(severity="P0", title="p0 late", impact="x", now=now - timedelta(minutes=16))
        st.declare(severity="P1", title="p1 fine", impact="x", now=now - timedelta(minutes=20))
        st.declare(severity="P2", title="p2 late", impact="x", now=now - timedelta(minutes=61))
        st.declare(severity="P3", title="p3 no cadence", impact="x", now=now - timedelta(days=1))
        old = st.declare(severity="P1", title="old", impact="x", now=now - timedelta(days=3))
        st.resolve(old.num, root_cause="r", fix="f", now=now - timedelta(hours=50))
        recent = st.declare(severity="P2", title="recent", impact="x", now=now - timedelta(hours=2))
        st.resolve(recent.num, root_cause="r", fix="f", now=now - timedelta(hours=1))
    rc, env, err = jcli(capsys, "incident", "status")
    assert rc == 0
    overdue = {r["title"]: r["overdue"] for r in env["data"]["open"]}
    assert overdue == {"p0 late": True, "p1 fine": False, "p2 late": True, "p3 no cadence": False}
    assert "INC-1 (P0) UPDATE OVERDUE" in err and "INC-3 (P2) UPDATE OVERDUE" in err
    pir = {r["id"]: r["late"] for r in env["data"]["pir"]}
    assert pir == {"INC-5": True, "INC-6": False}
    rc, out, err = cli(capsys, "incident", "status")
    assert rc == 0
    assert "OVERDUE" in out and "LATE" in out and "due in" in out


def test_pir_from_the_timeline_with_checks_actions_and_due_date(
    cli_env: dict[str, str], capsys: Cap, tmp_path: Path
) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    t0 = datetime(2024, 1, 15, 14, 0, tzinfo=UTC)
    with IncidentStore(state) as st:
        st.declare(
            severity="P0",
            title="Gateway API Outage",
            impact="100% of API requests failed",
            service="gateway-api",
            commander="@alice",
            now=t0,
        )
    assert (
        record_on_open_incident(
            state, "check_run", "diagnose gateway-api: critical", {"verdict": "critical"}
        )
        == "INC-1"
    )
    j = audit.AuditJournal(state)
    with j.action("mitigate.rollback", "deployment/gateway-api", {"to_revision": 6}) as rec:
        rec.result("unknown", {"note": "response lost"})
    with IncidentStore(state) as st:
        st.resolve(
            1,
            root_cause="DB connection pool exhausted",
            fix="max_connections 200",
            now=t0 + timedelta(minutes=45),
        )
    out_file = tmp_path / "pir.md"
    rc, _, err = cli(capsys, "pir", "INC-1", "--out", str(out_file))
    assert rc == 0 and "wrote" in err
    md = out_file.read_text()
    assert md.startswith("# Post-Incident Review: Gateway API Outage (2024-01-15)\n")
    assert "- **Date:** 2024-01-15 14:00 UTC" in md
    assert "- **Duration:** 45 minutes" in md
    assert "- **Severity:** P0" in md and "- **Impact:** 100% of API requests failed" in md
    assert "- 14:00 - Incident declared (P0)" in md
    assert "diagnose gateway-api: critical" in md
    assert "mitigate.rollback deployment/gateway-api: unknown" in md
    assert "## Root Cause\nDB connection pool exhausted\n\n**Fix:** max_connections 200" in md
    assert "- [ ] Follow up: mitigate.rollback deployment/gateway-api ended unknown (@alice" in md
    assert "## What Went Well" in md and "## Lessons Learned" in md
    rc, env, _ = jcli(capsys, "pir", "1", "--format", "json")
    assert rc == 0
    assert env["data"]["pir_due"] == "2024-01-17T14:45:00Z" and env["data"]["late"] is True
    rc, env, _ = jcli(capsys, "incident", "status")
    assert env["data"]["pir"] == []  # written: no more reminders
    with IncidentStore(state) as st:
        assert st.timeline(1)[-1].kind == "pir_written"


def test_views_and_local_commands(cli_env: dict[str, str], capsys: Cap) -> None:
    rc, out, _ = cli(capsys, "incident", "list")
    assert rc == 0 and "no incidents" in out
    assert cli(capsys, "incident", "declare", "-s", "P2", "--title", "t", "--impact", "i")[0] == 0
    rc, env, _ = jcli(capsys, "incident", "note", "error rate falling")
    assert rc == 0
    rc, env, _ = jcli(capsys, "incident", "assign", "--commander", "@bob", "--responder", "@eve")
    assert rc == 0 and env["data"]["incident"]["commander"] == "@bob"
    rc, env, _ = jcli(capsys, "incident", "timeline", "INC-1")
    assert rc == 0
    assert [e["kind"] for e in env["data"]["events"]] == ["declared", "note", "assigned"]
    assert env["data"]["events"][1]["actor"] == "oncall-tester"
    rc, out, _ = cli(capsys, "incident", "timeline")
    assert rc == 0 and "error rate falling" in out
    rc, out, _ = cli(capsys, "incident", "show", "1")
    assert rc == 0 and "#incident-1" in out and "@bob" in out
    rc, env, _ = jcli(capsys, "incident", "list", "--open")
    assert rc == 0 and [r["id"] for r in env["data"]] == ["INC-1"]


@pytest.mark.parametrize(
    "argv",
    [
        ("incident", "declare", "-s", "P9", "--title", "t", "--impact", "i"),
        ("incident", "declare", "-s", "P1", "--title", "t", "--impact", "i", "--service", "nope"),
        ("incident", "declare", "-s", "P1", "--title", "t", "--impact", "i", "--commander", "x"),
        ("incident", "declare", "-s", "P1", "--title", " ", "--impact", "i"),
        ("incident", "update", "INC-99", "--status", "identified"),
        ("incident", "update", "--status", "resolved"),
        ("incident", "show", "INC-x"),
        ("incident", "resolve", "--root-cause", "r"),
        ("incident", "timeline", "--kind", "bogus"),
        ("pir", "INC-3"),
    ],
)
def test_usage_errors_exit_2(cli_env: dict[str, str], capsys: Cap, argv: tuple[str, ...]) -> None:
    with IncidentStore(Path(cli_env["SOMACTL_STATE_DIR"])) as st:
        st.declare(severity="P2", title="t", impact="i")
    rc, _, err = cli(capsys, *argv)
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err


def test_audit_show_and_verify_exit_codes(cli_env: dict[str, str], capsys: Cap) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    j = audit.AuditJournal(state)
    with j.action("mitigate.scale", "deployment/web", {"replicas": 3}) as rec:
        rec.result("ok")
    j.intent("mitigate.rollback", "deployment/web", {})  # its process "died"
    rc, out, err = cli(capsys, "audit", "verify")
    assert rc == 0
    assert "intact: 3 records" in out and "outcome unknown: mitigate.rollback" in err
    rc, env, _ = jcli(capsys, "audit", "show", "--last", "2")
    assert rc == 0 and [r["seq"] for r in env["data"]["records"]] == [2, 3]
    lines = j.path.read_text().splitlines()
    lines[0] = lines[0].replace("deployment/web", "deployment/xyz")
    j.path.write_text("\n".join(lines) + "\n")
    rc, env, err = jcli(capsys, "audit", "verify")
    assert rc == 1
    assert env["status"] == "broken" and env["data"]["first_broken"]["line"] == 1
    assert env["errors"][0]["message"].startswith("audit journal broken at line 1: hash mismatch")
    rc, out, err = cli(capsys, "audit", "verify")
    assert rc == 1
    assert "BROKEN" in out and "error: audit journal broken at line 1" in err


def test_light_paths_do_not_import_httpx(sinks: Sinks) -> None:
    from bench.common import imported_modules

    for argv in (
        ["incident", "--help"],
        ["incident", "status"],
        ["audit", "verify"],
        ["incident", "list"],
    ):
        mods = imported_modules(f"from somactl.app import run\nrun({argv!r})", env=sinks.env)
        assert "httpx" not in mods and "httpcore" not in mods, argv


def test_slack_path_sentinel_is_the_real_webhook_path(sinks: Sinks) -> None:
    # guard for the sentinel scans above: the webhook really carries the sentinel path
    assert sinks.env["SOMACTL_SLACK_WEBHOOK"].endswith(SLACK_PATH)
