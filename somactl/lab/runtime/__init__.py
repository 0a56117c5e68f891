"""Launchers for the lab's REAL backing services: PostgreSQL, Redis, Prometheus and exporters.

Used by `somactl lab` and by the integration tests' fixtures, so the demo and the tests start
the very same things. Importing this package is cheap: backend libraries (psycopg, redis, httpx)
are imported inside the functions that use them.
"""

from __future__ import annotations

from somactl.lab.runtime.backends import Backends, start_backends, stop_all
from somactl.lab.runtime.exporters import Exporter, start_postgres_exporter, start_redis_exporter
from somactl.lab.runtime.postgres import PostgresInstance, start_postgres
from somactl.lab.runtime.procs import (
    MissingBinaryError,
    PortInUseError,
    ProcRecord,
    StartError,
    StateFile,
    free_port,
    which_or_hint,
)
from somactl.lab.runtime.prometheus import PrometheusInstance, ScrapeJob, start_prometheus
from somactl.lab.runtime.redis import RedisInstance, start_redis

__all__ = [
    "Backends",
    "Exporter",
    "MissingBinaryError",
    "PortInUseError",
    "PostgresInstance",
    "ProcRecord",
    "PrometheusInstance",
    "RedisInstance",
    "ScrapeJob",
    "StartError",
    "StateFile",
    "free_port",
    "start_backends",
    "start_postgres",
    "start_postgres_exporter",
    "start_prometheus",
    "start_redis",
    "start_redis_exporter",
    "stop_all",
    "which_or_hint",
]
