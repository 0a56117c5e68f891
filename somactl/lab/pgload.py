"""Postgres sessions the lab runs as the application: steady traffic, and the runbook's
database incidents made real (idle-in-transaction pool exhaustion, long queries, lock chains).

    python -m somactl.lab.pgload traffic|hold-idle N|slow

The DSN comes from the environment variable SOMACTL_LAB_APP_DSN (it carries the application
role's password, so never argv). Each mode runs until SIGTERM; sessions that somebody else
terminates (somactl mitigate kill-queries) are not reopened.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from typing import Any

APP_NAME = "somagent-api"
WORKER_NAME = "somagent-worker"
SETUP_SQL = """
CREATE TABLE IF NOT EXISTS workflows (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    state text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS accounts (
    id int PRIMARY KEY,
    credits bigint NOT NULL DEFAULT 0
);
INSERT INTO accounts (id, credits) SELECT g, 1000 FROM generate_series(1, 50) g
ON CONFLICT (id) DO NOTHING;
"""

_stop = threading.Event()


def _connect(application_name: str) -> Any:
    import psycopg

    return psycopg.connect(
        os.environ["SOMACTL_LAB_APP_DSN"],
        application_name=application_name,
        connect_timeout=5,
        autocommit=True,
    )


def setup() -> None:
    with _connect(APP_NAME) as conn:
        conn.execute(SETUP_SQL)


def traffic() -> None:
    """A few small statements per second, like the API serving workflows."""
    import psycopg

    rnd = random.Random()
    conn = None
    while not _stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = _connect(APP_NAME)
            tenant = f"tenant-{rnd.randint(1, 40)}"
            conn.execute(
                "INSERT INTO workflows (tenant, state) VALUES (%s, %s)",
                (tenant, rnd.choice(["queued", "running", "done"])),
            )
            conn.execute("SELECT count(*) FROM workflows WHERE tenant = %s", (tenant,)).fetchone()
            conn.execute(
                "UPDATE accounts SET credits = credits - 1 WHERE id = %s", (rnd.randint(1, 50),)
            )
        except psycopg.Error:
            conn = None
            _stop.wait(1.0)
            continue
        _stop.wait(0.2)


def hold_idle(count: int) -> None:
    """`count` sessions that BEGIN, touch a table and then sit idle in transaction."""
    conns = []
    for _ in range(count):
        try:
            conn = _connect(APP_NAME)
            conn.autocommit = False
            conn.execute("SELECT count(*) FROM workflows").fetchone()
            conns.append(conn)
        except Exception as exc:  # noqa: BLE001 - pool full: keep what we have
            print(f"pgload: stopped opening sessions at {len(conns)}: {exc}", file=sys.stderr)
            break
    print(f"pgload: holding {len(conns)} idle-in-transaction sessions", file=sys.stderr, flush=True)
    _stop.wait()


def slow() -> None:
    """A lock chain (one holder, two waiters) and a long-running report query."""

    def holder() -> None:
        try:
            conn = _connect(WORKER_NAME)
            conn.autocommit = False
            conn.execute("UPDATE accounts SET credits = credits + 1 WHERE id = 1")
            conn.execute("SELECT pg_sleep(3600)")
        except Exception as exc:  # noqa: BLE001 - killed by the responder: that is the fix
            print(f"pgload: holder ended: {type(exc).__name__}", file=sys.stderr, flush=True)

    def waiter() -> None:
        try:
            conn = _connect(APP_NAME)
            conn.execute("UPDATE accounts SET credits = credits - 1 WHERE id = 1")
        except Exception as exc:  # noqa: BLE001 - killed by the responder: that is the fix
            print(f"pgload: waiter ended: {type(exc).__name__}", file=sys.stderr, flush=True)

    def report() -> None:
        try:
            conn = _connect("somagent-reports")
            conn.execute("SELECT pg_sleep(3600), count(*) FROM workflows w1 CROSS JOIN accounts a")
        except Exception as exc:  # noqa: BLE001 - killed by the responder: that is the fix
            print(f"pgload: report ended: {type(exc).__name__}", file=sys.stderr, flush=True)

    threading.Thread(target=holder, daemon=True).start()
    time.sleep(0.5)
    for fn in (waiter, waiter, report):
        threading.Thread(target=fn, daemon=True).start()
    print("pgload: lock chain and long query running", file=sys.stderr, flush=True)
    _stop.wait()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: _stop.set())
    signal.signal(signal.SIGINT, lambda *_: _stop.set())
    if not argv or argv[0] not in ("setup", "traffic", "hold-idle", "slow"):
        print(__doc__, file=sys.stderr)
        return 2
    mode = argv[0]
    if mode == "setup":
        setup()
    elif mode == "traffic":
        setup()
        traffic()
    elif mode == "hold-idle":
        hold_idle(int(argv[1]))
    else:
        slow()
    return 0


if __name__ == "__main__":
    # Sessions may sit in blocking calls in daemon threads: leave without waiting for them.
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
