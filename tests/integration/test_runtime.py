"""The lab's launchers for real Postgres, Redis, Prometheus and the exporters.

Every component is started and stopped for real; after a stop neither a process nor a listening
port may remain. Recorded pids are only ever signalled if their kernel start time matches.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from somactl.core.exitcodes import ExitCode
from somactl.lab.runtime import (
    Exporter,
    MissingBinaryError,
    PortInUseError,
    PostgresInstance,
    PrometheusInstance,
    RedisInstance,
    StartError,
    StateFile,
    procs,
    start_backends,
    start_postgres,
    start_postgres_exporter,
    start_prometheus,
    start_redis,
    start_redis_exporter,
    stop_all,
    which_or_hint,
)
from tests.helpers import free_port, wait_until
from tests.integration.conftest import TestDatabase, launch

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------------- utilities


def processes_referencing(path: Path) -> list[int]:
    """Live pids whose command line or working directory mentions `path` (ours or not).

    As root, Postgres data may live outside `path` (see pg-data-location files): those count
    too, and such a directory must be gone once its instance is.
    """
    needles = [str(path.resolve())]
    for pointer in path.rglob("pg-data-location"):
        outside = pointer.read_text().strip()
        assert not Path(outside).exists(), f"{outside} outlived its instance"
        needles.append(outside)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        stat_ = procs.proc_stat(int(entry))
        if stat_ is None or stat_.state in ("Z", "X"):
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if any(needle in cmdline or cwd.startswith(needle) for needle in needles):
            found.append(int(entry))
    return found


def assert_nothing_left(record: procs.ProcRecord, state: StateFile) -> None:
    assert not procs.record_alive(record), f"{record.name} pid {record.pid} still runs"
    assert procs.group_members(record.pid) == []
    for port in record.ports.values():
        wait_until(lambda p=port: not procs.port_listening(p), 5, message=f"port {port} released")
        assert not procs.can_connect(port)
    assert all(r.pid != record.pid for r in state.records())


@contextmanager
def occupied_port() -> Iterator[int]:
    """A loopback port that a stranger (this test) is listening on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def sequence_source(*ports: int) -> Callable[[], int]:
    queue = list(ports)
    return lambda: queue.pop(0) if queue else free_port()


# ------------------------------------------------------------------------------ binaries, ports


def test_which_or_hint_names_the_package_to_install() -> None:
    with pytest.raises(MissingBinaryError) as info:
        which_or_hint("somactl-no-such-binary", "somactl-fake-pkg")
    err = info.value
    assert err.code == ExitCode.CONFIG == 3
    assert "\n" not in err.message
    assert "somactl-fake-pkg" in err.message
    assert "apt-get install -y somactl-fake-pkg" in err.message
    assert which_or_hint("sh", "dash").endswith("/sh")


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize("component", ["redis", "prometheus", "postgres"])
def test_port_taken_between_allocation_and_start_moves_to_another(
    component: str, tmp_path: Path
) -> None:
    state = StateFile(tmp_path / "state.json")
    starters: dict[str, Callable[..., Any]] = {
        "redis": lambda **kw: start_redis(tmp_path / "r", state=state, **kw),
        "prometheus": lambda **kw: start_prometheus(tmp_path / "p", {}, state=state, **kw),
        "postgres": lambda **kw: start_postgres(tmp_path / "pg", state=state, **kw),
    }
    with occupied_port() as taken:
        instance = launch(lambda: starters[component](port_source=sequence_source(taken)))
        try:
            assert instance.port != taken
            assert procs.port_owned_by(instance.pid, instance.port)
            assert not procs.port_owned_by(instance.pid, taken)
            assert procs.port_owned_by(os.getpid(), taken)
            # the failed attempt on the taken port left no record behind
            assert [r.pid for r in state.records()] == [instance.pid]
        finally:
            assert instance.stop() == "stopped"
        assert_nothing_left(instance.record, state)


