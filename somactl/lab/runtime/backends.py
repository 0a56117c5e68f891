"""Start the lab's whole set of real backing services at once, and stop it from its state file.

Three independent chains run in parallel (cold start matters: the lab must be up within 30 s on
two cores):

    postgres: initdb -> start -> roles -> postgres-exporter
    redis:    start -> redis-exporter
    prometheus (its exporter ports are allocated up front; reloaded if one had to move)

Every process is recorded in `<dir>/state.json` the moment it is spawned, so `stop_all` stops a
half-started set too. If any part fails, `start_backends` stops what did start and raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from somactl.core.errors import SomactlError
from somactl.lab.runtime import procs
from somactl.lab.runtime.exporters import (
    Exporter,
    start_postgres_exporter,
    start_redis_exporter,
)
from somactl.lab.runtime.postgres import DEFAULT_MAX_CONNECTIONS, PostgresInstance, start_postgres
from somactl.lab.runtime.procs import StartError, StateFile, StopOutcome
from somactl.lab.runtime.prometheus import (
    JobsSpec,
    PrometheusInstance,
    ScrapeJob,
    normalise_jobs,
    start_prometheus,
)
from somactl.lab.runtime.redis import RedisInstance, start_redis

POSTGRES_JOB = "postgres"
REDIS_JOB = "redis"
STATE_FILE_NAME = "state.json"

T = TypeVar("T")


@dataclass(frozen=True)
class Backends:
    postgres: PostgresInstance
    redis: RedisInstance
    postgres_exporter: Exporter
    redis_exporter: Exporter
    prometheus: PrometheusInstance
    state_file: Path
    extra_jobs: tuple[ScrapeJob, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    def scrape_jobs(self) -> list[ScrapeJob]:
        return [
            ScrapeJob(POSTGRES_JOB, (self.postgres_exporter.target,)),
            ScrapeJob(REDIS_JOB, (self.redis_exporter.target,)),
            *self.extra_jobs,
        ]

    def set_extra_jobs(self, jobs: JobsSpec) -> Backends:
        """Point Prometheus at a new set of application jobs (exporter jobs stay)."""
        updated = Backends(
            postgres=self.postgres,
            redis=self.redis,
            postgres_exporter=self.postgres_exporter,
            redis_exporter=self.redis_exporter,
            prometheus=self.prometheus,
            state_file=self.state_file,
            extra_jobs=tuple(normalise_jobs(jobs)),
            timings=self.timings,
        )
        self.prometheus.set_jobs(updated.scrape_jobs())
        return updated

    def describe(self) -> dict[str, Any]:
        """Addresses, pids and password *files* (never passwords), e.g. for `somactl lab status`."""
        pg = self.postgres
        return {
            "state_file": str(self.state_file),
            "postgres": {
                "host": pg.host,
                "port": pg.port,
                "pid": pg.pid,
                "dbname": pg.dbname,
                "data_dir": str(pg.data_dir),
                "roles": {
                    role: str(pg.password_file(role))
                    for role in (pg.superuser, pg.app_user, pg.monitor_user, pg.oncall_user)
                },
            },
            "redis": {
                "host": self.redis.host,
                "port": self.redis.port,
                "pid": self.redis.pid,
                "maxmemory": self.redis.maxmemory,
                "maxmemory_policy": self.redis.maxmemory_policy,
                "users": {
                    user: str(self.redis.password_file(user)) for user in self.redis.user_passwords
                },
            },
            "postgres_exporter": {"target": self.postgres_exporter.target},
            "redis_exporter": {"target": self.redis_exporter.target},
            "prometheus": {"url": self.prometheus.url, "pid": self.prometheus.pid},
            "timings": dict(self.timings),
        }

    def stop(self, timeout: float = 10.0) -> dict[str, StopOutcome]:
        return stop_all(self.state_file, timeout=timeout)


def stop_all(state_file: str | Path, *, timeout: float = 10.0) -> dict[str, StopOutcome]:
    """Stop every process the state file records (newest first); name -> outcome.

    Works for a half-started set and from another process (e.g. `somactl lab down`). A recorded
    pid that now belongs to another process ("not-ours") is left alone.
    """
    path = Path(state_file)
    if not path.exists():
        return {}
    return procs.stop_state(StateFile(path), timeout=timeout)


def _timed(timings: dict[str, float], key: str, fn: Callable[[], T]) -> T:
    mark = time.monotonic()
    try:
        return fn()
    finally:
        timings[key] = round(time.monotonic() - mark, 3)


def start_backends(
    directory: str | Path,
    *,
    extra_jobs: JobsSpec = (),
    scrape_interval: str = "2s",
    pg_max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pg_settings: Mapping[str, str | int] | None = None,
    redis_maxmemory: str = "64mb",
    redis_policy: str = "allkeys-lru",
    redis_requirepass: bool = False,
    timeout: float = 30.0,
) -> Backends:
    """Start Postgres, Redis, both exporters and Prometheus under `directory`.

    Each component gets its own subdirectory and log; all share `<directory>/state.json`.
    `timings` holds each component's start time in seconds and the wall-clock total.
    """
    began = time.monotonic()
    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE_FILE_NAME
    state = StateFile(state_path)
    if any(procs.record_alive(r) for r in state.records()):
        raise StartError(
            f"{state_path} records running processes: this lab is already up",
            hint="stop it first (stop_all / `somactl lab down`)",
        )
    timings: dict[str, float] = {}
    extra = tuple(normalise_jobs(extra_jobs))
    # Exporter ports are chosen now so Prometheus can start with its final configuration.
    pg_exporter_port = procs.free_port()
    redis_exporter_port = procs.free_port()

    def remaining() -> float:
        return max(1.0, timeout - (time.monotonic() - began))

    def started(key: str, start: Callable[..., T], *args: object, **kwargs: object) -> T:
        """`start` into its own subdirectory of the shared state, within the time left; timed."""
        return _timed(
            timings,
            key,
            lambda: start(
                root / key.replace("_", "-"), *args, state=state, timeout=remaining(), **kwargs
            ),
        )

    def postgres_chain() -> tuple[PostgresInstance, Exporter]:
        pg = started(
            "postgres", start_postgres, max_connections=pg_max_connections, settings=pg_settings
        )
        for key, value in pg.timings.items():
            timings[f"postgres.{key}"] = round(value, 3)
        return pg, started(
            "postgres_exporter",
            start_postgres_exporter,
            pg,
            port_source=_first_then_free(pg_exporter_port),
        )

    def redis_chain() -> tuple[RedisInstance, Exporter]:
        server = started(
            "redis",
            start_redis,
            maxmemory=redis_maxmemory,
            maxmemory_policy=redis_policy,
            requirepass=redis_requirepass,
        )
        return server, started(
            "redis_exporter",
            start_redis_exporter,
            server,
            port_source=_first_then_free(redis_exporter_port),
        )

    planned_jobs = [
        ScrapeJob(POSTGRES_JOB, (f"{procs.LOOPBACK}:{pg_exporter_port}",)),
        ScrapeJob(REDIS_JOB, (f"{procs.LOOPBACK}:{redis_exporter_port}",)),
        *extra,
    ]

    def prometheus_chain() -> PrometheusInstance:
        return started(
            "prometheus", start_prometheus, planned_jobs, scrape_interval=scrape_interval
        )

    try:
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="lab-start") as pool:
            pg_future = pool.submit(postgres_chain)
            redis_future = pool.submit(redis_chain)
            prom_future = pool.submit(prometheus_chain)
            futures: Sequence[Future[Any]] = (pg_future, redis_future, prom_future)
            errors = [f.exception() for f in futures]
    except BaseException:  # Ctrl-C while waiting: leave nothing running behind us
        stop_all(state_path)
        raise
    failures = [e for e in errors if e is not None]
    if failures:
        stop_all(state_path)
        first = failures[0]
        if isinstance(first, SomactlError):
            raise first
        raise StartError(f"lab start failed: {type(first).__name__}: {first}") from first

    pg, pg_exporter = pg_future.result()
    redis_server, redis_exporter = redis_future.result()
    prometheus = prom_future.result()
    backends = Backends(
        postgres=pg,
        redis=redis_server,
        postgres_exporter=pg_exporter,
        redis_exporter=redis_exporter,
        prometheus=prometheus,
        state_file=state_path,
        extra_jobs=extra,
        timings=timings,
    )
    if (pg_exporter.port, redis_exporter.port) != (pg_exporter_port, redis_exporter_port):
        try:
            prometheus.set_jobs(backends.scrape_jobs())  # an exporter had to move port
        except BaseException:
            stop_all(state_path)
            raise
    timings["total"] = round(time.monotonic() - began, 3)
    return backends


def _first_then_free(first: int) -> Callable[[], int]:
    """A port source that offers a pre-allocated port once, then fresh ones."""
    offered = False

    def source() -> int:
        nonlocal offered
        if not offered:
            offered = True
            return first
        return procs.free_port()

    return source
