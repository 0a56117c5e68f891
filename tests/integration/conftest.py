"""Real Postgres, Redis and Prometheus for the integration tests, started by the lab's launchers.

The session fixtures use the very launchers `somactl lab` uses (somactl.lab.runtime), so the
tests and the demo cannot drift. Everything listens on 127.0.0.1 on free ports, lives in a temp
dir and is recorded in one state file that is stopped at session end (also if a fixture failed
half-way). With CI=true a missing binary fails the test; otherwise it is skipped with the reason.

Per-test isolation: `pg_db` gives each test its own database, `redis_prefix` its own key prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from somactl.lab.runtime import (
    Exporter,
    MissingBinaryError,
    PostgresInstance,
    PrometheusInstance,
    RedisInstance,
    StateFile,
    start_postgres,
    start_postgres_exporter,
    start_prometheus,
    start_redis,
    start_redis_exporter,
    stop_all,
)
from tests.helpers import missing

T = TypeVar("T")


def launch(start: Callable[[], T]) -> T:
    """Run a launcher; a missing binary fails under CI=true and skips otherwise."""
    try:
        return start()
    except MissingBinaryError as exc:
        missing(str(exc))


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="session")
def runtime_state(runtime_dir: Path) -> Iterator[StateFile]:
    """The session's state file; whatever it still records at the end is stopped."""
    state = StateFile(runtime_dir / "state.json")
    yield state
    stop_all(state.path)


@pytest.fixture(scope="session")
def pg(runtime_dir: Path, runtime_state: StateFile) -> Iterator[PostgresInstance]:
    instance = launch(lambda: start_postgres(runtime_dir / "postgres", state=runtime_state))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def redis_server(runtime_dir: Path, runtime_state: StateFile) -> Iterator[RedisInstance]:
    instance = launch(
        lambda: start_redis(runtime_dir / "redis", state=runtime_state, requirepass=True)
    )
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def pg_exporter(
    runtime_dir: Path, runtime_state: StateFile, pg: PostgresInstance
) -> Iterator[Exporter]:
    exporter = launch(
        lambda: start_postgres_exporter(runtime_dir / "postgres-exporter", pg, state=runtime_state)
    )
    yield exporter
    exporter.stop()


@pytest.fixture(scope="session")
def redis_exporter(
    runtime_dir: Path, runtime_state: StateFile, redis_server: RedisInstance
) -> Iterator[Exporter]:
    exporter = launch(
        lambda: start_redis_exporter(
            runtime_dir / "redis-exporter", redis_server, state=runtime_state
        )
    )
    yield exporter
    exporter.stop()


@pytest.fixture(scope="session")
def prometheus_jobs(pg_exporter: Exporter, redis_exporter: Exporter) -> dict[str, list[str]]:
    return {"postgres": [pg_exporter.target], "redis": [redis_exporter.target]}


@pytest.fixture(scope="session")
def prometheus(
    runtime_dir: Path, runtime_state: StateFile, prometheus_jobs: dict[str, list[str]]
) -> Iterator[PrometheusInstance]:
    """Prometheus scraping both exporters every second."""
    instance = launch(
        lambda: start_prometheus(
            runtime_dir / "prometheus",
            prometheus_jobs,
            state=runtime_state,
            scrape_interval="1s",
        )
    )
    yield instance
    instance.stop()


@dataclass(frozen=True)
class TestDatabase:
    """A database of its own for one test, owned by the application role."""

    __test__ = False  # not a test class, whatever its name says

    name: str
    pg: PostgresInstance

    def dsn(self, user: str | None = None) -> str:
        return self.pg.dsn(user, dbname=self.name)


@pytest.fixture
def pg_db(pg: PostgresInstance) -> Iterator[TestDatabase]:
    import psycopg
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.superuser_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(pg.app_user)
            )
        )
    yield TestDatabase(name, pg)
    with psycopg.connect(pg.superuser_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def redis_prefix(redis_server: RedisInstance) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"t:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis_server.client()
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
