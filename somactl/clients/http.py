"""A small HTTP client over httpx for somactl's API clients (notifiers, tool adapters, GitHub).

What httpx does not give an incident tool, and this module adds:

- One **outer deadline** per call (or per command): httpx timeouts are per network read, so a
  server that drips one byte every 200 ms defeats a 1 s read timeout. Every socket operation here
  is capped at what is left of the deadline (a network backend under httpx's transport), so a
  call can never outlive its budget.
- **Bounded, jittered retries** on 429, 5xx and network errors, honouring `Retry-After`, only for
  calls the caller declares safe to repeat (`idempotent=True`: a GET, a PUT/PATCH, or a POST with
  a dedup key). A POST that is not safe to repeat is sent exactly once.
- **Errors without secrets**: failures become somactl errors naming the service and
  `scheme://host:port` only (never the path, the query or credentials: a Slack webhook's path *is*
  the secret). Exception chains are cut so `--debug` tracebacks cannot show httpx's messages, and
  httpx's INFO log line (which prints the full URL) is silenced.

Proxies from the environment are not honoured (trust_env=False): every address is explicit.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from somactl.core.deadline import Deadline
from somactl.core.errors import (
    ActionFailedError,
    PermissionDeniedError,
    SomactlError,
    UnreachableError,
)
from somactl.core.redact import redact, register_secret

USER_AGENT = "somactl"
MAX_BODY = 1024 * 1024  # responses are small API answers; more is cut off


class _DeadlineExceeded(Exception):
    pass


def _cap(deadline: Deadline, timeout: float | None) -> float:
    """`timeout` limited by what is left of `deadline` (raises when nothing is left)."""
    left = deadline.remaining()
    if left <= 0.0:
        raise _DeadlineExceeded
    return left if timeout is None else min(timeout, left)


@dataclass(frozen=True)
class Timeouts:
    """Per-operation limits; the Deadline caps each of them further."""

    connect: float = 3.0
    read: float = 10.0
    write: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a call that is safe to repeat."""

    attempts: int = 3  # total attempts, the first included
    backoff: float = 0.5  # base of the exponential backoff (full jitter)
    max_backoff: float = 8.0
    max_retry_after: float = 120.0  # a longer Retry-After is reported, not waited for
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})


NO_RETRY = RetryPolicy(attempts=1)


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    attempts: int
    elapsed: float
    retry_after: float | None = None  # of the last response, when it carried one
    statuses: list[int] = field(default_factory=list)  # every attempt's status, in order

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpUnreachableError(UnreachableError):
    """No (complete) answer within the deadline, after `attempts` tries.

    `maybe_delivered` is True when a request may have reached the server (a read failed after
    the request was written): for a call that is not idempotent, its effect is unknown.
    """

    def __init__(
        self, message: str, hint: str | None = None, *, attempts: int, maybe_delivered: bool
    ) -> None:
        super().__init__(message, hint)
        self.attempts = attempts
        self.maybe_delivered = maybe_delivered


def safe_target(url: str) -> str:
    """`scheme://host:port` of `url`: what error messages may show of an address."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(secs):
        return None
    return max(0.0, secs)


# --- the deadline-capped network backend under httpx -------------------------------------------


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def _cap(self, timeout: float | None, exc: type[Exception]) -> float:
        try:
            return _cap(self._deadline, timeout)
        except _DeadlineExceeded:
            raise exc("deadline exceeded") from None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._cap(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            capped = _cap(self._deadline, timeout)
        except _DeadlineExceeded:
            raise httpcore.ConnectTimeout("deadline exceeded") from None
        stream = self._inner.connect_tcp(host, port, capped, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            capped = _cap(self._deadline, timeout)
        except _DeadlineExceeded:
            raise httpcore.ConnectTimeout("deadline exceeded") from None
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, capped, socket_options), self._deadline
        )

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self._deadline.remaining()))


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport (its request/response mapping and error translation), with the pool
    rebuilt on the deadline-capped backend. httpx has no public hook for a network backend;
    tests/incident/test_http.py proves the cap still holds (slow-drip server) after upgrades."""

    def __init__(self, deadline: Deadline, *, verify: bool = True) -> None:
        super().__init__(verify=verify, trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=4,
            max_keepalive_connections=2,
            network_backend=_DeadlineBackend(deadline),
        )


# --- the call ----------------------------------------------------------------------------------


