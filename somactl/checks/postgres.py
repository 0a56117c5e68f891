"""Postgres checks: connectivity and latency, the connection pool by state against
max_connections, long-running queries, idle-in-transaction sessions, blocking chains and the
slowest statements of pg_stat_statements.

One connection per run, shared by the checks (`PgSession`): a diagnosis must not take three
slots of a pool that may be the thing that is exhausted. Everything is read from one snapshot of
pg_stat_activity. A role without pg_read_all_stats sees other roles' sessions with their state
and query hidden (`<insufficient privilege>`): that is reported with the privilege to grant,
never as "0 sessions".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from somactl.checks.base import CheckResult, Status
from somactl.checks.shared import Memo
from somactl.core.deadline import Deadline
from somactl.core.durations import human_duration
from somactl.core.exitcodes import ExitCode

if TYPE_CHECKING:
    from somactl.clients.postgres import PgTarget

HIDDEN = "<insufficient privilege>"
IDLE_IN_XACT = ("idle in transaction", "idle in transaction (aborted)")
SLOW_LATENCY = 1.0  # SELECT 1 slower than this is itself a finding
IDLE_XACT_WARN = 60.0  # an open transaction idle this long holds a slot (and maybe locks)
BLOCKED_CRITICAL = 60.0  # a session waiting on a lock this long: critical
MAX_ROWS = 10

SETTINGS_SQL = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved,
       current_user AS role,
       current_database() AS dbname,
       current_setting('server_version') AS version,
       coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) AS superuser,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats
"""

ACTIVITY_SQL = """
SELECT pid, datname, usename, application_name, client_addr::text AS client_addr,
       backend_type, state, wait_event_type, wait_event,
       extract(epoch FROM now() - backend_start)::float8 AS backend_age,
       extract(epoch FROM now() - xact_start)::float8 AS xact_age,
       extract(epoch FROM now() - query_start)::float8 AS query_age,
       extract(epoch FROM now() - state_change)::float8 AS state_age,
       left(query, 500) AS query,
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blocked_by,
       pid = pg_backend_pid() AS self
FROM pg_stat_activity
ORDER BY pid
"""

STATEMENTS_EXIST_SQL = "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"

STATEMENTS_SQL = """
SELECT queryid::text AS queryid, calls,
       round(mean_exec_time::numeric, 1)::float8 AS mean_ms,
       round(max_exec_time::numeric, 1)::float8 AS max_ms,
       round(total_exec_time::numeric, 1)::float8 AS total_ms,
       rows, left(query, 300) AS query
FROM pg_stat_statements
WHERE calls > 0
ORDER BY mean_exec_time DESC
LIMIT 5
"""


@dataclass
class Activity:
    """One snapshot of pg_stat_activity, with what the connected role may see."""

    settings: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def max_connections(self) -> int:
        return int(self.settings.get("max_connections") or 0)

    @property
    def role(self) -> str:
        return str(self.settings.get("role") or "?")

    def hidden(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("query") == HIDDEN]

    def clients(self) -> list[dict[str, Any]]:
        """Client sessions (ours included): what counts against max_connections. A hidden row
        has no backend_type; those with a database are client sessions of other roles."""
        return [
            r
            for r in self.rows
            if r.get("backend_type") == "client backend"
            or (r.get("query") == HIDDEN and not r.get("backend_type") and r.get("datname"))
        ]

    def visible_clients(self) -> list[dict[str, Any]]:
        return [r for r in self.clients() if r.get("query") != HIDDEN and not r.get("self")]

    def privilege_note(self) -> str:
        n = len(self.hidden())
        return (
            f"role {self.role} cannot see {n} session{'s' if n != 1 else ''} of other roles "
            f"(state and query hidden): grant pg_read_all_stats (or pg_monitor) to {self.role}"
        )


