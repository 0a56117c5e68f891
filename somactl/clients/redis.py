"""Redis through redis-py: bounded connect and reads, retries off, errors that name the backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from somactl.core.deadline import Deadline
from somactl.core.errors import (
    ActionFailedError,
    PermissionDeniedError,
    SomactlError,
    UnreachableError,
)
from somactl.core.netfail import network_problem
from somactl.core.redact import redact

if TYPE_CHECKING:
    import redis

CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class RedisTarget:
    url: str
    password: str | None = None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def translate(exc: BaseException, target: RedisTarget, timeout: float) -> SomactlError:
    import redis

    text = redact(str(exc))
    where = target.describe()
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return PermissionDeniedError(
            # redis-py drops the server's NOPERM prefix; keep it, it is what people search for
            f"redis ({where}): {text if text.startswith('NOPERM') else 'NOPERM ' + text}",
            "the ACL user needs the command's category (e.g. @dangerous)",
        )
    if isinstance(exc, redis.exceptions.AuthenticationError) or any(
        s in text for s in ("NOAUTH", "WRONGPASS", "invalid password")
    ):
        return PermissionDeniedError(
            f"redis ({where}): authentication failed",
            "check redis.password's source in `somactl config show`",
        )
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        return UnreachableError(
            f"redis: {network_problem(exc, f'{timeout:g}s')} ({where}): {text}",
            "is Redis up and reachable? check redis.url in `somactl config show`",
        )
    return ActionFailedError(f"redis ({where}): {text}")


def connect(target: RedisTarget, deadline: Deadline) -> redis.Redis:
    """A client whose every command is bounded by the deadline; no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = deadline.timeout(CONNECT_TIMEOUT)
    client: redis.Redis = redis.Redis.from_url(
        target.url,
        password=target.password,
        socket_connect_timeout=timeout,
        socket_timeout=deadline.timeout(),
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        decode_responses=True,
        health_check_interval=0,
        client_name="somactl",
    )
    return client


def call(client: redis.Redis, target: RedisTarget, deadline: Deadline, *args: object) -> object:
    """One command, its errors translated (NOPERM -> exit 7, no answer -> exit 6)."""
    import redis as redis_lib

    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    except (redis_lib.exceptions.RedisError, OSError) as exc:
        raise translate(exc, target, deadline.seconds) from None