def test_an_explicit_port_that_is_taken_fails_cleanly(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    with occupied_port() as taken, pytest.raises(PortInUseError) as info:
        launch(lambda: start_redis(tmp_path / "r", state=state, port=taken))
    assert info.value.port == taken
    assert state.records() == []
    assert processes_referencing(tmp_path) == []


# ------------------------------------------------------------------------- start/stop for real


@pytest.mark.parametrize(
    "component", ["postgres", "redis", "prometheus", "postgres-exporter", "redis-exporter"]
)
def test_stop_leaves_no_process_and_no_listening_port(
    component: str, tmp_path: Path, pg: PostgresInstance, redis_server: RedisInstance
) -> None:
    state = StateFile(tmp_path / "state.json")
    starters: dict[str, Callable[[], Any]] = {
        "postgres": lambda: start_postgres(tmp_path / "pg", state=state),
        "redis": lambda: start_redis(tmp_path / "r", state=state),
        "prometheus": lambda: start_prometheus(tmp_path / "p", {"x": ["127.0.0.1:1"]}, state=state),
        "postgres-exporter": lambda: start_postgres_exporter(tmp_path / "pe", pg, state=state),
        "redis-exporter": lambda: start_redis_exporter(tmp_path / "re", redis_server, state=state),
    }
    instance = launch(starters[component])
    record: procs.ProcRecord = instance.record
    port = instance.port
    assert procs.record_alive(record)
    assert procs.port_owned_by(record.pid, port)
    assert procs.can_connect(port)
    recorded = {r.pid: r for r in state.records()}
    assert recorded[record.pid].start_ticks == procs.start_ticks(record.pid)
    assert recorded[record.pid].ports == record.ports
    children = procs.children_of(record.pid)
    if component == "postgres":
        assert children, "a running postmaster has background workers"

    assert instance.stop() == "stopped"

    assert_nothing_left(record, state)
    assert [pid for pid in children if procs.proc_stat(pid) is not None] == []
    assert processes_referencing(tmp_path) == []


def test_a_reused_pid_in_a_stale_state_file_is_never_signalled(tmp_path: Path) -> None:
    """stop_all acts only on pids whose kernel start time is the recorded one."""
    state = StateFile(tmp_path / "state.json")
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    stranger = subprocess.Popen(sleeper, start_new_session=True)
    ours = subprocess.Popen(sleeper, start_new_session=True)
    try:
        ticks = wait_until(lambda: procs.start_ticks(stranger.pid), 5)
        ours_ticks = wait_until(lambda: procs.start_ticks(ours.pid), 5)
        base = {"command": sleeper, "ports": {}, "started_at": "", "log": ""}
        # The stale record names the stranger's pid with a different start time: a pid reuse.
        state.add(
            procs.ProcRecord.from_json(
                {**base, "name": "stale", "pid": stranger.pid, "start_ticks": ticks - 1}
            )
        )
        state.add(
            procs.ProcRecord.from_json(
                {**base, "name": "ours", "pid": ours.pid, "start_ticks": ours_ticks}
            )
        )
        outcomes = stop_all(state.path, timeout=5)

        assert outcomes == {"ours": "stopped", "stale": "not-ours"}
        assert stranger.poll() is None, "the stranger was signalled"
        assert wait_until(lambda: ours.poll() is not None, 5)
        assert state.records() == []
    finally:
        for proc in (stranger, ours):
            proc.kill()
            proc.wait(timeout=5)
    # A record of a process that is simply gone is "gone", and nothing is signalled.
    state.add(
        procs.ProcRecord.from_json(
            {"name": "dead", "pid": stranger.pid, "start_ticks": ticks, "command": []}
        )
    )
    assert stop_all(state.path) == {"dead": "gone"}


def test_stop_all_from_another_process_stops_a_half_started_set(tmp_path: Path) -> None:
    """What a crashed `lab up` leaves behind: only the state file knows the processes."""
    state = StateFile(tmp_path / "state.json")
    server = launch(lambda: start_redis(tmp_path / "r", state=state))
    prom = launch(lambda: start_prometheus(tmp_path / "p", {}, state=state))
    assert len(state.records()) == 2

    code = (
        "import json, sys; from somactl.lab.runtime import stop_all; "
        "print(json.dumps(stop_all(sys.argv[1])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(state.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == {"prometheus": "stopped", "redis": "stopped"}
    for instance in (server, prom):
        assert_nothing_left(instance.record, state)
    assert processes_referencing(tmp_path) == []


def test_a_failing_component_takes_the_half_started_set_down(tmp_path: Path) -> None:
    with pytest.raises(StartError) as info:
        launch(lambda: start_backends(tmp_path / "lab", pg_settings={"max_connections": 0}))
    assert "max_connections" in info.value.message
    assert StateFile(tmp_path / "lab" / "state.json").records() == []
    assert processes_referencing(tmp_path) == []


def test_start_backends_cold_start_and_stop_all(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    lab = tmp_path / "lab"
    backends = launch(
        lambda: start_backends(lab, extra_jobs={"gateway-api": ["127.0.0.1:1"], "tools": []})
    )
    try:
        timings = dict(backends.timings)
        timings["first_scrape"] = round(
            backends.prometheus.wait_until_scraped(["postgres", "redis"], timeout=20), 3
        )
        record_property("cold_start_timings", json.dumps(timings))
        print(f"\ncold start timings (s): {json.dumps(timings, sort_keys=True)}")
        for key in ("postgres", "redis", "prometheus", "postgres_exporter", "redis_exporter"):
            assert 0 < timings[key] < 30, key
        assert timings["total"] < 30
        recorded = {r.name for r in StateFile(backends.state_file).records()}
        assert recorded == {
            "postgres",
            "redis",
            "prometheus",
            "postgres-exporter",
            "redis-exporter",
        }
        config = backends.prometheus.config_path.read_text()
        for job in ("postgres", "redis", "gateway-api", "tools"):
            assert f'"job_name": "{job}"' in config
        described = json.dumps(backends.describe())
        for secret in backends.postgres.passwords.values():
            assert secret not in described
    finally:
        outcomes = stop_all(backends.state_file)
    assert set(outcomes.values()) == {"stopped"}
    assert len(outcomes) == 5
    assert StateFile(backends.state_file).records() == []
    assert processes_referencing(tmp_path) == []
    for port in (backends.postgres.port, backends.redis.port, backends.prometheus.port):
        assert not procs.port_listening(port)


# ------------------------------------------------------------------------------------ postgres


def test_postgres_roles_extension_and_privileges(pg: PostgresInstance, pg_db: TestDatabase) -> None:
    import psycopg

    # An alias survives pg_stat_statements' normalisation (a literal would become $1).
    marker = f"marker_{uuid.uuid4().hex}"

    def connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=5)

    with connect(pg.dsn(dbname=pg.dbname)) as su:
        owner = su.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
        assert owner == (pg.app_user,)
        assert su.execute("SHOW max_connections").fetchone() == ("40",)
        assert su.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)

    app = connect(pg_db.dsn(pg.app_user))  # closed by hand: the test terminates its backend
    try:
        _check_privileges(pg, pg_db, app, marker, connect)
    finally:
        app.close()


def _check_privileges(
    pg: PostgresInstance,
    pg_db: TestDatabase,
    app: Any,
    marker: str,
    connect: Callable[[str], Any],
) -> None:
    from psycopg import errors

    with connect(pg_db.dsn(pg.superuser)) as su:
        assert su.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        ).fetchone() == (1,)
        app.execute("CREATE TABLE jobs (id int)")  # the application role can create its schema
        app.execute("BEGIN")
        app.execute(f"SELECT 1 AS {marker}")  # leaves the app session idle in transaction
        app_pid = app.info.backend_pid
        su_pid = su.info.backend_pid

        hits = su.execute(
            "SELECT calls FROM pg_stat_statements WHERE query LIKE %s", [f"%{marker}%"]
        ).fetchall()
        assert hits and hits[0][0] >= 1

        with connect(pg_db.dsn(pg.oncall_user)) as oncall:
            row = oncall.execute(
                "SELECT state, backend_type, query FROM pg_stat_activity WHERE pid = %s",
                [app_pid],
            ).fetchone()
            assert row is not None
            assert row[0] == "idle in transaction"
            assert row[1] == "client backend"
            assert marker in row[2]
            # Non-superusers can never signal a superuser's backend.
            with pytest.raises(errors.InsufficientPrivilege):
                oncall.execute("SELECT pg_cancel_backend(%s)", [su_pid])
            with (
                connect(pg_db.dsn(pg.app_user)) as app2,
                pytest.raises(errors.InsufficientPrivilege),
            ):
                app2.execute("SELECT pg_cancel_backend(%s)", [su_pid])
            # ...but the on-call role may end the application's sessions (pg_signal_backend).
            assert oncall.execute("SELECT pg_terminate_backend(%s)", [app_pid]).fetchone() == (
                True,
            )
            wait_until(
                lambda: (
                    oncall.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [app_pid]
                    ).fetchone()
                    == (0,)
                ),
                5,
                message="terminated backend gone",
            )


