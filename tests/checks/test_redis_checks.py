"""The Redis checks against a real redis-server (the integration suite's instance)."""

from __future__ import annotations

import socket
import time

import pytest

from somactl.checks.base import Status
from somactl.checks.redis import RedisSession, memory_check, ping_check
from somactl.clients.redis import RedisTarget
from somactl.core.deadline import Deadline
from somactl.core.errors import PermissionDeniedError
from somactl.lab.runtime import RedisInstance

SENTINEL = "s3ntinel-Redis-Pa55-4411"


def session(r: RedisInstance, password: str | None = None) -> RedisSession:
    t = RedisTarget(f"redis://oncall@{r.host}:{r.port}/0", password or r.user_passwords["oncall"])
    return RedisSession(t, Deadline(10))


def test_ping_and_memory_of_a_healthy_redis(redis_server: RedisInstance) -> None:
    s = session(redis_server)
    ping = ping_check(s)
    mem = memory_check(s)
    s.close()
    assert ping.status is Status.ok
    assert ping.signals == {"redis_up": True}
    assert ping.summary.startswith("PONG in ")
    assert f"from {redis_server.host}:{redis_server.port}" in ping.summary
    assert mem.evidence["maxmemory"] == 64 * 1024 * 1024
    assert mem.evidence["maxmemory_policy"] == "allkeys-lru"
    assert 0 < mem.signals["redis_memory_ratio"] < 0.8
    assert mem.status is Status.ok
    assert "raw" not in mem.evidence and "used_memory" in mem.raw["info.json"]


def test_memory_near_maxmemory_is_critical(redis_server: RedisInstance, redis_prefix: str) -> None:
    client = redis_server.client("oncall")
    used = int(client.info("memory")["used_memory"])
    try:
        # lower maxmemory to just above what is used: the same ratio as a filled cache
        client.config_set("maxmemory", str(int(used / 0.97)))
        client.config_set("maxmemory-policy", "noeviction")
        s = session(redis_server)
        mem = memory_check(s, warn_ratio=0.8, critical_ratio=0.95)
        s.close()
        assert mem.status is Status.critical
        assert mem.signals["redis_memory_ratio"] >= 0.95
        assert "policy noeviction" in mem.summary
        assert mem.facts["noeviction"] is True
    finally:
        client.config_set("maxmemory", "64mb")
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.close()


def test_a_wrong_password_is_denied_naming_redis(redis_server: RedisInstance) -> None:
    s = session(redis_server, SENTINEL)
    with pytest.raises(PermissionDeniedError) as err:
        ping_check(s)
    assert (
        err.value.message
        == f"redis ({redis_server.host}:{redis_server.port}): authentication failed"
    )
    assert SENTINEL not in err.value.message + err.value.hint


def test_a_refused_port_is_redis_down_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = RedisSession(RedisTarget(f"redis://127.0.0.1:{port}/0"), Deadline(10))
    t0 = time.monotonic()
    r = ping_check(s)
    # redis-py's default retries would take ~5 s against a refused port
    assert time.monotonic() - t0 < 1.0
    assert r.status is Status.critical
    assert r.signals == {"redis_up": False}


def test_no_answer_names_the_deadline_as_given() -> None:
    """A Redis that accepts and never answers: the wait is said as given (2.25s, not 2.2s)."""
    from somactl.core.errors import UnreachableError
    from tests.helpers.faultproxy import FaultProxy

    with FaultProxy(("127.0.0.1", 9), mode="blackhole") as hole:
        s = RedisSession(RedisTarget(f"redis://127.0.0.1:{hole.port}/0"), Deadline(2.25))
        with pytest.raises(UnreachableError) as caught:
            ping_check(s)
    assert caught.value.message.startswith("redis: no response within 2.25s ("), caught.value
