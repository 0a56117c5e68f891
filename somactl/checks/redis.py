"""Redis checks: PING latency, memory used against maxmemory, evictions and rejected writes,
connected clients. One client per run (`RedisSession`), INFO read once."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from somactl.checks.base import CheckResult, Status
from somactl.checks.shared import Memo
from somactl.core.deadline import Deadline

if TYPE_CHECKING:
    from somactl.clients.redis import RedisTarget

SLOW_PING = 0.5


def mib(n: Any) -> str:
    try:
        return f"{int(n) / 1024 / 1024:.1f} MiB"
    except (TypeError, ValueError):
        return "?"


@dataclass
class RedisSession:
    target: RedisTarget
    deadline: Deadline
    _memo: Memo = field(default_factory=Memo)

    def _call(self, what: str, fn: Any) -> Any:
        from somactl.clients.redis import translate

        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - translated into a somactl error, never swallowed
            raise translate(exc, self.target, self.deadline.seconds) from None

    def client(self) -> Any:  # a redis.Redis (only clients name backend libraries)
        from somactl.clients.redis import connect

        return self._memo.get("client", lambda: connect(self.target, self.deadline))

    def ping(self) -> float:
        """Seconds for one PING (the first one includes connecting and AUTH)."""

        def run() -> float:
            client = self.client()
            t0 = time.monotonic()
            self._call("ping", client.ping)
            return time.monotonic() - t0

        return self._memo.get("ping", run)

    def info(self) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            self.ping()
            client = self.client()
            info: dict[str, Any] = self._call("info", lambda: client.info("all"))
            return info

        return self._memo.get("info", run)

    def close(self) -> None:
        client = self._memo.peek("client")
        if client is not None:
            with contextlib.suppress(Exception):  # best effort at the end of a run
                client.close()


def ping_check(session: RedisSession, *, check_id: str = "redis.ping") -> CheckResult:
    from somactl.core.errors import UnreachableError

    title = "Redis connectivity (PING)"
    where = session.target.describe()
    try:
        latency = session.ping()
    except UnreachableError as exc:
        if "refused" not in exc.message.lower():
            raise
        return CheckResult(
            check_id,
            title,
            "redis",
            Status.critical,
            f"connection refused by {where}: Redis is down or not listening",
            evidence={"target": where, "error": exc.message},
            signals={"redis_up": False},
            facts={"redis_down": True},
        )
    info = session.info()
    status = Status.warn if latency > SLOW_PING else Status.ok
    summary = (
        f"PONG in {latency * 1000:.1f} ms from {where} (Redis {info.get('redis_version', '?')}, "
        f"{info.get('role', '?')}, {info.get('connected_clients', '?')} clients)"
    )
    return CheckResult(
        check_id,
        title,
        "redis",
        status,
        summary,
        evidence={
            "target": where,
            "latency_ms": round(latency * 1000, 2),
            "version": info.get("redis_version"),
            "role": info.get("role"),
            "connected_clients": info.get("connected_clients"),
            "blocked_clients": info.get("blocked_clients"),
            "maxclients": info.get("maxclients"),
            "uptime_seconds": info.get("uptime_in_seconds"),
        },
        signals={"redis_up": True},
    )


def memory_check(
    session: RedisSession,
    *,
    warn_ratio: float = 0.8,
    critical_ratio: float = 0.95,
    check_id: str = "redis.memory",
) -> CheckResult:
    title = "Redis memory (used against maxmemory)"
    info = session.info()
    used = int(info.get("used_memory") or 0)
    maxmem = int(info.get("maxmemory") or 0)
    policy = str(info.get("maxmemory_policy") or "?")
    evicted = int(info.get("evicted_keys") or 0)
    oom_errors = (
        int((info.get("errorstat_OOM") or {}).get("count", 0))
        if isinstance(info.get("errorstat_OOM"), dict)
        else 0
    )
    clients = info.get("connected_clients")
    keys = sum(
        int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
    )
    signals: dict[str, Any] = {}
    if maxmem > 0:
        ratio = used / maxmem
        signals["redis_memory_ratio"] = round(min(1.0, ratio), 4)
        if ratio >= critical_ratio:
            status = Status.critical
        elif ratio >= warn_ratio:
            status = Status.warn
        else:
            status = Status.ok
        summary = f"{mib(used)} of {mib(maxmem)} maxmemory ({ratio:.0%}), policy {policy}"
    else:
        ratio = None
        status = Status.ok
        summary = f"{mib(used)} used, no maxmemory set (unbounded), policy {policy}"
    if oom_errors:
        status = Status.critical if ratio is not None and ratio >= warn_ratio else status
        summary += f"; {oom_errors} writes rejected with OOM"
    if evicted:
        summary += f"; {evicted} keys evicted since start"
    summary += f"; {keys} keys, {clients} clients"
    return CheckResult(
        check_id,
        title,
        "redis",
        status,
        summary,
        evidence={
            "used_memory": used,
            "used_memory_human": info.get("used_memory_human"),
            "maxmemory": maxmem,
            "ratio": None if ratio is None else round(ratio, 4),
            "maxmemory_policy": policy,
            "mem_fragmentation_ratio": info.get("mem_fragmentation_ratio"),
            "evicted_keys": evicted,
            "rejected_writes_oom": oom_errors,
            "keys": keys,
            "connected_clients": clients,
        },
        signals=signals,
        facts={"redis_memory_ratio": ratio, "noeviction": policy == "noeviction"},
        raw={"info.json": info},
    )
