"""The audit journal: chain, tamper and truncation detection, dangling intents, refusal (exit 8)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from somactl.core.errors import (
    AuditUnavailableError,
    NotConfirmedError,
    UnreachableError,
)
from somactl.incident import audit
from somactl.incident.audit import GENESIS, AuditJournal, record_hash, verify
from somactl.incident.store import IncidentStore


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_intent_then_result_chained_and_fsynced(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = audit._os_fsync
    monkeypatch.setattr(audit, "_os_fsync", lambda fd: (synced.append(fd), real(fd))[1])
    j = AuditJournal(state_dir, actor="alice")
    with j.action("mitigate.scale", "deployment/web", {"replicas": 5}) as rec:
        rec.result("ok", {"replicas": 5})
    recs = lines(j.path)
    assert [r["phase"] for r in recs] == ["intent", "result"]
    assert recs[0]["event_id"] == recs[1]["event_id"] == rec.event_id
    assert recs[0]["prev"] == GENESIS and recs[1]["prev"] == recs[0]["hash"]
    assert recs[1]["hash"] == record_hash(str(recs[0]["hash"]), recs[1])
    assert [r["seq"] for r in recs] == [1, 2]
    assert recs[0]["plan"] == {"replicas": 5} and recs[1]["outcome"] == "ok"
    assert recs[0]["actor"] == "alice"
    assert len(synced) == 2  # one fsync per record
    assert j.path.stat().st_mode & 0o077 == 0
    report = verify(j.path)
    assert report.intact and report.records == 2 and report.dangling == []


def test_exceptions_in_the_block_record_the_right_outcome(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    with pytest.raises(NotConfirmedError), j.action("mitigate.rollback", "deployment/web", {}):
        raise NotConfirmedError("confirmation required: stdin is not a terminal")
    with pytest.raises(UnreachableError), j.action("mitigate.rollback", "deployment/web", {}):
        raise UnreachableError("kube: no response within 5s")
    with pytest.raises(RuntimeError), j.action("mitigate.rollback", "deployment/web", {}):
        raise RuntimeError("boom")
    with j.action("mitigate.rollback", "deployment/web", {}):
        pass  # no result reported
    recs = lines(j.path)
    closing = [r for r in recs if r["phase"] != "intent"]
    assert [(r["phase"], r.get("outcome")) for r in closing] == [
        ("aborted", None),
        ("result", "unknown"),
        ("result", "failed"),
        ("result", "unknown"),
    ]
    assert closing[0]["reason"] == "confirmation required: stdin is not a terminal"
    assert verify(j.path).outcomes == {"aborted": 1, "unknown": 2, "failed": 1}


def test_secrets_are_redacted_before_writing(state_dir: Path) -> None:
    from somactl.core.redact import register_secret

    register_secret("aud1tS3cretSENTINEL")
    j = AuditJournal(state_dir)
    with j.action(
        "db.kill",
        "postgresql://oncall:pw-in-dsn@db:5432/somagent",
        {"token": "aud1tS3cretSENTINEL"},
    ) as rec:
        rec.result("ok", {"note": "Bearer abcdefghijklmnop"})
    raw = j.path.read_text()
    assert "aud1tS3cretSENTINEL" not in raw and "pw-in-dsn" not in raw
    assert "abcdefghijklmnop" not in raw
    assert verify(j.path).intact


def test_tampered_line_is_the_first_broken_line(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    for i in range(4):
        with j.action("k", f"t{i}", {}) as rec:
            rec.result("ok")
    text = j.path.read_text().splitlines()
    rec = json.loads(text[2])
    rec["target"] = "t-forged"
    text[2] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    j.path.write_text("\n".join(text) + "\n")
    report = verify(j.path)
    assert not report.intact
    assert report.first_broken == {"line": 3, "problem": "hash mismatch: the record was modified"}


def test_removed_line_breaks_the_chain(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    for i in range(3):
        with j.action("k", f"t{i}", {}) as rec:
            rec.result("ok")
    text = j.path.read_text().splitlines()
    del text[1]
    j.path.write_text("\n".join(text) + "\n")
    report = verify(j.path)
    assert not report.intact and report.first_broken is not None
    assert report.first_broken["line"] == 2
    assert "chain broken" in str(report.first_broken["problem"])


def test_truncated_last_line_is_reported_never_accepted(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    with j.action("k", "t", {}) as rec:
        rec.result("ok")
    data = j.path.read_bytes()
    j.path.write_bytes(data[:-25])  # the last record lost its end (and its newline)
    report = verify(j.path)
    assert not report.intact
    assert report.first_broken is not None and report.first_broken["line"] == 2
    assert "truncated last line" in str(report.first_broken["problem"])
    assert report.records == 1
    assert [d["target"] for d in report.dangling] == ["t"]  # its result is gone: unknown


def test_writer_after_a_torn_tail_closes_it_off_with_a_repair_record(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    with j.action("k", "a", {}) as rec:
        rec.result("ok")
    good = j.path.read_bytes()
    j.path.write_bytes(good + b'{"v":1,"seq":3,"phase":"inte')  # ENOSPC mid-write
    with j.action("k", "b", {}) as rec:
        rec.result("ok")
    recs = [json.loads(x) for x in j.path.read_bytes().splitlines() if x.startswith(b'{"a')]
    assert any(r["phase"] == "repair" for r in recs)
    report = verify(j.path)
    assert report.intact, report.first_broken
    assert report.repaired and report.repaired[0]["line"] == 3
    assert report.dangling == []


def test_dangling_intent_is_unknown_with_its_event_id(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    code = (
        "import os, signal, sys\n"
        "from somactl.incident.audit import AuditJournal\n"
        "j = AuditJournal(sys.argv[1])\n"
        "with j.action('mitigate.rollback', 'deployment/web', {'to_revision': 6}) as rec:\n"
        "    print(rec.event_id, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -9
    event_id = proc.stdout.strip()
    report = verify(j.path)
    assert report.intact
    assert len(report.dangling) == 1
    d = report.dangling[0]
    assert d["event_id"] == event_id and d["outcome"] == "unknown"
    assert d["kind"] == "mitigate.rollback" and d["target"] == "deployment/web"
    assert "ended between intent and result" in str(d["note"])


_APPENDER = """
import sys
from somactl.incident.audit import AuditJournal
j = AuditJournal(sys.argv[1])
for i in range(int(sys.argv[2])):
    with j.action("bench", f"t{i}", {"i": i}) as rec:
        rec.result("ok")
