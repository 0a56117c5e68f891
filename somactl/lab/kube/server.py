"""The HTTP front: a stdlib ThreadingHTTPServer speaking HTTP/1.1 with chunked watches.

`KubeSimulator` runs in-process (tests: `start()` on port 0, `tick()` the clock, `stop()`) or
as the foreground process of `somactl lab kube-api` (with a background ticker and snapshots).
Every API request is recorded (method, path, query, content type, status, whether it mutated);
tests read `sim.requests`, other processes `GET /_sim/requests`.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from somactl.lab.kube import printers
from somactl.lab.kube.api import Api, Request, Response, WatchSpec, json_response
from somactl.lab.kube.cluster import Cluster
from somactl.lab.kube.errors import ApiError, bad_request, gone
from somactl.lab.kube.store import WatchEvent

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
BOOKMARK_EVERY = 5.0
POLL = 0.25


@dataclass(frozen=True)
class LoggedRequest:
    seq: int
    time: float
    method: str
    path: str
    query: str
    params: dict[str, list[str]]
    content_type: str
    accept: str
    user_agent: str
    status: int
    mutating: bool  # a write verb without dryRun: it was meant to change state
    mutated: bool  # ... and it succeeded
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Headers(dict[str, str]):
    """Case-insensitive header lookup."""

    def __init__(self, raw: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in raw.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: KubeSimulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120  # idle keep-alive connections release their thread

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in str(self.headers.get("Transfer-Encoding", "")).lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        sim = self.server.sim
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._read_body()
        except ValueError:
            self._send(json_response(bad_request("malformed request body").status(), 400))
            return
        if split.path.startswith("/_sim/"):
            self._send(sim.debug(self.command, split.path, query, body))
            return
        headers = {k: v for k, v in self.headers.items()}
        req = Request(self.command, split.path, query, _Headers(headers), body)
        try:
            resp = sim.api.handle(req)
        except Exception as exc:  # noqa: BLE001 (a bug answers 500 like the apiserver's panic handler)
            resp = json_response(
                ApiError(500, "InternalError", f"Internal error occurred: {exc!r}").status(), 500
            )
        sim.log_request(req, split.query, resp.status)
        if resp.watch is not None:
            self._stream(resp.watch)
        else:
            self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(resp.body)

    # ---- watch ---------------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                return bool(sock.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True
        return False

    def _stream(self, spec: WatchSpec) -> None:
        sim = self.server.sim
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        sim._watchers_inc(1)
        try:
            self._stream_events(spec)
            with contextlib.suppress(OSError):
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            sim._watchers_inc(-1)

    def _stream_events(self, spec: WatchSpec) -> None:
        sim = self.server.sim
        store = sim.cluster.store
        rt = spec.rt
        getters = rt.fields()

        def matches(obj: dict[str, Any]) -> bool:
            meta = obj["metadata"]
            if (
                spec.namespace is not None
                and rt.namespaced
                and meta.get("namespace") != spec.namespace
            ):
                return False
            if not spec.labels.matches(meta.get("labels") or {}):
                return False
            return spec.fields.matches(obj, getters)

        first = [True]

        def encode(etype: str, obj: dict[str, Any]) -> bytes:
            out = sim.api.out_version(rt, spec.version, obj)
            if spec.table:
                out = printers.table(
                    rt,
                    [out],
                    sim.cluster.now(),
                    {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                    spec.include_object,
                    headers=first[0],
                )
                first[0] = False
            return json.dumps({"type": etype, "object": out}, separators=(",", ":")).encode() + (
                b"\n"
            )

        with store.lock:
            start_rv = spec.resource_version
            initial: list[dict[str, Any]] = []
            if start_rv is None or start_rv == 0:
                initial = [
                    o
                    for o in store.select(rt.key, spec.namespace if rt.namespaced else None)
                    if matches(o)
                ]
                last_rv = store.rv
            elif start_rv < store.compacted_rv:
                err = gone(f"too old resource version: {start_rv} ({store.rv})")
                self._chunk(json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n")
                return
            else:
                last_rv = start_rv
            visible = {
                (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                for o in store.select(rt.key, spec.namespace if rt.namespaced else None)
                if matches(o)
            }
            # What existed (and matched) at start_rv: undo the changes made since then.
            first_change: dict[tuple[str, str], WatchEvent] = {}
            for ev in store.events_since(last_rv):
                if ev.rkey == rt.key:
                    first_change.setdefault((ev.namespace, ev.obj["metadata"]["name"]), ev)
            for key, ev in first_change.items():
                if ev.type == "ADDED":
                    visible.discard(key)
                elif matches(ev.obj):
                    visible.add(key)
        for obj in initial:
            self._chunk(encode("ADDED", obj))
        deadline = time.monotonic() + max(0.0, spec.timeout)
        last_bookmark = time.monotonic()
        while not sim.stopping:
            now = time.monotonic()
            if now >= deadline:
                return
            with store.cond:
                events: list[WatchEvent] = store.events_since(last_rv)
                if not events:
                    store.cond.wait(timeout=min(POLL, deadline - now))
                    events = store.events_since(last_rv)
                    if (
                        events
                        and events[0].rv <= store.compacted_rv
                        and last_rv < (store.compacted_rv)
                    ):
                        err = gone(f"too old resource version: {last_rv} ({store.rv})")
                        self._chunk(
                            json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n"
                        )
                        return
            out: list[bytes] = []
            for ev in events:
                last_rv = ev.rv
                if ev.rkey != rt.key:
                    continue
                key = (ev.namespace, ev.obj["metadata"]["name"])
                now_match = ev.type != "DELETED" and matches(ev.obj)
                if now_match:
                    etype = "ADDED" if key not in visible else "MODIFIED"
                    visible.add(key)
                    out.append(encode(etype, ev.obj))
                elif key in visible:
                    visible.discard(key)
                    out.append(encode("DELETED", ev.obj))
            for chunk in out:
                self._chunk(chunk)
            if not out and self._client_gone():
                return
            if spec.bookmarks and time.monotonic() - last_bookmark >= BOOKMARK_EVERY:
                last_bookmark = time.monotonic()
                bookmark = {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version(spec.version),
                    "metadata": {"resourceVersion": str(last_rv)},
                }
                self._chunk(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")


class KubeSimulator:
    """A simulated kube-apiserver on loopback. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        cluster: Cluster | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        snapshot: Path | None = None,
        seeder: Callable[[Cluster], None] | None = None,
        log_limit: int = 50000,
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the simulator binds loopback only, not {host!r}")
        self.cluster = cluster or Cluster()
        self.host = host
        self.port = port
        self.snapshot_path = snapshot
        self.seeder = seeder
        self.api = Api(self.cluster)
        self.stopping = False
        self._log: list[LoggedRequest] = []
        self._log_lock = threading.Lock()
        self._log_limit = log_limit
        self._seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._watchers = 0
        self._stop_event = threading.Event()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> KubeSimulator:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        _Server.address_family = family
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self._server = server
        self.port = int(server.server_address[1])
        self.api.server_address = f"{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="kube-sim-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def start_ticker(self, interval: float = 1.0) -> None:
        """Advance the clock with the wall clock (the live lab), saving snapshots as it goes."""

        def run() -> None:
            last = time.monotonic()
            last_save = last
            while not self._stop_event.wait(interval):
                now = time.monotonic()
                self.cluster.tick(now - last, step=max(interval, 0.1))
                last = now
                if self.snapshot_path is not None and now - last_save >= 5.0:
                    self.save()
                    last_save = now

        self._ticker = threading.Thread(target=run, name="kube-sim-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self.stopping = True
        self._stop_event.set()
        with self.cluster.store.cond:
            self.cluster.store.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self.snapshot_path is not None:
            self.save()

    def __enter__(self) -> KubeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def save(self) -> None:
        if self.snapshot_path is not None:
            self.cluster.save(self.snapshot_path)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def tick(self, seconds: float, step: float = 1.0) -> None:
        self.cluster.tick(seconds, step)

    @property
    def watchers(self) -> int:
        return self._watchers

    def _watchers_inc(self, n: int) -> None:
        with self._log_lock:
            self._watchers += n

    # ---- request log ---------------------------------------------------------------------------

    def log_request(self, req: Request, raw_query: str, status: int) -> None:
        dry = bool(req.query.get("dryRun"))
        writing = req.method in WRITE_METHODS and not dry
        with self._log_lock:
            self._seq += 1
            entry = LoggedRequest(
                seq=self._seq,
                time=time.time(),
                method=req.method,
                path=req.path,
                query=raw_query,
                params={k: list(v) for k, v in req.query.items()},
                content_type=req.header("Content-Type"),
                accept=req.header("Accept"),
                user_agent=req.header("User-Agent"),
                status=status,
                mutating=writing,
                mutated=writing and status < 400,
                dry_run=dry,
            )
            self._log.append(entry)
            if len(self._log) > self._log_limit:
                del self._log[: len(self._log) - self._log_limit]

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    def mutations(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.mutated]

    # ---- /_sim/ debug endpoints ----------------------------------------------------------------

    def debug(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        def param(name: str) -> str | None:
            v = query.get(name)
            return v[0] if v else None

        try:
            if path == "/_sim/requests" and method == "GET":
                since = int(param("since") or 0)
                items = [r.to_json() for r in self.requests if r.seq > since]
                return json_response({"items": items})
            if path == "/_sim/requests" and method == "DELETE":
                self.clear_requests()
                return json_response({"cleared": True})
            if path == "/_sim/tick" and method == "POST":
                seconds = float(param("seconds") or 1)
                step = float(param("step") or 1)
                if not 0 <= seconds <= 86400 or step <= 0:
                    raise bad_request("seconds must be within 0..86400 and step > 0")
                self.cluster.tick(seconds, step)
                return json_response({"now": self.cluster.now()})
            if path == "/_sim/reset" and method == "POST":
                self.cluster.reset()
                if self.seeder is not None:
                    self.seeder(self.cluster)
                self.clear_requests()
                return json_response({"reset": True, "seeded": self.seeder is not None})
            if path == "/_sim/state" and method == "GET":
                store = self.cluster.store
                with store.lock:
                    counts = {k: len(v) for k, v in store.objects.items()}
                    rv = store.rv
                return json_response(
                    {
                        "now": self.cluster.now(),
                        "resourceVersion": rv,
                        "counts": counts,
                        "watchers": self.watchers,
                    }
                )
            if path == "/_sim/snapshot" and method == "POST":
                if self.snapshot_path is None:
                    raise bad_request("the simulator was started without --snapshot")
                self.save()
                return json_response({"saved": str(self.snapshot_path)})
        except ValueError as exc:
            return json_response(bad_request(str(exc)).status(), 400)
        except ApiError as exc:
            return json_response(exc.status(), exc.code)
        return json_response(
            ApiError(404, "NotFound", f"no debug endpoint {method} {path}", {}).status(), 404
        )
