"""A small TCP fault proxy on loopback (stdlib only): what toxiproxy would do, for the tests.

    with FaultProxy(("127.0.0.1", upstream_port), mode="blackhole") as proxy:
        connect to ("127.0.0.1", proxy.port) ...

Modes (switchable at any time with `proxy.mode = ...`):
- "pass":      forward both ways;
- "latency":   forward, holding every chunk `latency` seconds first;
- "blackhole": accept, read and discard, never answer (and never connect upstream);
- "reset":     accept, then reset the connection (RST) at once;
- "drip":      forward the request, dribble the answer back one byte every `drip_interval`
               seconds (defeats per-read timeouts: only an outer deadline stops a client).

Binds 127.0.0.1 on a free port; `close()` stops the listener and every connection it made.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

MODES = ("pass", "latency", "blackhole", "reset", "drip")


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        mode: str = "pass",
        latency: float = 0.5,
        drip_interval: float = 0.2,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        self.upstream = upstream
        self.mode = mode
        self.latency = latency
        self.drip_interval = drip_interval
        self.accepted = 0
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._track(client)
            threading.Thread(
                target=self._handle, args=(client, self.mode), name="faultproxy-conn", daemon=True
            ).start()

    def _handle(self, client: socket.socket, mode: str) -> None:
        if mode == "reset":
            # SO_LINGER (on, 0 s): close sends RST instead of FIN
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            return
        if mode == "blackhole":
            client.settimeout(0.2)
            while not self._closed.is_set():
                try:
                    if client.recv(65536) == b"":
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            with contextlib.suppress(OSError):
                client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()
            return
        self._track(upstream)
        threading.Thread(
            target=self._pump, args=(client, upstream, mode, False), daemon=True
        ).start()
        self._pump(upstream, client, mode, True)

    def _pump(self, src: socket.socket, dst: socket.socket, mode: str, answer: bool) -> None:
        src.settimeout(0.2)
        try:
            while not self._closed.is_set():
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if mode == "latency":
                    time.sleep(self.latency)
                if mode == "drip" and answer:
                    for i in range(len(data)):
                        if self._closed.wait(self.drip_interval):
                            return
                        dst.sendall(data[i : i + 1])
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
