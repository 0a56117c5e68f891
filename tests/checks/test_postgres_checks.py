"""The Postgres checks against a real Postgres (the integration suite's instance) with real
background sessions: idle in transaction, long-running, blocked behind a lock."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from somactl.checks.base import Check, Status, run_checks
from somactl.checks.postgres import (
    PgSession,
    connectivity_check,
    pool_check,
    slow_queries_check,
)
from somactl.clients.postgres import PgTarget
from somactl.core.deadline import Deadline
from somactl.core.errors import PermissionDeniedError
from somactl.lab.runtime import PostgresInstance
from tests.helpers import wait_until
from tests.integration.conftest import TestDatabase

SENTINEL = "s3ntinel-Pg-Pa55w0rd-7781"


def target(pg: PostgresInstance, user: str, dbname: str, password: str | None = None) -> PgTarget:
    return PgTarget(
        f"host={pg.host} port={pg.port} user={user} dbname={dbname}",
        password if password is not None else pg.passwords[user],
    )


def session(t: PgTarget, seconds: float = 10.0) -> PgSession:
    return PgSession(t, Deadline(seconds))


@pytest.fixture
def app_conns(pg_db: TestDatabase) -> Iterator[list[psycopg.Connection[Any]]]:
    conns: list[psycopg.Connection[Any]] = []
    yield conns
    for c in conns:
        with contextlib.suppress(psycopg.Error):
            c.cancel()
        c.close()


def app_connect(pg_db: TestDatabase, conns: list[psycopg.Connection[Any]], name: str) -> Any:
    conn = psycopg.connect(pg_db.dsn(pg_db.pg.app_user), application_name=name, autocommit=True)
    conns.append(conn)
    return conn


def states(pg: PostgresInstance, dbname: str) -> dict[str, int]:
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(state, '?'), wait_event_type, count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() GROUP BY 1, 2",
            (dbname,),
        ).fetchall()
    out: dict[str, int] = {}
    for state, wait, n in rows:
        key = f"{state}/{wait}" if wait == "Lock" else state
        out[key] = out.get(key, 0) + n
    return out


def test_connectivity_measures_select_1(pg: PostgresInstance, pg_db: TestDatabase) -> None:
    s = session(target(pg, pg.oncall_user, pg_db.name))
    r = connectivity_check(s)
    s.close()
    assert r.status is Status.ok
    assert r.signals == {"db_up": True}
    assert r.summary.startswith("SELECT 1 in ")
    assert f"as oncall@{pg.host}:{pg.port}/{pg_db.name}" in r.summary
    assert r.evidence["latency_ms"] > 0


def test_pool_counts_sessions_idle_in_transaction(
    pg: PostgresInstance, pg_db: TestDatabase, app_conns: list[Any]
) -> None:
    for i in range(3):
        conn = app_connect(pg_db, app_conns, f"idler-{i}")
        conn.autocommit = False
        conn.execute("SELECT 1")
    wait_until(lambda: states(pg, pg_db.name).get("idle in transaction", 0) >= 3)
    s = session(target(pg, pg.oncall_user, pg_db.name))
    r = pool_check(s)
    s.close()
    assert r.evidence["by_state"]["idle in transaction"] >= 3
    assert r.evidence["hidden_sessions"] == 0
    assert r.facts["idle_in_transaction"] >= 3
    idlers = [x for x in r.evidence["idle_in_transaction"] if x["db"] == pg_db.name]
    assert sorted(x["application"] for x in idlers) == ["idler-0", "idler-1", "idler-2"]
    assert 0 < r.signals["db_connection_ratio"] <= 1
    assert f"/{r.evidence['max_connections']} connections" in r.summary


def test_long_running_queries_and_a_blocking_chain(
    pg: PostgresInstance, pg_db: TestDatabase, app_conns: list[Any]
) -> None:
    setup = app_connect(pg_db, app_conns, "setup")
    setup.execute("CREATE TABLE acct (id int PRIMARY KEY, n int)")
    setup.execute("INSERT INTO acct VALUES (1, 0)")
    holder = app_connect(pg_db, app_conns, "holder")
    holder.autocommit = False
    holder.execute("UPDATE acct SET n = n + 1 WHERE id = 1")  # holds the row lock, idle in xact
    waiter = app_connect(pg_db, app_conns, "waiter")
    sleeper = app_connect(pg_db, app_conns, "sleeper")
    threads = [
        threading.Thread(
            target=_quietly, args=(waiter, "UPDATE acct SET n = n - 1 WHERE id = 1"), daemon=True
        ),
        threading.Thread(target=_quietly, args=(sleeper, "SELECT pg_sleep(60)"), daemon=True),
    ]
    for t in threads:
        t.start()
    wait_until(lambda: states(pg, pg_db.name).get("active/Lock", 0) >= 1, message="a waiter")
    wait_until(lambda: states(pg, pg_db.name).get("active", 0) >= 1, message="a sleeper")
    s = session(target(pg, pg.oncall_user, pg_db.name))
    r = wait_until(
        lambda: (
            (
                x := slow_queries_check(
                    session(target(pg, pg.oncall_user, pg_db.name)), long_running_seconds=0.5
                )
            ).signals["long_running_queries"]
            >= 2
            and x
        ),
        message="two queries older than 0.5s",
    )
    s.close()
    apps = {x["application"] for x in r.evidence["long_running"]}
    assert {"waiter", "sleeper"} <= apps
    chain = next(
        c for c in r.evidence["blocking_chains"] if c["blocker"]["application"] == "holder"
    )
    assert [b["application"] for b in chain["blocked"]] == ["waiter"]
    assert chain["blocker"]["state"] == "idle in transaction"
    assert r.status in (Status.warn, Status.critical)
    assert r.facts["blocked_sessions"] >= 1


def test_pg_stat_statements_lists_the_slowest_statements(pg: PostgresInstance) -> None:
    s = session(target(pg, pg.oncall_user, pg.dbname))
    r = slow_queries_check(s)
    s.close()
    assert r.evidence["pg_stat_statements"] is True
    assert isinstance(r.evidence["slowest_statements"], list)
    assert all("mean_ms" in x for x in r.evidence["slowest_statements"])


def test_without_pg_stat_statements_the_check_says_so(
    pg: PostgresInstance, pg_db: TestDatabase
) -> None:
    with psycopg.connect(pg_db.dsn(pg.superuser), autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
    s = session(target(pg, pg.oncall_user, pg_db.name))
    r = slow_queries_check(s)
    s.close()
    assert r.evidence["pg_stat_statements"] is False
    assert "pg_stat_statements not installed in this database" in r.summary
    assert r.status is Status.ok


def test_a_role_without_pg_read_all_stats_is_told_which_privilege(
    pg: PostgresInstance, pg_db: TestDatabase, app_conns: list[Any]
) -> None:
    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
        conn.execute("SET pg_stat_statements.track_utility = off")
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
    try:
        for i in range(2):
            conn = app_connect(pg_db, app_conns, f"busy-{i}")
            conn.autocommit = False
            conn.execute("SELECT 1")
        wait_until(lambda: states(pg, pg_db.name).get("idle in transaction", 0) >= 2)
        s = session(target(pg, role, pg_db.name, password))
        pool = pool_check(s)
        slow = slow_queries_check(s, long_running_seconds=0.0)
        s.close()
        note = f"grant pg_read_all_stats (or pg_monitor) to {role}"
        for r in (pool, slow):
            assert note in r.summary
            assert r.evidence["hidden_sessions"] >= 2
        # the pool's size is still counted (hidden rows are sessions too): never "0 sessions"
        assert pool.evidence["used"] >= 3
        assert pool.evidence["by_state"]["hidden"] >= 2
        assert (pool.status, pool.error_code) == (Status.unknown, 7)
        assert (slow.status, slow.error_code) == (Status.unknown, 7)
        assert note in (slow.error or "")
    finally:
        with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


def test_a_wrong_password_is_permission_denied_naming_postgres_not_the_password(
    pg: PostgresInstance, pg_db: TestDatabase
) -> None:
    s = session(target(pg, pg.oncall_user, pg_db.name, SENTINEL))
    with pytest.raises(PermissionDeniedError) as err:
        connectivity_check(s)
    assert err.value.code == 7
    assert err.value.message.startswith(f"postgres (oncall@{pg.host}:{pg.port}/{pg_db.name})")
    assert SENTINEL not in err.value.message + err.value.hint


def test_a_full_connection_limit_is_a_critical_pool_finding(
    pg: PostgresInstance, pg_db: TestDatabase
) -> None:
    role = f"limited_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
        conn.execute("SET pg_stat_statements.track_utility = off")
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 1 PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
    t = target(pg, role, pg_db.name, password)
    hold = psycopg.connect(t.dsn, password=password)
    try:
        r = connectivity_check(session(t))
        assert r.status is Status.critical
        assert r.summary.endswith(
            "no connection slot left on " + t.describe() + ": the pool is exhausted"
        )
        assert r.signals == {"db_connection_ratio": 1.0}
        assert "db_up" not in r.signals  # the database answered: it is not down
    finally:
        hold.close()
        with psycopg.connect(pg.superuser_dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


def test_a_refused_port_means_the_database_is_down() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = session(PgTarget(f"host=127.0.0.1 port={port} user=u dbname=d", "pw"))
    r = connectivity_check(s)
    assert r.status is Status.critical
    assert r.signals == {"db_up": False}
    assert "connection refused" in r.summary


def test_three_checks_share_one_connection(pg: PostgresInstance, pg_db: TestDatabase) -> None:
    s = session(target(pg, pg.oncall_user, pg_db.name))
    results = run_checks(
        [
            Check("c", "c", "postgres", lambda d: connectivity_check(s)),
            Check("p", "p", "postgres", lambda d: pool_check(s)),
            Check("s", "s", "postgres", lambda d: slow_queries_check(s)),
        ],
        Deadline(10),
    )
    assert [r.status for r in results] == [Status.ok, Status.ok, Status.ok], [
        r.summary for r in results
    ]
    mine = [
        x
        for x in results[1].raw["pg_stat_activity.json"]
        if x.get("usename") == "oncall" and x.get("datname") == pg_db.name
    ]
    s.close()
    assert len(mine) == 1  # one session of ours, not three


def _quietly(conn: Any, sql: str) -> None:
    with contextlib.suppress(psycopg.Error):  # cancelled at the end of the test
        conn.execute(sql)


def test_a_connect_timeout_names_the_deadline_as_given() -> None:
    """--timeout 2.5s is said as 2.5s: not 2s (rounded down) nor 3s (libpq's whole seconds)."""
    from somactl.core.errors import UnreachableError
    from tests.helpers.faultproxy import FaultProxy

    with FaultProxy(("127.0.0.1", 9), mode="blackhole") as hole:
        s = session(PgTarget(f"host=127.0.0.1 port={hole.port} user=u dbname=d", "pw"), 2.5)
        with pytest.raises(UnreachableError) as caught:
            connectivity_check(s)
    assert "postgres: no response within 2.5s (" in caught.value.message, caught.value.message