@dataclass
class PgSession:
    """One Postgres connection shared by the checks of a run (used one query at a time)."""

    target: PgTarget
    deadline: Deadline
    _memo: Memo = field(default_factory=Memo)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    connect_seconds: float | None = None

    def conn(self) -> Any:  # a psycopg Connection (only clients name backend libraries)
        def open_() -> Any:
            from somactl.clients.postgres import connect

            t0 = time.monotonic()
            conn = connect(self.target, self.deadline)
            self.connect_seconds = time.monotonic() - t0
            return conn

        return self._memo.get("conn", open_)

    def fetch(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        from somactl.clients.postgres import fetch

        conn = self.conn()
        with self._lock:
            return fetch(conn, sql, params, target=self.target, deadline=self.deadline)

    def activity(self) -> Activity:
        def load() -> Activity:
            settings = self.fetch(SETTINGS_SQL)[0]
            return Activity(settings, self.fetch(ACTIVITY_SQL))

        return self._memo.get("activity", load)

    def statements(self) -> list[dict[str, Any]] | None:
        """The slowest statements by mean time, or None without the extension in this db."""

        def load() -> list[dict[str, Any]] | None:
            if not self.fetch(STATEMENTS_EXIST_SQL):
                return None
            return self.fetch(STATEMENTS_SQL)

        return self._memo.get("statements", load)

    def close(self) -> None:
        conn = self._memo.peek("conn")
        if conn is not None:
            with contextlib.suppress(Exception):  # best effort at the end of a run
                conn.close()


def _dur(seconds: Any) -> str:
    return "?" if seconds is None else human_duration(float(seconds))


def session_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "pid": r.get("pid"),
        "user": r.get("usename"),
        "db": r.get("datname"),
        "application": r.get("application_name"),
        "state": r.get("state"),
        "query_age": _dur(r.get("query_age")),
        "xact_age": _dur(r.get("xact_age")),
        "wait": (
            f"{r.get('wait_event_type')}:{r.get('wait_event')}"
            if r.get("wait_event_type")
            else None
        ),
        "blocked_by": list(r.get("blocked_by") or []) or None,
        "query": (r.get("query") or "").strip()[:200],
    }


def _level(value: float, warn: float, critical: float) -> Status:
    if value >= critical:
        return Status.critical
    return Status.warn if value >= warn else Status.ok


# -- db.connectivity -----------------------------------------------------------------------------


def connectivity_check(session: PgSession, *, check_id: str = "db.connectivity") -> CheckResult:
    from somactl.clients.postgres import TooManyConnectionsError
    from somactl.core.errors import UnreachableError

    title = "Database connectivity (SELECT 1)"
    where = session.target.describe()
    try:
        session.conn()
    except TooManyConnectionsError as exc:
        return CheckResult(
            check_id,
            title,
            "postgres",
            Status.critical,
            f"no connection slot left on {where}: the pool is exhausted",
            evidence={"target": where, "error": exc.message},
            signals={"db_connection_ratio": 1.0},
            facts={"pool_exhausted": True},
        )
    except UnreachableError as exc:
        if "refused" not in exc.message.lower():
            raise
        # The host answered and nothing listens: the database is down (a timeout says nothing).
        return CheckResult(
            check_id,
            title,
            "postgres",
            Status.critical,
            f"connection refused by {where}: the database is down or not listening",
            evidence={"target": where, "error": exc.message},
            signals={"db_up": False},
            facts={"db_down": True},
        )
    t0 = time.monotonic()
    session.fetch("SELECT 1 AS one")
    latency = time.monotonic() - t0
    settings = session.activity().settings
    status = Status.warn if latency > SLOW_LATENCY else Status.ok
    connect_ms = (session.connect_seconds or 0.0) * 1000
    summary = (
        f"SELECT 1 in {latency * 1000:.1f} ms (connect {connect_ms:.0f} ms) as {where}, "
        f"PostgreSQL {settings.get('version')}"
    )
    return CheckResult(
        check_id,
        title,
        "postgres",
        status,
        summary,
        evidence={
            "target": where,
            "latency_ms": round(latency * 1000, 2),
            "connect_ms": round(connect_ms, 1),
            "version": settings.get("version"),
            "role": settings.get("role"),
        },
        signals={"db_up": True},
    )


# -- db.activity (the pool) ----------------------------------------------------------------------


