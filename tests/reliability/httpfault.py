"""An HTTP front on loopback: forwards to an upstream, or answers with a canned status.

    with HttpFault("http://127.0.0.1:8003") as front:
        front.answer(429, body={"message": "..."}, count=None)  # every request from now on
        ... point the client at front.url ...
        assert len(front.requests) == 1                          # never a tight loop

The TCP fault proxy (tests/helpers/faultproxy.py) breaks connections; this one breaks answers:
a 429/503 with or without Retry-After, a 403 with GitHub's rate-limit headers. Every request is
recorded (method, path, headers), answered or forwarded.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Canned:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    count: int | None = None  # None: until cleared


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        front = self.server.front
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {k.lower(): v for k, v in self.headers.items()}
        canned = front._take(Seen(self.command, self.path, seen))
        if canned is not None:
            status, headers, data = canned.status, dict(canned.headers), canned.body
        else:
            conn = http.client.HTTPConnection(front.host, front.port, timeout=10)
            fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body or None, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            headers = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")
            }
            conn.close()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    front: HttpFault


class HttpFault:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = int(parts.port or 80)
        self.requests: list[Seen] = []
        self._canned: Canned | None = None
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.front = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = b"",
        count: int | None = None,
    ) -> None:
        """Answer the next `count` requests (None: all of them) with `status`; JSON for a dict."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if not isinstance(body, bytes):
            hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
        with self._lock:
            self._canned = Canned(status, hdrs, data, count)
            self.requests.clear()

    def forward(self) -> None:
        with self._lock:
            self._canned = None

    def _take(self, seen: Seen) -> Canned | None:
        with self._lock:
            self.requests.append(seen)
            canned = self._canned
            if canned is None:
                return None
            if canned.count is not None:
                canned.count -= 1
                if canned.count <= 0:
                    self._canned = None
            return canned

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpFault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def answer_github_exhausted(front: HttpFault, reset: int, resource: str = "core") -> None:
    """Answer as GitHub does once a token's limit is used up: 403 "API rate limit exceeded"
    with the rate-limit headers (remaining 0, reset at epoch `reset`)."""
    front.answer(
        403,
        headers={
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": resource,
        },
        body={
            "message": "API rate limit exceeded for user ID 583231.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
        },
    )
