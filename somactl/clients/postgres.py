"""Postgres through psycopg 3: bounded connect, statement timeout, errors that name the backend.

The DSN never carries the password (config refuses that); the password comes from the
settings' secret and is passed as a keyword, so it never appears in any conninfo we print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from somactl.core.deadline import Deadline
from somactl.core.errors import (
    ActionFailedError,
    ConfigError,
    PermissionDeniedError,
    SomactlError,
    UnreachableError,
)
from somactl.core.netfail import network_problem
from somactl.core.redact import redact

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT = 5


class TooManyConnectionsError(UnreachableError):
    """The server answered but refused a new session: every connection slot is taken."""


@dataclass(frozen=True)
class PgTarget:
    dsn: str
    password: str | None = None
    application_name: str = "somactl"

    def describe(self) -> str:
        """`user@host:port/db` for messages: never the password."""
        d = _simple_conninfo(self.dsn)
        if d is None:
            from psycopg.conninfo import conninfo_to_dict

            try:
                d = conninfo_to_dict(self.dsn)
            except Exception:  # noqa: BLE001 - any parse problem: describe nothing, never leak
                return "postgres"
        user = d.get("user") or "?"
        host = d.get("host") or "localhost"
        port = d.get("port") or "5432"
        db = d.get("dbname") or user
        return f"{user}@{host}:{port}/{db}"


def _simple_conninfo(dsn: str) -> dict[str, Any] | None:
    """`key=value ...` without quoting, or a postgresql:// URI, parsed without importing psycopg
    (60 ms that a diagnosis would spend before its checks start); None for anything else."""
    from urllib.parse import unquote, urlsplit

    if dsn.startswith(("postgresql://", "postgres://")):
        try:
            parts = urlsplit(dsn)
            port = parts.port
        except ValueError:
            return None
        if "," in (parts.netloc or ""):
            return None  # several hosts: psycopg's parser knows
        return {
            "user": unquote(parts.username) if parts.username else None,
            "host": parts.hostname,
            "port": str(port) if port else None,
            "dbname": unquote(parts.path.lstrip("/")) or None,
        }
    if "'" in dsn or "\\" in dsn:
        return None
    out: dict[str, Any] = {}
    for word in dsn.split():
        key, sep, value = word.partition("=")
        if not sep or not key:
            return None
        out[key.strip()] = value.strip()
    return out


def translate(exc: BaseException, target: PgTarget, timeout: float) -> SomactlError:
    """A psycopg error as a somactl error (exit 6 unreachable, 7 permission, 1 otherwise).

    `timeout` is named in the message as given (`--timeout 2.5s` says 2.5s, not 2s or 3s)."""
    import psycopg

    text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    where = target.describe()
    low = text.lower()
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PermissionDeniedError(f"postgres ({where}): {text}")
    if isinstance(exc, psycopg.OperationalError):
        if any(
            s in low
            for s in (
                "too many clients",
                "too many connections for role",
                "too many connections for database",
                "remaining connection slots are reserved",
            )
        ):
            return TooManyConnectionsError(
                f"postgres ({where}): no connection slot left: {text}",
                "the pool is exhausted: see `somactl db pool`; end idle sessions with "
                "`somactl mitigate kill-queries`",
            )
        if any(
            s in low
            for s in (
                "password authentication failed",
                "no pg_hba.conf entry",
                "role",
                "permission denied",
                "no password supplied",
            )
        ):
            return PermissionDeniedError(
                f"postgres ({where}): authentication failed: {text}",
                "check the user and the password's source in `somactl config show`",
            )
        if "database" in low and "does not exist" in low:
            return ConfigError(f"postgres ({where}): {text}")
        return UnreachableError(
            f"postgres: {network_problem(exc, f'{timeout:g}s')} ({where}): {text}",
            "is the database up and reachable? check postgres.dsn in `somactl config show`",
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return UnreachableError(f"postgres ({where}): query cancelled after {timeout:g}s: {text}")
    return ActionFailedError(f"postgres ({where}): {text}")


def connect(target: PgTarget, deadline: Deadline) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection with dict rows; statement_timeout bounded by the deadline."""
    import psycopg
    from psycopg.rows import dict_row

    timeout = deadline.timeout(CONNECT_TIMEOUT)
    stmt_ms = max(100, int(deadline.remaining() * 1000))
    kwargs: dict[str, Any] = {
        "connect_timeout": max(1, int(timeout + 0.999)),
        "application_name": target.application_name,
        "options": f"-c statement_timeout={stmt_ms} -c lock_timeout={min(stmt_ms, 5000)}",
        "autocommit": True,
        "row_factory": dict_row,
    }
    if target.password:
        kwargs["password"] = target.password
    try:
        conn: psycopg.Connection[dict[str, Any]] = psycopg.connect(target.dsn, **kwargs)
    except (psycopg.Error, OSError) as exc:
        # the wait as the user gave it (or the connect cap), not what was left of it when the
        # connect started (2.49 for --timeout 2.5s, which psycopg rounds up to whole seconds)
        raise translate(exc, target, min(deadline.seconds, CONNECT_TIMEOUT)) from None
    return conn


def fetch(
    conn: psycopg.Connection[dict[str, Any]],
    sql: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
    *,
    target: PgTarget,
    deadline: Deadline,
) -> list[dict[str, Any]]:
    import psycopg

    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    except psycopg.Error as exc:
        raise translate(exc, target, deadline.seconds) from None