def pool_check(
    session: PgSession,
    *,
    warn_ratio: float = 0.8,
    critical_ratio: float = 0.95,
    check_id: str = "db.activity",
) -> CheckResult:
    from somactl.clients.postgres import TooManyConnectionsError

    title = "Connection pool (sessions against max_connections)"
    try:
        act = session.activity()
    except TooManyConnectionsError:
        return CheckResult(
            check_id,
            title,
            "postgres",
            Status.critical,
            "every connection slot is taken (could not even connect to count them)",
            signals={"db_connection_ratio": 1.0},
            facts={"pool_exhausted": True},
        )
    clients = act.clients()
    used = len(clients)
    max_conn = act.max_connections
    ratio = used / max_conn if max_conn else 0.0
    hidden = act.hidden()
    by_state = Counter(
        ("hidden" if r.get("query") == HIDDEN else (r.get("state") or "unknown")) for r in clients
    )
    by_db = Counter(str(r.get("datname")) for r in clients)
    by_app = Counter(
        f"{r.get('usename') or '?'}/{r.get('application_name') or '-'}"
        for r in clients
        if r.get("query") != HIDDEN
    )
    idle_xact = [r for r in act.visible_clients() if r.get("state") in IDLE_IN_XACT]
    idle_xact.sort(key=lambda r: -(r.get("xact_age") or 0.0))
    old_idle = [r for r in idle_xact if (r.get("state_age") or 0.0) >= IDLE_XACT_WARN]
    status = _level(ratio, warn_ratio, critical_ratio)
    # Non-superusers (the applications) cannot use the superuser_reserved_connections slots:
    # when those are all that is left, the pool is exhausted for them whatever the ratio says.
    reserved = int(act.settings.get("reserved") or 0)
    left = max(0, max_conn - reserved - used)
    if max_conn and left <= max(2, int(0.05 * max_conn)):
        status = Status.critical
    states = ", ".join(f"{n} {s}" for s, n in by_state.most_common())
    summary = (
        f"{used}/{max_conn} connections ({ratio:.0%}), {left} left for non-superusers: {states}"
    )
    if idle_xact:
        summary += (
            f"; {len(idle_xact)} idle in transaction (oldest {_dur(idle_xact[0].get('xact_age'))})"
        )
        if old_idle and status is Status.ok:
            status = Status.warn
    error = None
    error_code = None
    if hidden:
        summary += f"; {act.privilege_note()}"
        if status is Status.ok:
            status = Status.unknown
            error = f"postgres ({session.target.describe()}): {act.privilege_note()}"
            error_code = int(ExitCode.PERMISSION)
    return CheckResult(
        check_id,
        title,
        "postgres",
        status,
        summary,
        evidence={
            "max_connections": max_conn,
            "superuser_reserved": reserved,
            "used": used,
            "left_for_non_superusers": left,
            "ratio": round(ratio, 3),
            "by_state": dict(by_state.most_common()),
            "by_database": dict(by_db.most_common()),
            "by_user_application": dict(by_app.most_common(8)),
            "idle_in_transaction": [session_row(r) for r in idle_xact[:MAX_ROWS]],
            "hidden_sessions": len(hidden),
            "role": act.role,
            "read_all_stats": act.settings.get("read_all_stats"),
        },
        signals={"db_connection_ratio": round(min(1.0, ratio), 4)},
        facts={
            "idle_in_transaction": len(idle_xact),
            "oldest_idle_in_transaction": idle_xact[0].get("state_age") if idle_xact else None,
            "hidden_sessions": len(hidden),
            "pool_left": left,
        },
        raw={"pg_stat_activity.json": act.rows, "settings.json": act.settings},
        error=error,
        error_code=error_code,
    )


# -- db.slow-queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    blocker: int
    blocked: tuple[int, ...]
    longest_wait: float


def blocking_chains(rows: list[dict[str, Any]]) -> list[Chain]:
    """Root blockers (blocking, not blocked themselves) with every session waiting behind them."""
    waits: dict[int, list[int]] = {}
    for r in rows:
        for b in r.get("blocked_by") or []:
            waits.setdefault(int(b), []).append(int(r["pid"]))
    ages = {int(r["pid"]): float(r.get("query_age") or 0.0) for r in rows}
    blocked = {p for v in waits.values() for p in v}
    chains: list[Chain] = []
    for root in sorted(p for p in waits if p not in blocked):
        seen: list[int] = []
        todo = list(waits[root])
        while todo:
            pid = todo.pop(0)
            if pid in seen:
                continue
            seen.append(pid)
            todo.extend(waits.get(pid, []))
        chains.append(Chain(root, tuple(seen), max((ages.get(p, 0.0) for p in seen), default=0.0)))
    return chains


