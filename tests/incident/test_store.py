"""The incident store: transactions, ids, the cross-layer timeline hook, crash consistency."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from somactl.core.errors import UsageError
from somactl.incident.store import (
    DB_NAME,
    IncidentStore,
    find_open_incident,
    parse_incident_ref,
    record_on_open_incident,
)
from tests.incident.conftest import SOMACTL, Sinks, run_cli

T0 = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)


def declare(store: IncidentStore, **kw: object) -> int:
    args: dict[str, object] = {"severity": "P1", "title": "Redis unavailable", "impact": "x"}
    args.update(kw)
    return store.declare(**args).num  # type: ignore[arg-type]


def assert_store_invariants(state: Path) -> int:
    """Every incident has exactly one `declared` event and it is its first; ids unique and
    contiguous; no event without its incident; SQLite's own integrity check passes."""
    db = sqlite3.connect(state / DB_NAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        nums = [r[0] for r in db.execute("SELECT num FROM incidents ORDER BY num")]
        assert nums == list(range(1, len(nums) + 1)), nums
        for num in nums:
            kinds = [
                r[0]
                for r in db.execute(
                    "SELECT kind FROM events WHERE incident = ? ORDER BY id", (num,)
                )
            ]
            assert kinds and kinds[0] == "declared", (num, kinds)
            assert kinds.count("declared") == 1
            row = db.execute(
                "SELECT severity, title, impact, status, declared_at FROM incidents WHERE num = ?",
                (num,),
            ).fetchone()
            assert all(v for v in row), row  # no half rows
        orphans = db.execute(
            "SELECT COUNT(*) FROM events WHERE incident NOT IN (SELECT num FROM incidents)"
        ).fetchone()[0]
        assert orphans == 0
        return len(nums)
    finally:
        db.close()


def test_parse_incident_ref() -> None:
    assert parse_incident_ref("INC-7") == 7
    assert parse_incident_ref("inc-12") == 12
    assert parse_incident_ref("7") == 7
    for bad in ("INC-", "x7", "0", "INC-7; DROP TABLE incidents", ""):
        with pytest.raises(UsageError):
            parse_incident_ref(bad)


def test_lifecycle_rows_and_events(state_dir: Path) -> None:
    with IncidentStore(state_dir) as st:
        num = declare(st, severity="P0", service="gateway-api", now=T0)
        inc, n = st.post_update(
            num,
            status="identified",
            impact="80%",
            actions="rollback",
            next_update_due=T0 + timedelta(minutes=30),
            message="m",
            now=T0 + timedelta(minutes=15),
        )
        assert n == 1 and inc.status == "identified" and inc.impact == "80%"
        inc, old = st.change_severity(num, "P1", reason="EU only")
        assert old == "P0" and inc.severity == "P1"
        inc = st.assign(num, commander="@alice", responders=["@bob"])
        assert inc.commander == "@alice" and inc.responders == ("@bob",)
        st.acknowledge(num)
        inc = st.resolve(num, root_cause="pool", fix="bigger", now=T0 + timedelta(minutes=45))
        assert inc.status == "resolved" and inc.duration() == timedelta(minutes=45)
        kinds = [e.kind for e in st.timeline(num)]
        assert kinds == [
            "declared",
            "status_update",
            "severity_changed",
            "assigned",
            "acknowledged",
            "resolved",
        ]
        with pytest.raises(UsageError):
            st.resolve(num, root_cause="again", fix="x")
        with pytest.raises(UsageError):
            st.post_update(
                num,
                status="monitoring",
                impact=None,
                actions=None,
                next_update_due=None,
                message="",
            )
    assert assert_store_invariants(state_dir) == 1


def test_db_is_wal_and_private(state_dir: Path) -> None:
    with IncidentStore(state_dir) as st:
        declare(st)
        assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (state_dir / DB_NAME).stat().st_mode & 0o077 == 0


def test_resolve_ref_defaults_to_the_only_open_incident(state_dir: Path) -> None:
    with IncidentStore(state_dir) as st:
        with pytest.raises(UsageError, match="no open incident"):
            st.resolve_ref(None)
        a = declare(st)
        assert st.resolve_ref(None).num == a
        b = declare(st)
        with pytest.raises(UsageError, match="more than one incident is open"):
            st.resolve_ref(None)
        st.resolve(a, root_cause="r", fix="f")
        assert st.resolve_ref(None).num == b
        assert st.resolve_ref(f"INC-{a}").num == a
        with pytest.raises(UsageError, match="no incident INC-99"):
            st.resolve_ref("99")


def test_record_on_open_incident_is_cheap_and_never_creates_the_db(state_dir: Path) -> None:
    assert (
        record_on_open_incident(state_dir, "check_run", "diagnose x: ok", {"verdict": "ok"}) is None
    )
    assert not state_dir.exists()  # no directory, no database created
    with IncidentStore(state_dir) as st:
        a = declare(st, service="redis")
        b = declare(st, service="gateway-api")
    # with two open incidents, the service's own incident wins, else the latest declared
    assert (
        record_on_open_incident(
            state_dir,
            "check_run",
            "diagnose redis: critical",
            {"verdict": "critical"},
            service="redis",
        )
        == f"INC-{a}"
    )
    assert find_open_incident(state_dir) == f"INC-{b}"
    assert (
        record_on_open_incident(
            state_dir,
            "action_applied",
            "rollback: ok",
            {"outcome": "ok", "password": "x"},
            incident=f"INC-{a}",
        )
        == f"INC-{a}"
    )
    with IncidentStore(state_dir) as st:
        events = st.timeline(a)
        assert [e.kind for e in events] == ["declared", "check_run", "action_applied"]
        assert events[1].details == {"verdict": "critical"}
        st.resolve(a, root_cause="r", fix="f")
        st.resolve(b, root_cause="r", fix="f")
    assert record_on_open_incident(state_dir, "note", "nobody home") is None
    with pytest.raises(ValueError, match="unknown timeline event kind"):
        record_on_open_incident(state_dir, "bogus", "x")


def test_secrets_are_redacted_before_they_are_stored(state_dir: Path) -> None:
    from somactl.core.redact import register_secret

    register_secret("st0reS3cretSENTINEL")
    with IncidentStore(state_dir) as st:
        num = declare(st, title="leak st0reS3cretSENTINEL", impact="dsn postgresql://u:pw9@h/db")
        st.append(num, "note", "token st0reS3cretSENTINEL", {"k": "st0reS3cretSENTINEL"})
    blob = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.is_file())
    assert b"st0reS3cretSENTINEL" not in blob
    assert b"pw9@" not in blob


