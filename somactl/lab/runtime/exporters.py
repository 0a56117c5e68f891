"""prometheus-postgres-exporter and prometheus-redis-exporter (Debian 12 packages).

Flags checked against the installed binaries' --help: postgres_exporter 0.11.1 (kingpin:
`--web.listen-address=HOST:PORT`, DSN from the DATA_SOURCE_NAME environment variable) and
redis_exporter 1.45 (Go flag: `-redis.addr`, `-web.listen-address`, credentials from the
REDIS_USER / REDIS_PASSWORD environment variables). Credentials travel in the environment, never
argv. The runbook's metric names come from them: `pg_stat_activity_count{datname,state}`,
`redis_memory_used_bytes`, `redis_memory_max_bytes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from somactl.lab.runtime import procs
from somactl.lab.runtime.launch import Launch, RunningService, owned_http_status
from somactl.lab.runtime.postgres import PostgresInstance
from somactl.lab.runtime.procs import LOOPBACK, ProcRecord, StateFile
from somactl.lab.runtime.redis import RedisInstance

POSTGRES_EXPORTER = "prometheus-postgres-exporter"
REDIS_EXPORTER = "prometheus-redis-exporter"
POSTGRES_METRICS = ("pg_up", "pg_stat_activity_count", "pg_settings_max_connections")
REDIS_METRICS = ("redis_up", "redis_memory_used_bytes", "redis_memory_max_bytes")

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s", re.MULTILINE)


@dataclass(frozen=True)
class Exporter(RunningService):
    name: str
    host: str
    port: int
    pid: int
    record: ProcRecord = field(repr=False)
    state: StateFile = field(repr=False)
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def metrics_text(self, timeout: float = 5.0) -> str:
        status, body = procs.http_get(self.metrics_url, timeout=timeout)
        if status != 200:
            raise procs.StartError(f"{self.name}: /metrics answered HTTP {status}")
        return body

    def metric_names(self, timeout: float = 5.0) -> set[str]:
        return set(_METRIC_LINE.findall(self.metrics_text(timeout)))


def _answers_http(record: ProcRecord, port: int) -> bool:
    status = owned_http_status(record, port, "/")
    return status is not None and status < 500


def _start_exporter(
    run: Launch,
    name: str,
    build_argv: Callable[[int], list[str]],
    *,
    env: Mapping[str, str],
    kind: str,
) -> Exporter:
    record = run.start(
        name,
        build_argv,
        _answers_http,
        what=name,
        port_key="metrics",
        meta={"kind": kind},
        env=env,
    )
    return Exporter(
        name=name,
        host=LOOPBACK,
        port=record.ports["metrics"],
        pid=record.pid,
        record=record,
        state=run.state,
        timings={"total": run.elapsed()},
    )


def start_postgres_exporter(
    directory: str | Path,
    pg: PostgresInstance,
    *,
    state: StateFile | None = None,
    binary: str = f"/usr/bin/{POSTGRES_EXPORTER}",
    port: int | None = None,
    port_source: Callable[[], int] = procs.free_port,
    timeout: float = 15.0,
    name: str = "postgres-exporter",
) -> Exporter:
    """Scrape `pg` as its monitoring role (pg_monitor)."""
    exe = procs.which_or_hint(
        binary if Path(binary).exists() else POSTGRES_EXPORTER, POSTGRES_EXPORTER
    )
    # lib/pq defaults to sslmode=require; the lab's server has no TLS.
    dsn = pg.dsn(pg.monitor_user) + "?sslmode=disable"
    return _start_exporter(
        Launch.prepare(directory, state, timeout=timeout, port=port, port_source=port_source),
        name,
        lambda p: [exe, f"--web.listen-address={LOOPBACK}:{p}", "--log.level=warn"],
        env={"DATA_SOURCE_NAME": dsn},
        kind="postgres-exporter",
    )


def start_redis_exporter(
    directory: str | Path,
    redis: RedisInstance,
    *,
    state: StateFile | None = None,
    binary: str = f"/usr/bin/{REDIS_EXPORTER}",
    port: int | None = None,
    port_source: Callable[[], int] = procs.free_port,
    timeout: float = 15.0,
    name: str = "redis-exporter",
) -> Exporter:
    """Scrape `redis` as its default user (with requirepass, if the instance has one)."""
    exe = procs.which_or_hint(binary if Path(binary).exists() else REDIS_EXPORTER, REDIS_EXPORTER)
    # Set both explicitly so a REDIS_* variable inherited from our environment cannot leak in.
    env = {"REDIS_PASSWORD": redis.password or "", "REDIS_USER": ""}
    return _start_exporter(
        Launch.prepare(directory, state, timeout=timeout, port=port, port_source=port_source),
        name,
        lambda p: [
            exe,
            f"-redis.addr=redis://{redis.host}:{redis.port}",
            f"-web.listen-address={LOOPBACK}:{p}",
        ],
        env=env,
        kind="redis-exporter",
    )
