"""`mitigate kill-queries`: cancel long-running queries, terminate what a cancel does not end.

Only client backends of the selected database are targets; never somactl's own backend, never
walsenders, autovacuum or other background processes, never superuser sessions (listed as
"requires superuser"). Every signal is guarded by (pid, backend_start) in the same statement, so
a pid reused by a new backend is never signalled. A role that cannot see other users' sessions
(no pg_read_all_stats / pg_monitor) is refused with exit 7 instead of reporting "0 queries".
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from somactl.actions.base import Outcome, Plan, Verification
from somactl.clients.postgres import PgTarget, connect, fetch
from somactl.core.deadline import Deadline
from somactl.core.durations import human_duration
from somactl.core.errors import PermissionDeniedError, SomactlError, UsageError

STATES = {
    "active": ("active",),
    "idle-in-transaction": ("idle in transaction", "idle in transaction (aborted)"),
}
HIDDEN = "<insufficient privilege>"
POLL = 0.1
DEFAULT_TERMINATE_WAIT = 5.0

WHOAMI_SQL = """
SELECT current_user AS me, pg_backend_pid() AS own_pid, current_database() AS db,
       coalesce(r.rolsuper, false) AS superuser,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signal_backend,
       current_setting('server_version_num')::int AS version
FROM pg_roles r WHERE r.rolname = current_user
"""

SESSIONS_SQL = """
SELECT a.pid, a.backend_start, a.usename, a.application_name, host(a.client_addr) AS client,
       a.state, a.backend_type, a.query_start, a.xact_start, a.wait_event_type, a.wait_event,
       a.query, coalesce(r.rolsuper, false) AS superuser,
       CASE WHEN a.usesysid IS NULL THEN false
            ELSE pg_has_role(current_user, a.usesysid, 'MEMBER') END AS member,
       extract(epoch FROM now() - CASE WHEN a.state LIKE 'idle in transaction%%'
                                       THEN coalesce(a.xact_start, a.state_change)
                                       ELSE a.query_start END)::float8 AS age,
       pg_blocking_pids(a.pid) AS blocked_by
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.datname = %(db)s
ORDER BY a.pid
"""

CANCEL_SQL = """
SELECT pg_cancel_backend(a.pid) AS ok FROM pg_stat_activity a
WHERE a.pid = %(pid)s AND a.backend_start = %(start)s
"""

TERMINATE_SQL = """
SELECT pg_terminate_backend(a.pid, %(wait_ms)s) AS ok FROM pg_stat_activity a
WHERE a.pid = %(pid)s AND a.backend_start = %(start)s
"""

PRESENT_SQL = """
SELECT pid, backend_start, state, query_start, xact_start FROM pg_stat_activity
WHERE pid = ANY(%(pids)s)
"""

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_]*)\$.*?\$\1\$", re.S)
_PARAM = re.compile(r"\$\d+")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")


def query_fingerprint(query: str | None) -> tuple[str, str]:
    """(normalized text, short id): literals become `?`, so no value (or secret) is shown."""
    if not query:
        return "", ""
    q = _COMMENT.sub(" ", query)
    q = _STRING.sub("?", q)
    q = _PARAM.sub("?", q)
    q = _NUMBER.sub("?", q)
    q = _LIST.sub("(?, ...)", q)
    q = " ".join(q.split())
    digest = hashlib.sha256(q.encode()).hexdigest()[:12]
    return (q if len(q) <= 120 else q[:117] + "..."), digest


def _ts(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


@dataclass(frozen=True)
class Filters:
    older_than: float
    database: str
    user: str | None = None
    state: str = "active"
    limit: int | None = None
    grace: float = 5.0

    def check(self) -> Filters:
        if self.state not in STATES:
            raise UsageError(f"--state must be one of {', '.join(STATES)} (got {self.state!r})")
        if self.limit is not None and not 1 <= self.limit <= 10000:
            raise UsageError(f"--limit must be between 1 and 10000 (got {self.limit})")
        if not 0 <= self.grace <= 300:
            raise UsageError(f"--grace must be between 0s and 5m (got {self.grace:g}s)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}", self.database):
            raise UsageError(f"--database {self.database!r} is not a valid database name")
        if self.user is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.-]{0,62}", self.user):
            raise UsageError(f"--user {self.user!r} is not a valid role name")
        return self


class KillQueriesAction:
    name = "kill-queries"

    def __init__(self, target: PgTarget, filters: Filters, deadline: Deadline) -> None:
        self.target = target
        self.filters = filters.check()
        self.deadline = deadline
        self._conn: Any = None

    # --- connection ------------------------------------------------------------------------------

    def set_deadline(self, deadline: Deadline) -> None:
        self.close()
        self.deadline = deadline

    def close(self) -> None:
        if self._conn is not None:
            # closing a dead connection must not fail the action
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _sql(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if self._conn is None:
            self._conn = connect(self.target, self.deadline)
        return fetch(self._conn, sql, params, target=self.target, deadline=self.deadline)

    # --- plan ------------------------------------------------------------------------------------

    def plan(self) -> Plan:
        f = self.filters
        who = self._sql(WHOAMI_SQL)[0]
        rows = self._sql(SESSIONS_SQL, {"db": f.database})
        me, own = str(who["me"]), int(who["own_pid"])
        superuser = bool(who["superuser"])
        hidden = [r for r in rows if r["query"] == HIDDEN]
        if not superuser and (not who["read_all_stats"] or hidden):
            raise PermissionDeniedError(
                f"postgres ({self.target.describe()}): role {me} cannot see other users' sessions "
                f"({len(hidden)} of {len(rows)} sessions on {f.database} show {HIDDEN}): grant "
                "pg_read_all_stats or pg_monitor",
                f"GRANT pg_read_all_stats TO {me};  (nothing was signalled; without it "
                "somactl would wrongly report no long-running queries)",
            )
        states = STATES[f.state]
        blocks: dict[int, list[int]] = {}
        for r in rows:
            for b in r["blocked_by"] or []:
                blocks.setdefault(int(b), []).append(int(r["pid"]))
        targets: list[dict[str, Any]] = []
        excluded: list[dict[str, Any]] = []
        for r in rows:
            pid = int(r["pid"])
            if pid == own:
                continue
            if r["state"] not in states:
                continue
            if f.user is not None and r["usename"] != f.user:
                continue
            age = float(r["age"] or 0.0)
            if age < f.older_than:
                continue
            text, qid = query_fingerprint(r["query"])
            entry = {
                "pid": pid,
                "backend_start": _ts(r["backend_start"]),
                "user": r["usename"],
                "application": r["application_name"] or "",
                "client": r["client"],
                "state": r["state"],
                "age_seconds": round(age, 1),
                "age": human_duration(age),
                "fingerprint": text,
                "query_id": qid,
                "wait": f"{r['wait_event_type']}:{r['wait_event']}"
                if r["wait_event_type"]
                else None,
                "blocks": sorted(blocks.get(pid, [])),
                "blocked_by": sorted(int(b) for b in r["blocked_by"] or []),
                "_start": r["backend_start"],
                "_query_start": r["query_start"],
                "_xact_start": r["xact_start"],
            }
            if r["backend_type"] != "client backend":
                excluded.append({**entry, "reason": f"not a client backend ({r['backend_type']})"})
            elif r["superuser"]:
                excluded.append({**entry, "reason": "requires superuser"})
            elif not (superuser or r["usename"] == me or r["member"] or who["signal_backend"]):
                excluded.append(
                    {
                        **entry,
                        "reason": f"cannot signal: needs pg_signal_backend or role {r['usename']}",
                    }
                )
            else:
                entry["root"] = bool(entry["blocks"]) and not entry["blocked_by"]
                targets.append(entry)
        targets.sort(
            key=lambda t: (not t["root"], not t["blocks"], -len(t["blocks"]), -t["age_seconds"])
        )
        if f.limit is not None:
            targets = targets[: f.limit]
        public = [{k: v for k, v in t.items() if not k.startswith("_")} for t in targets]
        state_words = "active" if f.state == "active" else "idle in transaction"
        plan = Plan(
            action=self.name,
            target=f"postgres {self.target.describe()} database {f.database}",
            summary=(
                f"cancel {len(targets)} {state_words} quer{'y' if len(targets) == 1 else 'ies'} "
                f"older than {human_duration(f.older_than)} on {f.database}"
                + (f" by {f.user}" if f.user else "")
                + "; terminate what a cancel does not end"
            ),
            consent=f"cancel/terminate {len(targets)} backends on {f.database}",
            details={
                "role": me,
                "own_pid": own,
                "database": f.database,
                "filters": {
                    "older_than_seconds": f.older_than,
                    "user": f.user,
                    "state": f.state,
                    "limit": f.limit,
                },
                "targets": public,
                "excluded": [
                    {k: v for k, v in e.items() if not k.startswith("_")} for e in excluded
                ],
                "sessions_seen": len(rows),
                "_targets": targets,
            },
            pins={"targets": [[t["pid"], t["backend_start"]] for t in public]},
        )
        if not targets:
            if excluded and all(e["reason"].startswith("cannot signal") for e in excluded):
                raise PermissionDeniedError(
                    f"postgres: role {me} cannot signal the {len(excluded)} matching backends "
                    "(needs pg_signal_backend, or membership of their roles)",
                    f"GRANT pg_signal_backend TO {me};  (nothing was signalled)",
                )
            plan.noop = (
                f"no {state_words} client queries older than {human_duration(f.older_than)} on "
                f"{f.database}"
                + (f" by {f.user}" if f.user else "")
                + f" ({len(rows)} sessions seen, {len(excluded)} excluded)"
            )
        plan.display = [
            f"{'PID':>7}  {'USER':<12} {'APPLICATION':<16} {'STATE':<20} {'AGE':>7}  BLOCKS  QUERY",
        ]
        for t in public:
            mark = "root " if t.get("root") else ""
            plan.display.append(
                f"{t['pid']:>7}  {str(t['user'])[:12]:<12} {t['application'][:16]:<16} "
                f"{str(t['state'])[:20]:<20} {t['age']:>7}  {mark + str(len(t['blocks'])):<6}  "
                f"[{t['query_id']}] {t['fingerprint']}"
            )
        for e in plan.details["excluded"]:
            plan.display.append(f"{e['pid']:>7}  {str(e['user'])[:12]:<12} skipped: {e['reason']}")
        plan.steps = [
            "pg_cancel_backend each target, guarded by (pid, backend_start)",
            f"wait up to {f.grace:g}s for the queries to end",
            "pg_terminate_backend what is still running (or still holds its transaction), "
            "guarded the same way",
        ]
        return plan

    # --- apply -----------------------------------------------------------------------------------

    def _gone_or_reused(self, t: dict[str, Any]) -> str:
        rows = self._sql(PRESENT_SQL, {"pids": [t["pid"]]})
        if not rows:
            return "skipped: already gone"
        if rows[0]["backend_start"] != t["_start"]:
            return "skipped: target gone, pid reused by a new backend (not signalled)"
        return ""

    def _holding(self, t: dict[str, Any], row: dict[str, Any] | None) -> bool:
        if row is None or row["backend_start"] != t["_start"]:
            return False
        if row["state"] == "active" and row["query_start"] == t["_query_start"]:
            return True
        return row["xact_start"] is not None and row["xact_start"] == t["_xact_start"]

    def apply(self, plan: Plan) -> Outcome:
        targets: list[dict[str, Any]] = plan.details["_targets"]
        results: dict[int, dict[str, Any]] = {}

        def record(t: dict[str, Any], result: str, **extra: Any) -> None:
            results[t["pid"]] = {"pid": t["pid"], "user": t["user"], "result": result, **extra}

        live: list[dict[str, Any]] = []
        for t in targets:
            try:
                rows = self._sql(CANCEL_SQL, {"pid": t["pid"], "start": t["_start"]})
                if not rows:
                    record(t, self._gone_or_reused(t) or "skipped: already gone")
                    continue
                if not rows[0]["ok"]:
                    gone = self._gone_or_reused(t)
                    if gone:
                        record(t, gone)
                        continue
                # a refused cancel (still running) is left to the terminate below
                live.append(t)
            except PermissionDeniedError as exc:
                record(t, f"failed: {exc.message}", denied=True)
        # grace: wait for the cancelled queries to end
        end = time.monotonic() + min(self.filters.grace, max(0.0, self.deadline.remaining() - 1))
        holding = list(live)
        while holding:
            present = {
                int(r["pid"]): r
                for r in self._sql(PRESENT_SQL, {"pids": [t["pid"] for t in holding]})
            }
            holding = [t for t in holding if self._holding(t, present.get(t["pid"]))]
            for t in live:
                if t not in holding and t["pid"] not in results:
                    record(t, "cancelled")
            if not holding or time.monotonic() >= end:
                break
            time.sleep(POLL)
        # terminate what a cancel did not end
        wait = max(0.1, min(DEFAULT_TERMINATE_WAIT, self.deadline.remaining() - 1))
        for t in holding:
            try:
                rows = self._sql(
                    TERMINATE_SQL,
                    {"pid": t["pid"], "start": t["_start"], "wait_ms": int(wait * 1000)},
                )
            except PermissionDeniedError as exc:
                record(t, f"failed: {exc.message}", denied=True)
                continue
            except SomactlError as exc:
                record(t, f"failed: {exc.message}")
                continue
            if not rows:
                record(t, "cancelled")  # it ended just before the terminate
            elif rows[0]["ok"]:
                record(t, "terminated")
            else:
                gone = self._gone_or_reused(t)
                record(
                    t, "terminated" if gone else f"failed: still running {wait:g}s after terminate"
                )
        for t in live:
            if t["pid"] not in results:
                record(t, "cancelled")
        ordered = [results[t["pid"]] for t in targets if t["pid"] in results]
        failed = [r for r in ordered if r["result"].startswith("failed")]
        counts: dict[str, int] = {}
        for r in ordered:
            key = r["result"].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing to do"
        details = {"targets": ordered, "counts": counts}
        if not failed:
            return Outcome("applied", summary, details)
        denied = all(r.get("denied") for r in failed)
        if len(failed) == len(ordered):
            return Outcome(
                "failed",
                summary,
                details,
                code=7 if denied else 1,
                hint="grant pg_signal_backend to the role" if denied else None,
            )
        return Outcome("partial", summary, details, code=9)

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        if outcome.status not in ("applied", "partial"):
            return None
        targets: list[dict[str, Any]] = plan.details["_targets"]
        rows = {
            int(r["pid"]): r for r in self._sql(PRESENT_SQL, {"pids": [t["pid"] for t in targets]})
        }
        still = [t["pid"] for t in targets if self._holding(t, rows.get(t["pid"]))]
        self.close()
        return Verification(
            not still,
            "every target query has ended"
            if not still
            else f"still running: pids {', '.join(map(str, still))}",
            before={"long_running": len(targets)},
            after={"long_running": len(still)},
        )
