"""The incident store: SQLite (`incidents.db`) in the state dir, WAL, safe for concurrent writers.

Every mutation is one `BEGIN IMMEDIATE` transaction that changes the incident row *and* appends
its timeline event, so a process killed at any point leaves either both or neither: an incident
always has its `declared` event, ids are allocated under the write lock (two processes declaring
at once get distinct ids), and there are no half rows.

Other layers append to the open incident's timeline with `record_on_open_incident` (cheap when
no incident is open: no database file means no work at all).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from somactl.core.errors import SomactlError, UsageError
from somactl.core.redact import redact, redact_obj

DB_NAME: Final = "incidents.db"
# 2: the `runbook_step` event kind (a v1 store is migrated on open: its events table is rebuilt
# with the wider CHECK, in one transaction under the set-up lock)
SCHEMA_VERSION: Final = 2
BUSY_TIMEOUT_MS: Final = 10_000

STATUSES: Final = ("declared", "investigating", "identified", "monitoring", "resolved")
OPEN_STATUSES: Final = STATUSES[:-1]
EVENT_KINDS: Final = (
    "declared",
    "severity_changed",
    "status_update",
    "note",
    "check_run",
    "action_planned",
    "action_applied",
    "paged",
    "acknowledged",
    "escalated",
    "assigned",
    "notified",
    "resolved",
    "pir_written",
    # `somactl runbook run`: one per step (executed / skipped / failed / not-applicable...)
    "runbook_step",
)
SEVERITY_RE: Final = re.compile(r"^P[0-9]$")

_EVENTS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {{name}} (
    id        INTEGER PRIMARY KEY,
    incident  INTEGER NOT NULL REFERENCES incidents (num),
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ({", ".join(f"'{k}'" for k in EVENT_KINDS)})),
    actor     TEXT NOT NULL,
    summary   TEXT NOT NULL,
    details   TEXT NOT NULL DEFAULT '{{{{}}}}'
)"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS incidents (
    num               INTEGER PRIMARY KEY,
    severity          TEXT NOT NULL,
    title             TEXT NOT NULL,
    impact            TEXT NOT NULL,
    service           TEXT,
    category          TEXT,
    status            TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    commander         TEXT,
    responders        TEXT NOT NULL DEFAULT '[]',
    declared_at       TEXT NOT NULL,
    acknowledged_at   TEXT,
    resolved_at       TEXT,
    last_update_at    TEXT,
    next_update_due   TEXT,
    update_count      INTEGER NOT NULL DEFAULT 0,
    root_cause        TEXT,
    fix               TEXT,
    runbook           TEXT,
    statuspage_id     TEXT,
    pagerduty_keys    TEXT NOT NULL DEFAULT '[]',
    pir_written_at    TEXT,
    pir_path          TEXT
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (declared_at)
    WHERE status <> 'resolved';
CREATE INDEX IF NOT EXISTS incidents_pir_due ON incidents (resolved_at)
    WHERE resolved_at IS NOT NULL AND pir_written_at IS NULL;
{_EVENTS_TABLE.format(name="events")};
CREATE INDEX IF NOT EXISTS events_by_incident ON events (incident, id);
"""


# --- time ---------------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def fmt_ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def default_actor() -> str:
    """Who is running somactl: $SOMACTL_ACTOR, else the login name."""
    name = os.environ.get("SOMACTL_ACTOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- crash points (tests kill the process between steps) ----------------------------------------


def crash_point(name: str) -> None:
    """SIGKILL this process when $SOMACTL_CRASH_AT names this point (crash-consistency tests)."""
    wanted = os.environ.get("SOMACTL_CRASH_AT")
    if wanted and wanted == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


# --- models -------------------------------------------------------------------------------------


def incident_id(num: int) -> str:
    return f"INC-{num}"


def parse_incident_ref(ref: str) -> int:
    """`INC-7`, `inc-7`, `#7` or `7` -> 7 (UsageError otherwise)."""
    text = ref.strip()
    m = re.fullmatch(r"(?:INC-?|#)?(\d{1,9})", text, flags=re.I)
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"not an incident id: {ref!r}", "use INC-7 or 7 (see `incident list`)")
    return int(m.group(1))


