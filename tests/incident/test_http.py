"""somactl.clients.http against real loopback servers: deadline, retries, redaction."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from somactl.clients import http
from somactl.core.deadline import Deadline
from somactl.core.errors import (
    ActionFailedError,
    PermissionDeniedError,
    UnreachableError,
)
from tests.incident.receivers import Receiver, Reply

SECRET_PATH = "/services/T0HTTP/B0HTTP/httpS3cretPathSENTINEL"


@pytest.fixture
def server() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def no_sleep_budget() -> Deadline:
    return Deadline(10.0)


def test_429_with_retry_after_is_retried_once_for_idempotent_calls(server: Receiver) -> None:
    server.queue(Reply(429, "slow down", {"Retry-After": "1"}))
    t0 = time.monotonic()
    resp = http.request(
        "POST", server.url + "/x", service="svc", deadline=Deadline(10), idempotent=True, json={}
    )
    elapsed = time.monotonic() - t0
    assert resp.status == 200
    assert resp.attempts == 2
    assert resp.statuses == [429, 200]
    assert server.count == 2
    assert 1.0 <= elapsed < 5.0  # Retry-After honoured, not a tight loop


def test_non_idempotent_calls_are_sent_exactly_once(server: Receiver) -> None:
    server.queue(Reply(503, "busy", {"Retry-After": "0"}))
    resp = http.request(
        "POST", server.url + "/x", service="svc", deadline=Deadline(10), idempotent=False, json={}
    )
    assert resp.status == 503
    assert server.count == 1


def test_400_is_never_retried(server: Receiver) -> None:
    server.queue(Reply(400, {"errors": ["bad"]}))
    resp = http.request(
        "POST", server.url + "/x", service="svc", deadline=Deadline(10), idempotent=True, json={}
    )
    assert resp.status == 400 and resp.attempts == 1
    assert server.count == 1


def test_retry_after_beyond_the_deadline_is_reported_not_waited_for(server: Receiver) -> None:
    server.queue(Reply(429, "", {"Retry-After": "30"}))
    t0 = time.monotonic()
    resp = http.request(
        "GET", server.url + "/x", service="svc", deadline=Deadline(3), idempotent=True
    )
    assert time.monotonic() - t0 < 2.0
    assert resp.status == 429 and resp.retry_after == 30
    assert server.count == 1
    err = http.status_error(resp, service="svc")
    assert isinstance(err, UnreachableError)
    assert "Retry-After 30s" in err.message


def test_bounded_attempts_with_backoff_on_5xx(server: Receiver) -> None:
    server.queue(*[Reply(503, "x") for _ in range(10)])
    resp = http.request(
        "GET",
        server.url + "/x",
        service="adapter",
        deadline=Deadline(10),
        idempotent=True,
        retry=http.RetryPolicy(attempts=3, backoff=0.05, max_backoff=0.1),
    )
    assert resp.status == 503 and resp.attempts == 3
    assert server.count == 3
    assert "after 3 attempts" in http.status_error(resp, service="adapter").message


def test_slow_drip_is_stopped_by_the_outer_deadline(server: Receiver) -> None:
    # one byte every 200 ms: a 1 s read timeout never fires; only the deadline stops it
    server.queue(Reply(200, "x" * 200, drip=0.2))
    t0 = time.monotonic()
    with pytest.raises(http.HttpUnreachableError) as info:
        http.request(
            "GET",
            server.url + "/drip",
            service="drip",
            deadline=Deadline(1.5),
            idempotent=True,
            timeouts=http.Timeouts(connect=1, read=1, write=1),
        )
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5 + 1.0, elapsed
    assert "no response within 1.5s" in info.value.message


def test_lost_answer_is_retried_only_when_idempotent(server: Receiver) -> None:
    server.queue(Reply(0))
    resp = http.request(
        "PATCH", server.url + "/x", service="svc", deadline=Deadline(10), idempotent=True, json={}
    )
    assert resp.status == 200 and server.count == 2

    server.queue(Reply(0))
    with pytest.raises(http.HttpUnreachableError) as info:
        http.request(
            "POST", server.url + "/y", service="svc", deadline=Deadline(10), idempotent=False
        )
    assert info.value.maybe_delivered is True
    assert server.count == 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_unreachable_fast_and_names_no_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = _closed_port()
    url = f"http://127.0.0.1:{port}{SECRET_PATH}?token=abc"
    t0 = time.monotonic()
    with pytest.raises(http.HttpUnreachableError) as info:
        http.request(
            "POST", url, service="slack", deadline=Deadline(5), idempotent=False, secret_url=True
        )
    assert time.monotonic() - t0 < 2
    exc = info.value
    assert exc.code == 6
    assert f"127.0.0.1:{port}" in exc.message
    assert "connection refused" in exc.message
    text = "".join(traceback.format_exception(exc)) + exc.hint
    assert "httpS3cretPathSENTINEL" not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    assert all("httpS3cretPathSENTINEL" not in r.getMessage() for r in caplog.records)


def test_httpx_info_log_never_carries_the_url(
    server: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http.request(
        "POST",
        server.url + SECRET_PATH,
        service="slack",
        deadline=Deadline(5),
        idempotent=False,
        secret_url=True,
        json={"text": "x"},
    )
    assert server.count == 1
    assert all("httpS3cretPathSENTINEL" not in r.getMessage() for r in caplog.records)


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert http.parse_retry_after("7") == 7
    assert http.parse_retry_after(format_datetime(now + timedelta(seconds=90)), now=now) == 90
    assert http.parse_retry_after("soon") is None
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("-5") == 0


def test_status_error_maps_exit_codes() -> None:
    def resp(status: int) -> http.HttpResponse:
        return http.HttpResponse(status=status, headers={}, body=b"", attempts=1, elapsed=0.0)

    assert isinstance(http.status_error(resp(403), service="s"), PermissionDeniedError)
    assert isinstance(http.status_error(resp(503), service="s"), UnreachableError)
    assert isinstance(http.status_error(resp(404), service="s"), ActionFailedError)


def test_safe_target_drops_path_query_and_credentials() -> None:
    assert (
        http.safe_target("https://u:pw@hooks.example:8443/a/b?c=d") == "https://hooks.example:8443"
    )
    assert http.safe_target("http://[::1]:9/x") == "http://[::1]:9"
