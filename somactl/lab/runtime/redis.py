"""A real, throw-away redis-server for the lab and the tests.

Loopback only, a free port, no persistence (`save ""`, `appendonly no`), a small `maxmemory`
with a configurable eviction policy (the memory-pressure scenario uses `noeviction`), and
optionally `requirepass` plus ACL users:

* `oncall`             every command (what a full on-call role has);
* `oncall-restricted`  every command except `@dangerous` (FLUSHALL -> NOPERM), but INFO, which
                       diagnosis needs.

Secrets go into a 0600 redis.conf, never argv (argv is world-readable in /proc).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from somactl.core.redact import register_secret
from somactl.lab.runtime import procs
from somactl.lab.runtime.launch import Launch, RunningService
from somactl.lab.runtime.procs import LOOPBACK, ProcRecord, StateFile

ONCALL_USER = "oncall"
RESTRICTED_USER = "oncall-restricted"
DEFAULT_ACL_RULES: Mapping[str, str] = {
    ONCALL_USER: "~* &* +@all",
    RESTRICTED_USER: "~* &* +@all -@dangerous +info",
}


@dataclass(frozen=True)
class RedisInstance(RunningService):
    """A running redis-server. URLs may carry passwords: repr never shows them."""

    host: str
    port: int
    pid: int
    instance_dir: Path
    record: ProcRecord = field(repr=False)
    state: StateFile = field(repr=False)
    password: str | None = field(repr=False, default=None)
    user_passwords: Mapping[str, str] = field(repr=False, default_factory=dict)
    maxmemory: str = "64mb"
    maxmemory_policy: str = "allkeys-lru"
    timings: Mapping[str, float] = field(default_factory=dict)

    def url(self, user: str | None = None, db: int = 0) -> str:
        """redis:// URL for the default user (with requirepass if set) or an ACL user."""
        if user is not None:
            return f"redis://{user}:{self.user_passwords[user]}@{self.host}:{self.port}/{db}"
        if self.password:
            return f"redis://:{self.password}@{self.host}:{self.port}/{db}"
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def password_file(self, user: str | None = None) -> Path:
        return self.instance_dir / "secrets" / f"redis-{user or 'default'}.password"

    def client(self, user: str | None = None, **kwargs: Any) -> Any:
        """A redis-py client with short timeouts and no retries (returns redis.Redis)."""
        return _client(
            self.port,
            username=user,
            password=self.user_passwords[user] if user is not None else self.password,
            **kwargs,
        )


def _client(
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 2.0,
    **kwargs: Any,
) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=LOOPBACK,
        port=port,
        username=username,
        password=password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        # redis-py 6 retries three times by default: a refused port would cost seconds.
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **kwargs,
    )


def start_redis(
    directory: str | Path,
    *,
    state: StateFile | None = None,
    maxmemory: str = "64mb",
    maxmemory_policy: str = "allkeys-lru",
    requirepass: bool = False,
    acl_users: Mapping[str, str] | None = DEFAULT_ACL_RULES,
    extra_config: Mapping[str, str] | None = None,
    binary: str = "redis-server",
    port: int | None = None,
    port_source: Callable[[], int] = procs.free_port,
    timeout: float = 15.0,
    name: str = "redis",
) -> RedisInstance:
    """Start redis-server on a free loopback port; `acl_users=None` creates no ACL users."""
    run = Launch.prepare(directory, state, timeout=timeout, port=port, port_source=port_source)
    instance_dir = run.directory
    redis_server = procs.which_or_hint(binary, "redis-server")

    password = secrets.token_urlsafe(24) if requirepass else None
    user_passwords = {user: secrets.token_urlsafe(24) for user in (acl_users or {})}
    for user, secret in [(None, password), *user_passwords.items()]:
        if secret is None:
            continue
        register_secret(secret)
        procs.write_private(
            instance_dir / "secrets" / f"redis-{user or 'default'}.password", secret + "\n"
        )

    lines = [
        "# somactl lab (generated)",
        f"bind {LOOPBACK}",
        "protected-mode yes",
        'save ""',
        "appendonly no",
        f"maxmemory {maxmemory}",
        f"maxmemory-policy {maxmemory_policy}",
        f"dir {instance_dir}",
        "daemonize no",
        'logfile ""',
        "databases 16",
    ]
    if password is not None:
        lines.append(f"requirepass {password}")
    for user, rules in (acl_users or {}).items():
        lines.append(f"user {user} on >{user_passwords[user]} {rules}")
    for key, value in (extra_config or {}).items():
        lines.append(f"{key} {value}")
    conf = instance_dir / "redis.conf"
    procs.write_private(conf, "\n".join(lines) + "\n")

    def probe(record: ProcRecord, candidate: int) -> bool:
        client = _client(candidate, password=password, timeout=1.0)
        try:
            info = client.info("server")
        finally:
            client.close()
        # The process id proves this is our server, not a stranger that got the port.
        return int(info.get("process_id", -1)) == record.pid

    record = run.start(
        name,
        lambda candidate: [redis_server, str(conf), "--port", str(candidate)],
        probe,
        what="redis-server",
        port_key="redis",
        meta={"kind": "redis"},
    )
    return RedisInstance(
        host=LOOPBACK,
        port=record.ports["redis"],
        pid=record.pid,
        instance_dir=instance_dir,
        record=record,
        state=run.state,
        password=password,
        user_passwords=user_passwords,
        maxmemory=maxmemory,
        maxmemory_policy=maxmemory_policy,
        timings={"total": run.elapsed()},
    )