@dataclass(frozen=True)
class Incident:
    num: int
    severity: str
    title: str
    impact: str
    service: str | None
    category: str | None
    status: str
    commander: str | None
    responders: tuple[str, ...]
    declared_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    last_update_at: datetime | None
    next_update_due: datetime | None
    update_count: int
    root_cause: str | None
    fix: str | None
    runbook: str | None
    statuspage_id: str | None
    pagerduty_keys: tuple[str, ...]
    pir_written_at: datetime | None
    pir_path: str | None

    @property
    def id(self) -> str:
        return incident_id(self.num)

    @property
    def war_room(self) -> str:
        return f"#incident-{self.num}"

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    @property
    def is_security(self) -> bool:
        return self.category == "security"

    def duration(self, now: datetime | None = None) -> timedelta:
        end = self.resolved_at or now or utcnow()
        return end - self.declared_at

    def to_dict(self) -> dict[str, Any]:
        def ts(v: datetime | None) -> str | None:
            return fmt_ts(v) if v else None

        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "impact": self.impact,
            "service": self.service,
            "category": self.category,
            "status": self.status,
            "commander": self.commander,
            "responders": list(self.responders),
            "war_room": self.war_room,
            "declared_at": ts(self.declared_at),
            "acknowledged_at": ts(self.acknowledged_at),
            "resolved_at": ts(self.resolved_at),
            "last_update_at": ts(self.last_update_at),
            "next_update_due": ts(self.next_update_due),
            "update_count": self.update_count,
            "root_cause": self.root_cause,
            "fix": self.fix,
            "runbook": self.runbook,
            "statuspage_id": self.statuspage_id,
            "pagerduty_keys": list(self.pagerduty_keys),
            "pir_written_at": ts(self.pir_written_at),
            "pir_path": self.pir_path,
        }


@dataclass(frozen=True)
class Event:
    id: int
    incident: int
    at: datetime
    kind: str
    actor: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident": incident_id(self.incident),
            "at": fmt_ts(self.at),
            "kind": self.kind,
            "actor": self.actor,
            "summary": self.summary,
            "details": self.details,
        }


@dataclass(frozen=True)
class EarlierEvent:
    """An event from before the declaration (an action from the audit journal), written on the new
    incident's timeline with its own time, ahead of the `declared` event."""

    at: datetime
    kind: str
    actor: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


_INCIDENT_COLS = (
    "num, severity, title, impact, service, category, status, commander, responders, "
    "declared_at, acknowledged_at, resolved_at, last_update_at, next_update_due, update_count, "
    "root_cause, fix, runbook, statuspage_id, pagerduty_keys, pir_written_at, pir_path"
)


def _incident(row: Sequence[Any]) -> Incident:
    declared = parse_ts(row[9])
    if declared is None:
        raise StoreError(f"incident {row[0]} has no declaration time")
    return Incident(
        num=row[0],
        severity=row[1],
        title=row[2],
        impact=row[3],
        service=row[4],
        category=row[5],
        status=row[6],
        commander=row[7],
        responders=tuple(json.loads(row[8] or "[]")),
        declared_at=declared,
        acknowledged_at=parse_ts(row[10]),
        resolved_at=parse_ts(row[11]),
        last_update_at=parse_ts(row[12]),
        next_update_due=parse_ts(row[13]),
        update_count=row[14],
        root_cause=row[15],
        fix=row[16],
        runbook=row[17],
        statuspage_id=row[18],
        pagerduty_keys=tuple(json.loads(row[19] or "[]")),
        pir_written_at=parse_ts(row[20]),
        pir_path=row[21],
    )


def _event(row: Sequence[Any]) -> Event:
    at = parse_ts(row[2])
    if at is None:
        raise StoreError(f"timeline event {row[0]} has no time")
    return Event(
        id=row[0],
        incident=row[1],
        at=at,
        kind=row[3],
        actor=row[4],
        summary=row[5],
        details=json.loads(row[6] or "{}"),
    )


def _dumps(details: Mapping[str, Any] | None) -> str:
    return json.dumps(redact_obj(dict(details or {})), sort_keys=True, default=str)


