"""`mitigate kill-queries` against a real Postgres (reliability cases 16, 17, 18, 19, 21).

Background sessions are real backends: application queries (one holding a lock that blocks
another), a superuser query, a query in another database, a walsender and an idle transaction.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from somactl.actions.postgres import Filters, KillQueriesAction, query_fingerprint
from somactl.clients.postgres import PgTarget
from somactl.core.deadline import Deadline
from somactl.lab.runtime import PostgresInstance, StateFile, start_postgres
from tests.helpers import wait_until
from tests.integration.conftest import launch
from tests.mitigate.conftest import Env, Run, set_env

SENTINEL = "s3ntinel-Pa55w0rd-KQ"
STUBBORN = """
CREATE FUNCTION stubborn_sleep(seconds float8) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    BEGIN
      PERFORM pg_sleep(seconds);
      RETURN;
    EXCEPTION WHEN query_canceled THEN
      NULL;  -- swallow the cancel and keep sleeping
    END;
  END LOOP;
END $$
"""


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresInstance]:
    base = tmp_path_factory.mktemp("kq")
    state = StateFile(base / "state.json")
    instance = launch(lambda: start_postgres(base / "pg", state=state))
    try:
        yield instance
    finally:
        instance.stop()


def su(pg: PostgresInstance, sql: str, params: Any = None, db: str = "postgres") -> list[Any]:
    import psycopg

    with psycopg.connect(pg.dsn(None, dbname=db), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


class Backend:
    """One real session running `statements` in a thread (the last one is the long one)."""

    def __init__(self, conninfo: str, *statements: str, simple: bool = False) -> None:
        import psycopg

        self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
        self.pid = int(self.conn.info.backend_pid)
        self.error: BaseException | None = None
        self.finished = threading.Event()

        def run() -> None:
            try:
                for sql in statements:
                    if simple:
                        self.conn.pgconn.exec_(sql.encode())
                    else:
                        self.conn.execute(sql)
            except BaseException as exc:  # noqa: BLE001 -- the test inspects it
                self.error = exc
            finally:
                self.finished.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already terminated by the test
            self.conn.close()


@pytest.fixture
def db(pg: PostgresInstance) -> Iterator[str]:
    name = f"kq_{uuid.uuid4().hex[:10]}"
    su(pg, f'CREATE DATABASE "{name}" OWNER somagent')
    su(pg, "CREATE TABLE t (id int)", db=name)
    su(pg, "ALTER TABLE t OWNER TO somagent", db=name)
    su(pg, STUBBORN, db=name)
    yield name
    su(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def backends(pg: PostgresInstance) -> Iterator[Callable[..., Backend]]:
    made: list[Backend] = []

    def start(conninfo: str, *statements: str, simple: bool = False) -> Backend:
        b = Backend(conninfo, *statements, simple=simple)
        made.append(b)
        return b

    yield start
    # end them server-side first: closing a connection another thread is using is unsafe
    if made:
        su(pg, "SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid",
           ([b.pid for b in made],))  # fmt: skip
    for b in made:
        b.thread.join(timeout=10)
        b.close()


def conninfo(pg: PostgresInstance, user: str | None, db: str, password: str | None = None) -> str:
    who = user or pg.superuser
    pw = password or pg.passwords[who]
    return f"host={pg.host} port={pg.port} user={who} password={pw} dbname={db}"


def activity(pg: PostgresInstance) -> dict[int, dict[str, Any]]:
    rows = su(
        pg,
        "SELECT pid, state, backend_type, backend_start, query FROM pg_stat_activity",
    )
    return {int(r[0]): {"state": r[1], "type": r[2], "start": r[3], "query": r[4]} for r in rows}


def wait_active(pg: PostgresInstance, pids: list[int], older: float = 1.2) -> None:
    def ready() -> bool:
        rows = su(
            pg,
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND state = 'active' "
            "AND now() - query_start > %s",
            (pids, timedelta(seconds=older)),
        )
        return len(rows) == len(pids)

    wait_until(ready, timeout=20, message=f"backends {pids} active for {older}s")


@pytest.fixture
def oncall(env: Env, pg: PostgresInstance, monkeypatch: pytest.MonkeyPatch) -> Env:
    set_env(
        env,
        monkeypatch,
        SOMACTL_PG_DSN=f"postgresql://oncall@{pg.host}:{pg.port}/somagent",
        PGPASSWORD=pg.passwords["oncall"],
    )
    return env


@pytest.fixture
def scene(pg: PostgresInstance, db: str, backends: Callable[..., Backend]) -> dict[str, Backend]:
    """The sessions of reliability case 17."""
    su(pg, "DROP ROLE IF EXISTS repl_kq")
    su(pg, "CREATE ROLE repl_kq LOGIN REPLICATION PASSWORD 'replpw'")
    app = conninfo(pg, "somagent", db)
    # the lock holder ignores a cancel (as a query stuck in an uninterruptible step would):
    # only a terminate ends it
    holder = backends(
        app, "BEGIN", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "SELECT stubborn_sleep(600)"
    )
    wait_active(pg, [holder.pid], older=0.0)
    s = {
        "holder": holder,
        "blocked": backends(app, "SELECT count(*) FROM t WHERE id = 42"),
        "superuser": backends(conninfo(pg, None, db), "SELECT pg_sleep(600)"),
        "other_db": backends(conninfo(pg, "somagent", "somagent"), "SELECT pg_sleep(600)"),
        "walsender": backends(
            conninfo(pg, "repl_kq", db, "replpw") + " replication=database",
            "SELECT pg_sleep(600)",
            simple=True,
        ),
        "idle_tx": backends(app, "BEGIN", "SELECT 1"),
    }
    wait_active(pg, [b.pid for k, b in s.items() if k != "idle_tx"])
    return s


def test_case17_plan_targets_only_client_backends_of_the_database_roots_first(
    pg: PostgresInstance, db: str, scene: dict[str, Backend], oncall: Env, cli: Callable[..., Run]
) -> None:
    before = activity(pg)
    r = cli("-o", "json", "mitigate", "kill-queries", "--older-than", "1s", "--database", db,
            "--dry-run")  # fmt: skip
    assert r.rc == 0, r.err
    plan = json.loads(r.out)["data"]["plan"]["details"]
    targets = plan["targets"]
    assert [t["pid"] for t in targets] == [scene["holder"].pid, scene["blocked"].pid]
    holder, blocked = targets
    assert holder["root"] is True and holder["blocks"] == [scene["blocked"].pid]
    assert blocked["blocked_by"] == [scene["holder"].pid]
    assert holder["user"] == "somagent" and holder["state"] == "active"
    assert holder["fingerprint"] == "SELECT stubborn_sleep(?)"
    assert blocked["fingerprint"] == "SELECT count(*) FROM t WHERE id = ?"  # no literal shown
    excluded = {e["pid"]: e["reason"] for e in plan["excluded"]}
    assert excluded == {
        scene["superuser"].pid: "requires superuser",
        scene["walsender"].pid: "not a client backend (walsender)",
    }
    assert plan["own_pid"] not in [t["pid"] for t in targets]
    assert plan["role"] == "oncall"
    one = cli("-o", "json", "mitigate", "kill-queries", "--older-than", "1s", "--database", db,
              "--limit", "1", "--user", "somagent", "--dry-run")  # fmt: skip
    assert [t["pid"] for t in json.loads(one.out)["data"]["plan"]["details"]["targets"]] == [
        scene["holder"].pid
    ]
    # the dry run signalled nobody
    after = activity(pg)
    for b in scene.values():
        assert after[b.pid]["start"] == before[b.pid]["start"]
        assert after[b.pid]["state"] == before[b.pid]["state"]


def test_case17_kill_cancels_then_terminates_and_spares_every_excluded_session(
    pg: PostgresInstance, db: str, scene: dict[str, Backend], oncall: Env, cli: Callable[..., Run]
) -> None:
    r = cli("mitigate", "kill-queries", "--older-than", "1s", "--database", db,
            "--grace", "1s", "--yes", "--verify", "5s")  # fmt: skip
    assert r.rc == 0, (r.out, r.err)
    holder, blocked = scene["holder"].pid, scene["blocked"].pid
    # the table: the lock holder first, marked as the root of the blocking chain
    lines = r.out.splitlines()
    rows = [ln for ln in lines if ln.strip().split(" ")[0].isdigit()]
    assert rows[0].split()[0] == str(holder) and "root 1" in rows[0]
    assert f"pid {holder} (somagent): terminated" in r.out  # it swallowed the cancel
    assert f"pid {blocked} (somagent): cancelled" in r.out
    assert "RECOVERED: every target query has ended" in r.out
    now = activity(pg)
    assert holder not in now  # really gone from pg_stat_activity
    assert now[blocked]["state"] == "idle"  # its query is gone, the session lives
    for name in ("superuser", "other_db", "walsender"):
        assert now[scene[name].pid]["state"] == "active", name
        assert "pg_sleep" in now[scene[name].pid]["query"]
    assert now[scene["idle_tx"].pid]["state"] == "idle in transaction"
    result = next(x for x in oncall.records("mitigate.kill-queries") if x["phase"] == "result")
    assert result["outcome"] == "ok"
    assert {t["pid"]: t["result"] for t in result["details"]["targets"]} == {
        holder: "terminated",
        blocked: "cancelled",
    }


def test_idle_in_transaction_sessions_are_terminated(
    pg: PostgresInstance, db: str, backends: Callable[..., Backend], oncall: Env,
    cli: Callable[..., Run],
) -> None:  # fmt: skip
    idle = backends(conninfo(pg, "somagent", db), "BEGIN", "SELECT * FROM t")

    def idle_long() -> bool:
        rows = su(
            pg,
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle in transaction' "
            "AND now() - xact_start > interval '1 second'",
            (idle.pid,),
        )
        return bool(rows)

    wait_until(idle_long, timeout=20, message="an idle transaction")
    r = cli("mitigate", "kill-queries", "--older-than", "1s", "--database", db, "--state",
            "idle-in-transaction", "--grace", "0.3s", "--yes", "--verify", "0")  # fmt: skip
    assert r.rc == 0, r.err
    assert f"pid {idle.pid} (somagent): terminated" in r.out
    assert idle.pid not in activity(pg)


def test_case16_role_without_pg_read_all_stats_is_told_and_signals_nothing(
    pg: PostgresInstance,
    db: str,
    backends: Callable[..., Backend],
    env: Env,
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    su(pg, "DROP ROLE IF EXISTS nostats")
    su(pg, "CREATE ROLE nostats LOGIN PASSWORD 'nostats-pw'")
    su(pg, "GRANT pg_signal_backend TO nostats")
    victim = backends(conninfo(pg, "somagent", db), "SELECT pg_sleep(600)")
    wait_active(pg, [victim.pid])
    set_env(
        env,
        monkeypatch,
        SOMACTL_PG_DSN=f"postgresql://nostats@{pg.host}:{pg.port}/somagent",
        PGPASSWORD="nostats-pw",
    )
    r = cli("mitigate", "kill-queries", "--older-than", "1s", "--database", db, "--yes")
    assert r.rc == 7, (r.out, r.err)
    assert "role nostats cannot see other users' sessions" in r.err
    assert "<insufficient privilege>" in r.err
    assert "grant pg_read_all_stats or pg_monitor" in r.err
    assert "0 queries" not in r.out + r.err
    assert activity(pg)[victim.pid]["state"] == "active"  # nothing was signalled


def _action(pg: PostgresInstance, db: str) -> KillQueriesAction:
    target = PgTarget(
        dsn=f"postgresql://oncall@{pg.host}:{pg.port}/somagent", password=pg.passwords["oncall"]
    )
    filters = Filters(older_than=1.0, database=db, grace=0.5)
    return KillQueriesAction(target, filters, Deadline(20))


def test_case18_reused_pid_is_never_signalled(
    pg: PostgresInstance, db: str, backends: Callable[..., Backend]
) -> None:
    victim = backends(conninfo(pg, "somagent", db), "SELECT pg_sleep(600)")
    wait_active(pg, [victim.pid])
    action = _action(pg, db)
    plan = action.plan()
    assert [t["pid"] for t in plan.details["targets"]] == [victim.pid]
    # the planned backend "exited" and a new one got its pid: a different backend_start
    plan.details["_targets"][0]["_start"] -= timedelta(hours=1)
    outcome = action.apply(plan)
    assert outcome.status == "applied"
    assert outcome.details["targets"][0]["result"] == (
        "skipped: target gone, pid reused by a new backend (not signalled)"
    )
    assert activity(pg)[victim.pid]["state"] == "active"
    assert not victim.finished.is_set()


def test_case19_target_already_gone_is_skipped_not_an_error(
    pg: PostgresInstance, db: str, backends: Callable[..., Backend]
) -> None:
    victim = backends(conninfo(pg, "somagent", db), "SELECT pg_sleep(600)")
    wait_active(pg, [victim.pid])
    action = _action(pg, db)
    plan = action.plan()
    su(pg, "SELECT pg_terminate_backend(%s, 5000)", (victim.pid,))
    wait_until(lambda: victim.pid not in activity(pg), timeout=10, message="victim gone")
    outcome = action.apply(plan)
    assert outcome.status == "applied"
    assert outcome.details["targets"] == [
        {"pid": victim.pid, "user": "somagent", "result": "skipped: already gone"}
    ]


def test_case21_password_never_in_output_logs_or_journal(
    pg: PostgresInstance,
    db: str,
    backends: Callable[..., Backend],
    env: Env,
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    su(pg, "DROP ROLE IF EXISTS sentinel_kq")
    su(pg, f"CREATE ROLE sentinel_kq LOGIN PASSWORD '{SENTINEL}'")
    su(pg, "GRANT pg_read_all_stats, pg_signal_backend TO sentinel_kq")
    victim = backends(conninfo(pg, "somagent", db), f"SELECT pg_sleep(600), '{SENTINEL}'")
    wait_active(pg, [victim.pid])
    set_env(
        env,
        monkeypatch,
        SOMACTL_PG_DSN=f"postgresql://sentinel_kq@{pg.host}:{pg.port}/somagent",
        PGPASSWORD=SENTINEL,
    )
    outputs = []
    ok = cli("--debug", "mitigate", "kill-queries", "--older-than", "1s", "--database", db,
             "--grace", "0.5s", "--yes", "--verify", "0")  # fmt: skip
    assert ok.rc == 0, ok.err
    assert f"sentinel_kq@{pg.host}:{pg.port}/somagent" in ok.out
    outputs.append(ok.out + ok.err)
    j = cli("--debug", "-o", "json", "mitigate", "kill-queries", "--older-than", "0s",
            "--database", db, "--dry-run")  # fmt: skip
    outputs.append(j.out + j.err)
    # error paths: a dead port (unreachable) and a wrong database, with --debug tracebacks
    set_env(env, monkeypatch, SOMACTL_PG_DSN=f"postgresql://sentinel_kq@{pg.host}:1/somagent")
    dead = cli("--debug", "--timeout", "3s", "mitigate", "kill-queries", "--yes")
    assert dead.rc == 6, dead.err
    outputs.append(dead.out + dead.err)
    set_env(env, monkeypatch, SOMACTL_PG_DSN=f"postgresql://sentinel_kq@{pg.host}:{pg.port}/nodb")
    nodb = cli("--debug", "mitigate", "kill-queries", "--yes")
    assert nodb.rc != 0
    outputs.append(nodb.out + nodb.err)
    journal = Path(env.state_dir / "audit.jsonl").read_text()
    hits = sum(text.count(SENTINEL) for text in [*outputs, journal])
    assert hits == 0


def test_fingerprints_hide_literals() -> None:
    text, qid = query_fingerprint(
        "SELECT * FROM users WHERE email = 'a@b.c' AND id IN (1, 2, 3) -- note\n"
        "AND token = $1 AND x = $$secret$$"
    )
    assert text == "SELECT * FROM users WHERE email = ? AND id IN (?, ...) AND token = ? AND x = ?"
    assert len(qid) == 12
    assert query_fingerprint("ALTER ROLE x PASSWORD 'hunter2'")[0] == "ALTER ROLE x PASSWORD ?"


def test_dry_run_and_bad_filters(
    pg: PostgresInstance, db: str, oncall: Env, cli: Callable[..., Run]
) -> None:
    bad = cli("mitigate", "kill-queries", "--state", "idle", "--yes")
    assert bad.rc == 2 and "--state must be one of active, idle-in-transaction" in bad.err
    srv = cli("mitigate", "kill-queries", "--dry-run=server")
    assert srv.rc == 2 and "no server-side dry run" in srv.err
    none = cli("mitigate", "kill-queries", "--database", db, "--yes")
    assert none.rc == 0 and "nothing to do: no active client queries older than 5m" in none.out
