"""The small HTTP layer every lab stand-in shares: routing, JSON, fault injection, loopback binding.

Each stand-in is an `App` (a `handle(Request) -> Response` object) served by one
`ThreadingHTTPServer` on 127.0.0.1. The base adds, for every app, the `/_lab/fault` control: the
next N requests (outside `/_lab/`) answer a chosen status (503 by default) with `Retry-After`,
which is what the reliability tests need to prove that clients back off.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs, urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_BODY = 1024 * 1024
JSON_TYPE = "application/json; charset=utf-8"


class HTTPError(Exception):
    """Raised by a route to answer a JSON error (`{"error": message, ...}`)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is `{}`; anything else is a 400."""
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "body must be a JSON object")
        return data


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    return Response(status, body, JSON_TYPE, list(headers))


def error_response(exc: HTTPError) -> Response:
    return json_response(exc.status, {"error": exc.message, **exc.extra})


class App(Protocol):
    name: str

    def handle(self, req: Request) -> Response: ...


Handler = Callable[[Request, "re.Match[str]"], Response]


class Router:
    """(method, regex) -> handler; a path that matches with another method is a 405."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, req: Request) -> Response:
        allowed: list[str] = []
        for method, rx, handler in self._routes:
            m = rx.match(req.path)
            if m is None:
                continue
            if method == req.method or (method == "GET" and req.method == "HEAD"):
                return handler(req, m)
            allowed.append(method)
        if allowed:
            raise HTTPError(
                405, f"method {req.method} not allowed on {req.path}", allowed=sorted(set(allowed))
            )
        raise HTTPError(404, f"no route for {req.method} {req.path}")


# ---- fault injection -----------------------------------------------------------------------------


@dataclass
class FaultState:
    remaining: int = 0
    status: int = 503
    retry_after: int | None = 2
    served: int = 0


class FaultInjector:
    """Answer the next N requests with `status` (and `Retry-After`), then serve normally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = FaultState()

    def configure(self, count: int, status: int = 503, retry_after: int | None = 2) -> FaultState:
        with self._lock:
            self._state = FaultState(max(0, count), status, retry_after)
            return self.snapshot_locked()

    def snapshot_locked(self) -> FaultState:
        s = self._state
        return FaultState(s.remaining, s.status, s.retry_after, s.served)

    def snapshot(self) -> FaultState:
        with self._lock:
            return self.snapshot_locked()

    def take(self) -> FaultState | None:
        """If a fault is armed, consume one and return it."""
        with self._lock:
            if self._state.remaining <= 0:
                return None
            self._state.remaining -= 1
            self._state.served += 1
            return self.snapshot_locked()

    def handle_control(self, req: Request) -> Response:
        if req.method == "GET":
            return json_response(200, fault_json(self.snapshot()))
        if req.method == "DELETE":
            return json_response(200, fault_json(self.configure(0)))
        body = req.json()
        count = body.get("count", 1)
        status = body.get("status", 503)
        retry_after = body.get("retry_after", 2)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise HTTPError(400, "count must be an integer >= 0")
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise HTTPError(400, "status must be an HTTP error status (400-599)")
        if retry_after is not None and (
            not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0
        ):
            raise HTTPError(400, "retry_after must be an integer >= 0 or null")
        return json_response(200, fault_json(self.configure(count, status, retry_after)))


def fault_json(s: FaultState) -> dict[str, Any]:
    return {
        "remaining": s.remaining,
        "status": s.status,
        "retry_after": s.retry_after,
        "served": s.served,
    }


def fault_response(s: FaultState) -> Response:
    headers = [("Retry-After", str(s.retry_after))] if s.retry_after is not None else []
    return json_response(s.status, {"error": "injected fault (lab)", "status": s.status}, headers)


# ---- the server ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms for
    # the delayed ACK on every request.
    disable_nagle_algorithm = True
    server_version = "somactl-lab"
    sys_version = ""
    lab: ClassVar[LabServer]

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(error_response(HTTPError(413, "body too large")))
            return
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(
            method=self.command,
            path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k: v for k, v in self.headers.items()},
            body=body,
        )
        self._send(self.lab.serve(req))

    def _send(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log = self.lab.access_log
        if log is not None:
            log(f"{self.lab.app.name} {self.address_string()} {format % args}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Without this a restarted lab could not rebind a port still in TIME_WAIT.
    allow_reuse_address = True


def bind_server(
    host: str, port: int, handler: type[BaseHTTPRequestHandler], *, fallback: bool
) -> ThreadingHTTPServer:
    """Bind `host:port`; if the port is taken and `fallback`, bind a free port instead."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the lab binds loopback only, not {host!r}")
    try:
        return _Server((host, port), handler)
    except OSError as exc:
        if not fallback or port == 0 or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        return _Server((host, 0), handler)


class LabServer:
    """One app on one loopback port, served by a daemon thread until `stop()`."""

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fallback: bool = True,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.faults = FaultInjector()
        handler = type(f"{type(app).__name__}Handler", (_Handler,), {"lab": self})
        self._httpd = bind_server(host, port, handler, fallback=fallback)
        self.requested_port = port
        self.host = host
        self.port: int = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self, req: Request) -> Response:
        try:
            if req.path == "/_lab/fault":
                return self.faults.handle_control(req)
            if req.path == "/_lab/reset" and req.method == "POST":
                self.faults.configure(0)
            if not req.path.startswith("/_lab/"):
                fault = self.faults.take()
                if fault is not None:
                    return fault_response(fault)
            return self.app.handle(req)
        except HTTPError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - a stand-in must answer 500, never drop the socket
            return json_response(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"lab-{self.app.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(OSError):
            self._httpd.server_close()