"""


def test_concurrent_writers_keep_one_chain(state_dir: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(state_dir), "25"]) for _ in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    report = verify(state_dir / "audit.jsonl")
    assert report.intact, report.first_broken
    assert report.records == 200 and report.outcomes == {"ok": 100}


def test_enospc_refuses_before_the_action_runs(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit, "_os_write", full)
    ran = []
    with (
        pytest.raises(AuditUnavailableError) as info,
        AuditJournal(state_dir).action("mitigate.flush", "redis", {}),
    ):
        ran.append(True)
    assert ran == []
    assert info.value.code == 8
    assert "cannot write audit record (no space left on device" in info.value.message
    assert "refusing to act" in info.value.message


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` (a directory, and any files in it) unwritable, even for root."""
    targets = [path, *sorted(p for p in path.iterdir() if p.is_file())]
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        assert chattr, "running as root needs chattr (e2fsprogs) to make a directory read-only"
        subprocess.run([chattr, "+i", *map(str, targets)], check=True)
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", *map(str, targets)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in targets}
        for p in targets:
            p.chmod(0o500 if p.is_dir() else 0o400)
        try:
            yield
        finally:
            for p, m in modes.items():
                p.chmod(m)


def test_read_only_state_dir_refuses(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    j = AuditJournal(state_dir)
    ran = []
    with read_only(state_dir):
        with pytest.raises(AuditUnavailableError, match="refusing to act"):
            j.check_writable()
        with pytest.raises(AuditUnavailableError), j.action("k", "t", {}):
            ran.append(True)
    assert ran == []
    assert not j.path.exists()


def test_action_mirrors_onto_the_open_incident_timeline(state_dir: Path) -> None:
    with IncidentStore(state_dir) as st:
        num = st.declare(severity="P0", title="down", impact="all", service="gateway-api").num
    j = AuditJournal(state_dir)
    with j.action(
        "mitigate.rollback", "deployment/gateway-api", {"to_revision": 6}, service="gateway-api"
    ) as rec:
        rec.result("ok", {"revision": 6})
    with IncidentStore(state_dir) as st:
        events = st.timeline(num)
    assert [e.kind for e in events] == ["declared", "action_planned", "action_applied"]
    assert events[2].details["outcome"] == "ok"
    assert events[1].details["event_id"] == rec.event_id
    recs = lines(j.path)
    assert recs[0]["incident"] == f"INC-{num}"
    # without an open incident, the journal alone
    with IncidentStore(state_dir) as st:
        st.resolve(num, root_cause="r", fix="f")
    with j.action("mitigate.scale", "deployment/web", {}) as rec2:
        rec2.result("ok")
    assert rec2.incident is None
    with IncidentStore(state_dir) as st:
        assert len(st.timeline(num)) == 4  # + resolved, nothing from the second action


def test_result_write_failure_after_acting_is_reported_not_raised(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = AuditJournal(state_dir)
    with j.action("k", "t", {}) as rec:

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "full")

        monkeypatch.setattr(audit, "_os_write", full)
        rec.result("ok")
    assert rec.journal_error is not None and "no space left" in rec.journal_error
    monkeypatch.undo()
    report = verify(j.path)
    assert report.intact and [d["event_id"] for d in report.dangling] == [rec.event_id]


def test_last_action_reports_how_the_latest_one_ended(state_dir: Path) -> None:
    j = AuditJournal(state_dir)
    assert j.last_action("mitigate.rollback", "deployment/web") is None
    with j.action("mitigate.rollback", "deployment/web", {"to_revision": 6}) as rec:
        rec.result("ok", {"revision": 6})
    with j.action("mitigate.rollback", "deployment/api", {"to_revision": 2}) as rec:
        rec.result("failed")
    j.intent("mitigate.rollback", "deployment/web", {"to_revision": 5})  # killed mid-way
    last = j.last_action("mitigate.rollback", "deployment/web")
    assert last is not None
    assert last["plan"] == {"to_revision": 5} and last["outcome"] == "unknown"
    assert last["result"] is None
    api = j.last_action("mitigate.rollback", "deployment/api")
    assert api is not None and api["outcome"] == "failed"