class StoreError(SomactlError):
    """The incident store could not be read or written (exit 1)."""

    default_hint = "check the state directory (SOMACTL_STATE_DIR) and `somactl config show`"


# --- the store ----------------------------------------------------------------------------------


class IncidentStore:
    """One SQLite connection to `<state_dir>/incidents.db`. Use as a context manager."""

    def __init__(self, state_dir: str | os.PathLike[str], *, create: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        if create:
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the state directory {self.state_dir} ({exc.strerror})"
                ) from None
        elif not self.path.exists():
            raise FileNotFoundError(self.path)
        if create and not self.path.exists():
            with suppress(OSError):
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        try:
            self.db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._init()
        except sqlite3.Error as exc:
            raise StoreError(f"incident store {self.path}: {exc}") from None

    def _init(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            self.db.execute("PRAGMA synchronous = FULL")
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"incident store {self.path} has schema {version}; this somactl knows "
                f"{SCHEMA_VERSION}",
                "upgrade somactl",
            )
        # Two processes creating the store at once: switching to WAL is refused (SQLITE_BUSY,
        # no busy handler) while another connection holds a lock, so set-up is serialised.
        with self._init_lock():
            if self.db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                self.db.execute("PRAGMA synchronous = FULL")
                return
            mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"incident store {self.path}: cannot switch to WAL (got {mode})")
            self.db.execute("PRAGMA synchronous = FULL")
            with self._tx():
                current = self.db.execute("PRAGMA user_version").fetchone()[0]
                if current == 1:
                    self._migrate_events()
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        with suppress(OSError):
            os.chmod(self.path, 0o600)

    def _migrate_events(self) -> None:
        """v1 -> v2: rebuild `events` with the current kinds (SQLite cannot alter a CHECK)."""
        self.db.execute(_EVENTS_TABLE.format(name="events_new"))
        self.db.execute(
            "INSERT INTO events_new (id, incident, at, kind, actor, summary, details) "
            "SELECT id, incident, at, kind, actor, summary, details FROM events"
        )
        self.db.execute("DROP TABLE events")
        self.db.execute("ALTER TABLE events_new RENAME TO events")

    @contextmanager
    def _init_lock(self) -> Iterator[None]:
        import fcntl

        fd = os.open(self.state_dir / (DB_NAME + ".init-lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for milliseconds, once per new store
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> IncidentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock first, so reads inside see what we write on."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"incident store {self.path}: {exc}") from None
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise StoreError(f"incident store {self.path}: {exc}") from None

    def _append(
        self,
        num: int,
        kind: str,
        summary: str,
        details: Mapping[str, Any] | None,
        actor: str | None,
        at: datetime,
    ) -> int:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown timeline event kind {kind!r}")
        cur = self.db.execute(
            "INSERT INTO events (incident, at, kind, actor, summary, details) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (num, fmt_ts(at), kind, actor or default_actor(), redact(summary), _dumps(details)),
        )
        return int(cur.lastrowid or 0)

    # --- reads ----------------------------------------------------------------------------------

    def get(self, num: int) -> Incident:
        row = self.db.execute(
            f"SELECT {_INCIDENT_COLS} FROM incidents WHERE num = ?", (num,)
        ).fetchone()
        if row is None:
            raise UsageError(
                f"no incident {incident_id(num)} in {self.path}", "list them with `incident list`"
            )
        return _incident(row)

    def next_num(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(num), 0) + 1 FROM incidents").fetchone()[0])

    def open_incidents(self) -> list[Incident]:
        rows = self.db.execute(
            f"SELECT {_INCIDENT_COLS} FROM incidents WHERE status <> 'resolved' "
            "ORDER BY declared_at, num"
        ).fetchall()
        return [_incident(r) for r in rows]

    def pir_pending(self, limit: int = 50) -> tuple[list[Incident], int]:
        """Resolved incidents without a review (oldest resolution first), and their total count."""
        rows = self.db.execute(
            f"SELECT {_INCIDENT_COLS} FROM incidents "
            "WHERE resolved_at IS NOT NULL AND pir_written_at IS NULL "
            "ORDER BY resolved_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        total = self.db.execute(
            "SELECT COUNT(*) FROM incidents "
            "WHERE resolved_at IS NOT NULL AND pir_written_at IS NULL"
        ).fetchone()[0]
        return [_incident(r) for r in rows], int(total)

    def list_incidents(self, *, include_resolved: bool = True, limit: int = 50) -> list[Incident]:
        where = "" if include_resolved else "WHERE status <> 'resolved'"
        rows = self.db.execute(
            f"SELECT {_INCIDENT_COLS} FROM incidents {where} ORDER BY num DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_incident(r) for r in rows]

    def resolve_ref(self, ref: str | None) -> Incident:
        """The incident named by `ref`, or the only open incident when `ref` is None."""
        if ref:
            return self.get(parse_incident_ref(ref))
        rows = self.db.execute(
            "SELECT num FROM incidents WHERE status <> 'resolved' ORDER BY num LIMIT 3"
        ).fetchall()
        if len(rows) == 1:
            return self.get(int(rows[0][0]))
        if not rows:
            raise UsageError("no open incident", "name one (INC-7), or see `incident list`")
        names = ", ".join(incident_id(int(r[0])) for r in rows)
        raise UsageError(
            f"more than one incident is open ({names}{', ...' if len(rows) > 2 else ''})",
            "name the incident (e.g. INC-7)",
        )

    def timeline(self, num: int, *, kinds: Sequence[str] | None = None) -> list[Event]:
        sql = (
            "SELECT id, incident, at, kind, actor, summary, details FROM events WHERE incident = ?"
        )
        params: list[Any] = [num]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += list(kinds)
        rows = self.db.execute(sql + " ORDER BY id", params).fetchall()
        return [_event(r) for r in rows]

    def event_counts(self) -> tuple[int, int]:
        inc = self.db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        ev = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return int(inc), int(ev)

    # --- writes (each one transaction: the row change and its event) -----------------------------

    def declare(
        self,
        *,
        severity: str,
        title: str,
        impact: str,
        service: str | None = None,
        commander: str | None = None,
        category: str | None = None,
        next_update_due: datetime | None = None,
        actor: str | None = None,
        details: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        earlier: Sequence[EarlierEvent] = (),
    ) -> Incident:
        """Record a new incident and its `declared` event; the id is allocated under the lock.

        `earlier` events go on the timeline first (the timeline is in id order), in the same
        transaction."""
        if not SEVERITY_RE.match(severity):
            raise UsageError(f"severity must be P0-P4, not {severity!r}")
        at = now or utcnow()
        with self._tx():
            num = self.next_num()
            crash_point("declare:allocated")
            self.db.execute(
                "INSERT INTO incidents (num, severity, title, impact, service, category, status, "
                "commander, declared_at, last_update_at, next_update_due) "
                "VALUES (?, ?, ?, ?, ?, ?, 'declared', ?, ?, ?, ?)",
                (
                    num,
                    severity,
                    redact(title),
                    redact(impact),
                    service,
                    category,
                    commander,
                    fmt_ts(at),
                    fmt_ts(at),
                    fmt_ts(next_update_due) if next_update_due else None,
                ),
            )
            crash_point("declare:row")
            for e in earlier:
                self._append(num, e.kind, e.summary, e.details, e.actor, e.at)
            self._append(
                num,
                "declared",
                f"Incident declared - {severity}: {title}",
                {
                    "severity": severity,
                    "title": title,
                    "impact": impact,
                    "service": service,
                    "commander": commander,
                    "category": category,
                    **(details or {}),
                },
                actor,
                at,
            )
            crash_point("declare:event")
        crash_point("declare:committed")
        return self.get(num)

    def append(
        self,
        num: int,
        kind: str,
        summary: str,
        details: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Append one timeline event (no change to the incident row). Returns the event id."""
        with self._tx():
            if self.db.execute("SELECT 1 FROM incidents WHERE num = ?", (num,)).fetchone() is None:
                raise UsageError(f"no incident {incident_id(num)}")
            return self._append(num, kind, summary, details, actor, now or utcnow())

    def post_update(
        self,
        num: int,
        *,
        status: str,
        impact: str | None,
        actions: str | None,
        next_update_due: datetime | None,
        message: str,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Incident, int]:
        """A status update: bumps the update counter, sets status/impact and the next due time."""
        if status not in OPEN_STATUSES:
            raise UsageError(
                f"status must be one of {', '.join(OPEN_STATUSES[1:])} (use `incident resolve` "
                f"to resolve), not {status!r}"
            )
        at = now or utcnow()
        with self._tx():
            inc = self.get(num)
            if not inc.is_open:
                raise UsageError(f"{inc.id} is resolved", "declare a new incident instead")
            count = inc.update_count + 1
            self.db.execute(
                "UPDATE incidents SET status = ?, impact = ?, update_count = ?, "
                "last_update_at = ?, next_update_due = ? WHERE num = ?",
                (
                    status,
                    redact(impact) if impact else inc.impact,
                    count,
                    fmt_ts(at),
                    fmt_ts(next_update_due) if next_update_due else None,
                    num,
                ),
            )
            self._append(
                num,
                "status_update",
                f"Update #{count}: {status}" + (f" - {actions}" if actions else ""),
                {
                    "update": count,
                    "status": status,
                    "impact": impact,
                    "actions": actions,
                    "message": message,
                },
                actor,
                at,
            )
        return self.get(num), count

    def change_severity(
        self,
        num: int,
        severity: str,
        *,
        reason: str | None = None,
        next_update_due: datetime | None = None,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Incident, str]:
        if not SEVERITY_RE.match(severity):
            raise UsageError(f"severity must be P0-P4, not {severity!r}")
        at = now or utcnow()
        with self._tx():
            inc = self.get(num)
            old = inc.severity
            self.db.execute(
                "UPDATE incidents SET severity = ?, next_update_due = ? WHERE num = ?",
                (
                    severity,
                    fmt_ts(next_update_due) if next_update_due else None,
                    num,
                ),
            )
            self._append(
                num,
                "severity_changed",
                f"Severity {old} -> {severity}" + (f": {reason}" if reason else ""),
                {"from": old, "to": severity, "reason": reason},
                actor,
                at,
            )
        return self.get(num), old

    def assign(
        self,
        num: int,
        *,
        commander: str | None,
        responders: Sequence[str] = (),
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Incident:
        at = now or utcnow()
        with self._tx():
            inc = self.get(num)
            new_commander = commander or inc.commander
            merged = list(inc.responders)
            merged += [r for r in responders if r not in merged]
            self.db.execute(
                "UPDATE incidents SET commander = ?, responders = ? WHERE num = ?",
                (new_commander, json.dumps(merged), num),
            )
            parts = []
            if commander:
                parts.append(f"commander {inc.commander or '-'} -> {commander}")
            if responders:
                parts.append("responders + " + ", ".join(responders))
            self._append(
                num,
                "assigned",
                "; ".join(parts) or "no change",
                {
                    "commander": new_commander,
                    "previous_commander": inc.commander,
                    "responders": merged,
                },
                actor,
                at,
            )
        return self.get(num)

    def acknowledge(
        self, num: int, *, actor: str | None = None, now: datetime | None = None
    ) -> Incident:
        at = now or utcnow()
        with self._tx():
            inc = self.get(num)
            self.db.execute(
                "UPDATE incidents SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE num = ?",
                (fmt_ts(at), num),
            )
            self._append(
                num,
                "acknowledged",
                f"Acknowledged by {actor or default_actor()}",
                {"first": inc.acknowledged_at is None},
                actor,
                at,
            )
        return self.get(num)

    def resolve(
        self,
        num: int,
        *,
        root_cause: str,
        fix: str,
        runbook: str | None = None,
        message: str = "",
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Incident:
        at = now or utcnow()
        with self._tx():
            inc = self.get(num)
            if not inc.is_open:
                raise UsageError(f"{inc.id} is already resolved")
            self.db.execute(
                "UPDATE incidents SET status = 'resolved', resolved_at = ?, root_cause = ?, "
                "fix = ?, runbook = COALESCE(?, runbook), next_update_due = NULL, "
                "last_update_at = ? WHERE num = ?",
                (fmt_ts(at), redact(root_cause), redact(fix), runbook, fmt_ts(at), num),
            )
            self._append(
                num,
                "resolved",
                f"Resolved: {root_cause}",
                {
                    "root_cause": root_cause,
                    "fix": fix,
                    "runbook": runbook,
                    "message": message,
                    "duration_seconds": int((at - inc.declared_at).total_seconds()),
                },
                actor,
                at,
            )
        return self.get(num)

    def set_category(self, num: int, category: str, *, actor: str | None = None) -> Incident:
        """Mark the incident's category (e.g. "security"), with a note on the timeline."""
        with self._tx():
            self.get(num)
            self.db.execute("UPDATE incidents SET category = ? WHERE num = ?", (category, num))
            self._append(
                num,
                "note",
                f"Marked as a {category} incident",
                {"category": category},
                actor,
                utcnow(),
            )
        return self.get(num)

    def set_runbook(self, num: int, runbook: str) -> None:
        with self._tx():
            self.db.execute("UPDATE incidents SET runbook = ? WHERE num = ?", (runbook, num))

    def set_statuspage_id(self, num: int, page_incident_id: str) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE incidents SET statuspage_id = ? WHERE num = ?", (page_incident_id, num)
            )

    def add_pagerduty_key(self, num: int, key: str) -> None:
        with self._tx():
            row = self.db.execute(
                "SELECT pagerduty_keys FROM incidents WHERE num = ?", (num,)
            ).fetchone()
            keys = json.loads(row[0] or "[]") if row else []
            if key not in keys:
                keys.append(key)
                self.db.execute(
                    "UPDATE incidents SET pagerduty_keys = ? WHERE num = ?", (json.dumps(keys), num)
                )

    def mark_pir_written(
        self, num: int, path: str, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        at = now or utcnow()
        with self._tx():
            self.get(num)
            self.db.execute(
                "UPDATE incidents SET pir_written_at = ?, pir_path = ? WHERE num = ?",
                (fmt_ts(at), path, num),
            )
            self._append(
                num,
                "pir_written",
                f"Post-incident review written to {path}",
                {"path": path},
                actor,
                at,
            )


# --- the cross-layer entry point ----------------------------------------------------------------


def find_open_incident(
    state_dir: str | os.PathLike[str], *, service: str | None = None, strict: bool = False
) -> str | None:
    """The id of the open incident actions should be recorded on, or None (no file, no incident).

    With several open incidents, the latest one for `service` wins, else the latest declared
    (`strict`: only one for `service`).
    """
    path = Path(state_dir) / DB_NAME
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error:
        return None
    try:
        rows = db.execute(
            "SELECT num, service FROM incidents WHERE status <> 'resolved' "
            "ORDER BY declared_at DESC, num DESC"
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    if not rows:
        return None
    if service:
        for num, svc in rows:
            if svc == service:
                return incident_id(int(num))
    if strict:
        return None
    return incident_id(int(rows[0][0]))


def record_on_open_incident(
    state_dir: str | os.PathLike[str],
    kind: str,
    summary: str,
    details: Mapping[str, Any] | None = None,
    *,
    service: str | None = None,
    incident: str | None = None,
    actor: str | None = None,
) -> str | None:
    """Append an event to the open incident's timeline; return its id, or None if none is open.

    `kind` is one of EVENT_KINDS (diagnose: "check_run" with details {"verdict": ...};
    mitigate: "action_planned" / "action_applied" with details {"outcome": ...}). Details are
    redacted before they are stored. `incident` pins the incident (INC-7); otherwise see
    `find_open_incident`. Never creates the database.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown timeline event kind {kind!r}")
    target = incident or find_open_incident(state_dir, service=service)
    if target is None:
        return None
    with IncidentStore(state_dir, create=False) as store:
        num = parse_incident_ref(target)
        store.append(num, kind, summary, details, actor=actor)
    return incident_id(num)


def completion_ids(state_dir: str | os.PathLike[str], limit: int = 50) -> list[str]:
    """Incident ids for shell completion: open ones first, then the latest. Read only, no errors."""
    path = Path(state_dir) / DB_NAME
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
        try:
            rows = db.execute(
                "SELECT num FROM incidents ORDER BY status = 'resolved', num DESC LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [incident_id(int(r[0])) for r in rows]