_WRITER = """
import sys
from somactl.incident.store import IncidentStore
state, n = sys.argv[1], int(sys.argv[2])
ids = []
for i in range(n):
    with IncidentStore(state) as st:
        ids.append(st.declare(severity="P2", title=f"t{i}", impact="i").num)
print(",".join(map(str, ids)))
"""


def test_concurrent_processes_get_distinct_ids(state_dir: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(state_dir), "15"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    seen: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        seen += [int(x) for x in out.strip().split(",")]
    assert sorted(seen) == list(range(1, 61))
    assert assert_store_invariants(state_dir) == 60


def test_two_cli_declares_at_once_get_distinct_ids(cli_env: dict[str, str]) -> None:
    procs = [
        subprocess.Popen(
            [
                SOMACTL,
                "-o",
                "json",
                "incident",
                "declare",
                "-s",
                "P2",
                "--title",
                f"t{i}",
                "--impact",
                "x",
            ],
            env={**os.environ, **cli_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err  # exit 0: no sinks configured, recorded locally
        ids.append(json.loads(out)["data"]["incident"]["id"])
    assert sorted(ids) == ["INC-1", "INC-2"]


CRASH_POINTS = [
    "declare:allocated",
    "declare:row",
    "declare:event",
    "declare:committed",
    "audit:intent",
    "declare:before-send",
    "declare:sent",
    "audit:before-result",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_between_declare_steps_leaves_a_consistent_store(sinks: Sinks, point: str) -> None:
    from somactl.incident.audit import verify

    state = sinks.state_dir
    first = run_cli(
        sinks.env, "incident", "declare", "-s", "P2", "--title", "before", "--impact", "x"
    )
    assert first.returncode == 0, first.stderr
    proc = run_cli(
        {**sinks.env, "SOMACTL_CRASH_AT": point},
        "incident",
        "declare",
        "-s",
        "P0",
        "--title",
        "Gateway API Down",
        "--impact",
        "all requests fail",
    )
    assert proc.returncode == -9, (point, proc.returncode, proc.stderr)
    count = assert_store_invariants(state)
    committed = point not in ("declare:allocated", "declare:row", "declare:event")
    assert count == (2 if committed else 1)
    report = verify(state / "audit.jsonl")
    assert report.intact, report.first_broken
    dangling = {d["target"] for d in report.dangling}
    if point in ("audit:intent", "declare:before-send", "declare:sent", "audit:before-result"):
        assert dangling == {"INC-2"}  # the killed notification: outcome unknown
        assert all(d["outcome"] == "unknown" and d["event_id"] for d in report.dangling)
    else:
        assert dangling == set()
    # the store keeps working: the next declaration gets the next id
    after = run_cli(
        sinks.env,
        "-o",
        "json",
        "incident",
        "declare",
        "-s",
        "P3",
        "--title",
        "after",
        "--impact",
        "x",
    )
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["data"]["incident"]["id"] == f"INC-{count + 1}"
    assert assert_store_invariants(state) == count + 1
    assert verify(state / "audit.jsonl").intact


def test_kill_9_at_random_times_never_corrupts(cli_env: dict[str, str]) -> None:
    state = Path(cli_env["SOMACTL_STATE_DIR"])
    rng = random.Random(7)
    end = time.monotonic() + 12
    rounds = killed = 0
    while time.monotonic() < end or rounds < 5:
        proc = subprocess.Popen(
            [SOMACTL, "incident", "declare", "-s", "P1", "--title", f"r{rounds}", "--impact", "x"],
            env={**os.environ, **cli_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=rng.uniform(0.05, 0.6))  # the kill lands at a random moment
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            killed += 1
        rounds += 1
        if state.exists() and (state / DB_NAME).exists():
            assert_store_invariants(state)
        if rounds >= 40:
            break
    assert rounds >= 5 and killed >= 1
    if (state / DB_NAME).exists():
        assert_store_invariants(state)