def test_a_role_without_read_all_stats_sees_insufficient_privilege(
    pg: PostgresInstance, pg_db: TestDatabase
) -> None:
    """The contrast that proves `oncall` needs pg_read_all_stats (reliability case 16)."""
    import psycopg
    from psycopg import sql

    role, password = f"nostats_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(pg.superuser_dsn, autocommit=True, connect_timeout=5) as su:
        su.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_signal_backend").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    try:
        with (
            psycopg.connect(pg_db.dsn(pg.app_user), autocommit=True) as app,
            psycopg.connect(
                host=pg.host, port=pg.port, user=role, password=password, dbname=pg_db.name
            ) as weak,
        ):
            app.execute("BEGIN")
            app.execute("SELECT 'hidden'")
            row = weak.execute(
                "SELECT state, query FROM pg_stat_activity WHERE pid = %s",
                [app.info.backend_pid],
            ).fetchone()
            assert row == (None, "<insufficient privilege>")
    finally:
        with psycopg.connect(pg.superuser_dsn, autocommit=True, connect_timeout=5) as su:
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_postgres_authentication_is_password_based_on_tcp(pg: PostgresInstance) -> None:
    import psycopg

    for user in (pg.superuser, pg.oncall_user, pg.app_user):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                host=pg.host, port=pg.port, user=user, password="wrong", dbname="postgres"
            ).close()
    with psycopg.connect(pg.oncall_dsn, connect_timeout=5) as conn:
        roles = {
            r[0]
            for r in conn.execute(
                "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = current_user"
            ).fetchall()
        }
    assert roles == {"pg_signal_backend", "pg_read_all_stats"}