def slow_queries_check(
    session: PgSession,
    *,
    long_running_seconds: float = 300.0,
    check_id: str = "db.slow-queries",
) -> CheckResult:
    title = "Long-running queries, blocking chains, slowest statements"
    act = session.activity()
    visible = act.visible_clients()
    long_running = [
        r
        for r in visible
        if r.get("state") == "active" and (r.get("query_age") or 0.0) >= long_running_seconds
    ]
    long_running.sort(key=lambda r: -(r.get("query_age") or 0.0))
    idle_xact = [
        r
        for r in visible
        if r.get("state") in IDLE_IN_XACT and (r.get("state_age") or 0.0) >= long_running_seconds
    ]
    chains = blocking_chains(act.rows)
    by_pid = {int(r["pid"]): r for r in act.rows}
    n_blocked = sum(len(c.blocked) for c in chains)
    statements = session.statements()
    status = Status.ok
    parts: list[str] = []
    threshold = human_duration(long_running_seconds)
    if long_running:
        status = Status.critical if len(long_running) >= 5 else Status.warn
        parts.append(
            f"{len(long_running)} active quer{'ies' if len(long_running) != 1 else 'y'} "
            f"older than {threshold} (oldest {_dur(long_running[0].get('query_age'))}, "
            f"pid {long_running[0].get('pid')})"
        )
    if chains:
        longest = max(c.longest_wait for c in chains)
        chain_status = (
            Status.critical if longest >= BLOCKED_CRITICAL or n_blocked >= 3 else Status.warn
        )
        status = max(status, chain_status, key=lambda s: _RANK[s])
        parts.append(
            f"{n_blocked} session{'s' if n_blocked != 1 else ''} blocked behind "
            + ", ".join(f"pid {c.blocker}" for c in chains[:3])
            + f" (longest wait {_dur(longest)})"
        )
    if idle_xact:
        status = max(status, Status.warn, key=lambda s: _RANK[s])
        parts.append(f"{len(idle_xact)} idle in transaction for over {threshold}")
    if not parts:
        parts.append(f"no active query older than {threshold}, no blocking chain")
    if statements:
        top = statements[0]
        parts.append(
            f"slowest statement mean {top.get('mean_ms')} ms over {top.get('calls')} calls"
        )
    elif statements is None:
        parts.append("pg_stat_statements not installed in this database")
    error = None
    error_code = None
    hidden = act.hidden()
    if hidden:
        parts.append(act.privilege_note())
        if status is Status.ok:
            status = Status.unknown
            error = f"postgres ({session.target.describe()}): {act.privilege_note()}"
            error_code = int(ExitCode.PERMISSION)
    return CheckResult(
        check_id,
        title,
        "postgres",
        status,
        "; ".join(parts),
        evidence={
            "threshold_seconds": long_running_seconds,
            "long_running": [session_row(r) for r in long_running[:MAX_ROWS]],
            "idle_in_transaction": [session_row(r) for r in idle_xact[:MAX_ROWS]],
            "blocking_chains": [
                {
                    "blocker": session_row(by_pid[c.blocker]) if c.blocker in by_pid else c.blocker,
                    "blocked": [session_row(by_pid[p]) for p in c.blocked if p in by_pid],
                    "longest_wait": _dur(c.longest_wait),
                }
                for c in chains[:MAX_ROWS]
            ],
            "slowest_statements": statements,
            "pg_stat_statements": statements is not None,
            "hidden_sessions": len(hidden),
        },
        signals={"long_running_queries": len(long_running)},
        facts={
            "long_running_threshold": long_running_seconds,
            "long_running": len(long_running),
            "blocked_sessions": n_blocked,
            "blockers": [c.blocker for c in chains],
        },
        raw={"pg_stat_statements.json": statements} if statements else {},
        error=error,
        error_code=error_code,
    )


_RANK = {Status.ok: 0, Status.unknown: 1, Status.warn: 2, Status.critical: 3}