def _quiet_library_logs() -> None:
    # httpx logs "HTTP Request: POST <full url>" at INFO: the URL may be the secret.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _network_problem(exc: Exception, deadline: Deadline) -> tuple[str, bool]:
    """A short description of a transport failure and whether the request may have arrived."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out", False
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused", False
        if "reset" in text:  # accepted, then reset before the request went out
            return "connection reset while connecting", False
        if "name or service" in text or "nodename" in text or "resolution" in text:
            return "host name not resolved", False
        return "cannot connect", False
    if isinstance(exc, httpx.WriteTimeout):
        return "sending the request timed out", True
    if isinstance(exc, httpx.TimeoutException):
        if deadline.expired():
            return f"no response within {deadline.seconds:g}s", True
        return "read timed out", True
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed without a complete response", True
    if isinstance(exc, httpx.ReadError):
        return "connection reset while reading the response", True
    return f"network error ({type(exc).__name__})", True


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    ceiling = min(policy.max_backoff, policy.backoff * (2 ** (attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 -- jitter, not cryptography


def request(
    method: str,
    url: str,
    *,
    service: str,
    deadline: Deadline,
    idempotent: bool,
    json: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts = Timeouts(),
    retry: RetryPolicy = RetryPolicy(),
    secret_url: bool = False,
    verify: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> HttpResponse:
    """Send one HTTP request within `deadline`, retrying only when `idempotent`.

    Returns the final response whatever its status (the caller maps statuses to meaning; see
    `status_error`). Raises HttpUnreachableError when no complete response arrived in time.
    `secret_url=True` registers the URL's path for redaction (webhooks whose path is the secret).
    Messages name `service` and `safe_target(url)` only.
    """
    if secret_url:
        register_secret(url)
        path = urlsplit(url).path
        if len(path) >= 8:
            register_secret(path)
    _quiet_library_logs()
    target = safe_target(url)
    policy = retry if idempotent else NO_RETRY
    hdrs = {"user-agent": USER_AGENT, **(headers or {})}
    statuses: list[int] = []
    started = time.monotonic()
    attempt = 0
    last_problem = ""
    maybe_delivered = False
    with httpx.Client(
        transport=_DeadlineTransport(deadline, verify=verify), trust_env=False
    ) as client:
        while True:
            attempt += 1
            if deadline.expired():
                break
            left = deadline.remaining()
            tmo = httpx.Timeout(
                connect=min(timeouts.connect, left),
                read=min(timeouts.read, left),
                write=min(timeouts.write, left),
                pool=min(timeouts.connect, left),
            )
            try:
                req = client.build_request(
                    method, url, json=json, content=content, headers=hdrs, timeout=tmo
                )
                resp = client.send(req, stream=True)
                try:
                    body = bytearray()
                    for chunk in resp.iter_raw():
                        body += chunk
                        if len(body) > MAX_BODY:
                            break
                finally:
                    resp.close()
            except (TimeoutError, httpx.TransportError, httpcore.NetworkError, OSError) as exc:
                problem, delivered = _network_problem(exc, deadline)
                last_problem = problem
                maybe_delivered = maybe_delivered or delivered
                statuses.append(0)
                if attempt >= policy.attempts or deadline.expired():
                    break
                wait = _backoff(policy, attempt)
                if wait >= deadline.remaining():
                    break
                sleep(wait)
                continue
            except httpx.InvalidURL:
                raise ActionFailedError(
                    f"{service}: invalid URL ({target})",
                    "check the address in `somactl config show`",
                ) from None
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
            statuses.append(resp.status_code)
            result = HttpResponse(
                status=resp.status_code,
                headers={k.lower(): v for k, v in resp.headers.items()},
                body=bytes(body[:MAX_BODY]),
                attempts=attempt,
                elapsed=time.monotonic() - started,
                retry_after=retry_after,
                statuses=statuses,
            )
            if resp.status_code not in policy.statuses or attempt >= policy.attempts:
                return result
            if retry_after is not None:
                if retry_after > policy.max_retry_after:
                    return result
                wait = retry_after + random.uniform(0, min(1.0, retry_after * 0.1))  # noqa: S311
            else:
                wait = _backoff(policy, attempt)
            if wait >= deadline.remaining():
                return result
            sleep(wait)
    where = f"{service}: {last_problem or f'no response within {deadline.seconds:g}s'} ({target})"
    if attempt > 1 or len(statuses) > 1:
        where += f" after {len(statuses)} attempt{'s' if len(statuses) != 1 else ''}"
    raise HttpUnreachableError(
        redact(where),
        f"is {target} reachable from here? the deadline was {deadline.seconds:g}s (--timeout)",
        attempts=len(statuses),
        maybe_delivered=maybe_delivered,
    )


def status_error(resp: HttpResponse, *, service: str, detail: str = "") -> SomactlError:
    """A somactl error for a non-2xx response (exit 7 for 401/403, 6 for 429/5xx, else 1)."""
    attempts = f" after {resp.attempts} attempts" if resp.attempts > 1 else ""
    retry = f" (last Retry-After {resp.retry_after:g}s)" if resp.retry_after is not None else ""
    msg = redact(
        f"{service}: HTTP {resp.status}{attempts}{retry}" + (f": {detail}" if detail else "")
    )
    if resp.status in (401, 403):
        return PermissionDeniedError(msg, f"check the {service} credentials")
    if resp.status == 429 or resp.status >= 500:
        return UnreachableError(msg, f"{service} is rate limiting or failing; try again shortly")
    return ActionFailedError(msg, f"{service} rejected the request")
