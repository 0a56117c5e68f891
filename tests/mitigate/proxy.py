"""A small HTTP forwarding proxy on loopback that can lose answers (reliability case 9).

`drop_response_of(method, path_suffix)`: the next matching request is forwarded to the upstream
(so it takes effect) and then the client connection is closed without an answer: "the rollback
succeeded but the response was lost". `down = True`: every request is answered by closing the
connection (the API server unreachable).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if proxy.down:
            proxy.refused += 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        drop = proxy.take_drop(self.command, self.path)
        if drop:
            proxy.dropped.append((self.command, self.path, resp.status))
            if proxy.down_after_drop:
                proxy.down = True
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
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
    proxy: LossyProxy


class LossyProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = int(parts.port or 80)
        self.down = False
        self.down_after_drop = False
        self.refused = 0
        self.dropped: list[tuple[str, str, int]] = []
        self._drops: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LossyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def drop_response_of(self, method: str, path_suffix: str, *, then_down: bool = False) -> None:
        with self._lock:
            self._drops.append((method, path_suffix))
            self.down_after_drop = then_down

    def take_drop(self, method: str, path: str) -> bool:
        with self._lock:
            for i, (m, suffix) in enumerate(self._drops):
                if m == method and path.split("?", 1)[0].endswith(suffix):
                    del self._drops[i]
                    return True
        return False