def test_secrets_stay_in_0600_files(
    pg: PostgresInstance, redis_server: RedisInstance, runtime_state: StateFile
) -> None:
    import psycopg

    secrets_ = [*pg.passwords.values(), *redis_server.user_passwords.values()]
    assert redis_server.password
    secrets_.append(redis_server.password)
    files = [pg.password_file(role) for role in pg.passwords]
    files += [redis_server.password_file(u) for u in redis_server.user_passwords]
    files += [redis_server.password_file(), redis_server.instance_dir / "redis.conf"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert pg.password_file(pg.oncall_user).read_text().strip() == pg.passwords[pg.oncall_user]

    exposed = [runtime_state.path.read_text(), repr(pg), repr(redis_server)]
    for record in runtime_state.records():
        exposed.append(Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace"))
        exposed.append(Path(record.log).read_text(errors="replace"))
    with psycopg.connect(pg.superuser_dsn, autocommit=True) as su:
        exposed += [r[0] for r in su.execute("SELECT query FROM pg_stat_statements").fetchall()]
    blob = "\n".join(exposed)
    for secret in secrets_:
        assert secret not in blob
    assert "SCRAM-SHA-256$" not in blob


# --------------------------------------------------------------------------------------- redis


def test_redis_acl_users_and_memory_settings(
    redis_server: RedisInstance, redis_prefix: str
) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    anonymous = redis.Redis(
        host=redis_server.host,
        port=redis_server.port,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),  # redis-py retries auth errors 3 times with backoff
    )
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()

    admin = redis_server.client("oncall")
    restricted = redis_server.client("oncall-restricted")
    try:
        restricted.set(f"{redis_prefix}k", "v")
        assert restricted.info("memory")["maxmemory"] == 64 * 1024 * 1024
        with pytest.raises(redis.exceptions.NoPermissionError):
            restricted.flushall()
        assert admin.get(f"{redis_prefix}k") == "v"
        assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert admin.config_get("save") == {"save": ""}
        assert admin.config_get("appendonly") == {"appendonly": "no"}
        assert admin.config_get("bind") == {"bind": "127.0.0.1"}
    finally:
        admin.close()
        restricted.close()


# ---------------------------------------------------------------------------------- prometheus


def test_exporters_expose_the_runbooks_metric_names(
    pg_exporter: Exporter, redis_exporter: Exporter
) -> None:
    pg_names = wait_until(
        lambda: (n := pg_exporter.metric_names()) and "pg_stat_activity_count" in n and n, 10
    )
    assert {"pg_up", "pg_stat_activity_count", "pg_settings_max_connections"} <= pg_names
    redis_text = redis_exporter.metrics_text()
    assert "redis_up 1" in redis_text
    assert {"redis_memory_used_bytes", "redis_memory_max_bytes"} <= redis_exporter.metric_names()


def test_prometheus_scrapes_the_exporters(prometheus: PrometheusInstance) -> None:
    def pool() -> list[dict[str, Any]]:
        return prometheus.query('pg_stat_activity_count{job="postgres",datname="somagent"}')

    samples = wait_until(pool, 20, 0.25, message="pg_stat_activity_count scraped")
    assert {s["metric"]["state"] for s in samples} >= {"active", "idle"}

    ratio = wait_until(
        lambda: prometheus.query("redis_memory_used_bytes / redis_memory_max_bytes"),
        20,
        0.25,
        message="redis memory ratio scraped",
    )
    assert 0 < float(ratio[0]["value"][1]) < 1
    assert prometheus.targets_health() == {"postgres": ["up"], "redis": ["up"]}


def test_prometheus_reloads_new_targets(
    prometheus: PrometheusInstance,
    prometheus_jobs: dict[str, list[str]],
    pg_exporter: Exporter,
) -> None:
    jobs = {**prometheus_jobs, "gateway-api": [pg_exporter.target]}
    prometheus.set_jobs(jobs)
    try:
        health = wait_until(
            lambda: (h := prometheus.targets_health()).get("gateway-api") == ["up"] and h,
            20,
            0.25,
            message="gateway-api target scraped after reload",
        )
        assert set(health) == {"postgres", "redis", "gateway-api"}
    finally:
        prometheus.set_jobs(prometheus_jobs)
    wait_until(lambda: "gateway-api" not in prometheus.targets_health(), 10)
