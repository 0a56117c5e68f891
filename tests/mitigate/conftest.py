"""Fixtures for `somactl mitigate` end to end: the simulated Kubernetes API in-process, somactl
run in-process (`cli`) or as a process on a pipe or a pseudo-terminal (`spawn`), the audit
journal, and helpers that prove "nothing changed" from the simulator's request log."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from somactl.incident.audit import AuditJournal
from somactl.lab.kube import Cluster, KubeSimulator, write_kubeconfig
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE, bad_deploy, seed
from tests.helpers import free_port, wait_until

ACTOR = "oncall-tester"


@dataclass
class Run:
    rc: int
    out: str
    err: str


def settle(sim: KubeSimulator, seconds: float = 60.0) -> None:
    sim.tick(seconds)


def make_sim(bad: bool = True, end_at: float | None = None) -> KubeSimulator:
    cluster = Cluster()
    # Settled in the past so that ticking never pushes server time past the wall clock.
    seed(cluster, end_at=end_at if end_at is not None else time.time() - 900)
    if bad:
        bad_deploy(cluster, NAMESPACE, "gateway-api")
        cluster.tick(60)
    return KubeSimulator(cluster).start()


@pytest.fixture
def sim() -> Iterator[KubeSimulator]:
    """The seeded production namespace with a bad gateway-api deploy (revision 4, crashloop)."""
    server = make_sim()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Env:
    """Where somactl runs: its environment (kubeconfig, state dir, no user config)."""

    tmp: Path
    vars: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    def journal(self) -> AuditJournal:
        return AuditJournal(self.state_dir)

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.journal().records() if kind is None or r.get("kind") == kind]

    def process_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.tmp / "home"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "NO_COLOR": "1",
            **self.vars,
        }


_CLEARED = (
    "KUBECONFIG",
    "SOMACTL_CONTEXT",
    "SOMACTL_NAMESPACE",
    "SOMACTL_KUBE_CONTEXT",
    "SOMACTL_PG_DSN",
    "SOMACTL_REDIS_URL",
    "SOMACTL_TOOLS_URL",
    "PGPASSWORD",
    "REDISCLI_AUTH",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "SOMACTL_CRASH_AT",
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """somactl's environment, applied to this process (for `cli`) and kept for subprocesses."""
    e = Env(tmp_path)
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    e.vars.update(
        {
            "SOMACTL_STATE_DIR": str(e.state_dir),
            "SOMACTL_CONFIG": str(tmp_path / "no-config.yaml"),
            "SOMACTL_ACTOR": ACTOR,
            # a loopback port nobody listens on: the runbook's production URL is never asked
            "SOMACTL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    for k, v in e.vars.items():
        monkeypatch.setenv(k, v)
    return e


def set_env(env: Env, monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for k, v in values.items():
        env.vars[k] = v
        monkeypatch.setenv(k, v)


@pytest.fixture
def kenv(env: Env, sim: KubeSimulator, monkeypatch: pytest.MonkeyPatch) -> Env:
    """`env` pointed at the simulator."""
    kc = write_kubeconfig(env.tmp / "kubeconfig", sim.url, NAMESPACE)
    set_env(env, monkeypatch, SOMACTL_KUBECONFIG=str(kc))
    return env


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run somactl in this process (stdin is not a terminal under pytest)."""
    from somactl.app import run

    def call(*argv: str) -> Run:
        capsys.readouterr()
        rc = run(list(argv))
        out, err = capsys.readouterr()
        return Run(rc, out, err)

    return call


def run_process(env: Env, *argv: str, stdin: bytes | None = None, timeout: float = 60) -> Run:
    """somactl as a process with stdin on a pipe (`stdin`) or /dev/null (None)."""
    proc = subprocess.run(
        [sys.executable, "-m", "somactl", *argv],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env.process_env(),
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


class Pty:
    """somactl as a process on a pseudo-terminal (stdin and stderr), stdout on a pipe."""

    def __init__(self, env: Env, *argv: str) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "somactl", *argv],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env.process_env(),
        )
        os.close(slave)
        self.seen = b""
        self._out: list[bytes] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self._reader = threading.Thread(target=lambda: self._out.append(stdout.read()), daemon=True)
        self._reader.start()

    def expect(self, text: str, timeout: float = 30.0) -> str:
        """Read the terminal until `text` shows (deadline-bound)."""
        import select

        deadline = time.monotonic() + timeout
        needle = text.encode()
        while needle not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen within {timeout}s; got {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"exited before {text!r}: {self.seen!r}")
                self.seen += chunk
        return self.seen.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 60.0) -> Run:
        import select

        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        os.close(self.master)
        return Run(rc, b"".join(self._out).decode(), self.seen.decode(errors="replace"))


@pytest.fixture
def spawn() -> Iterator[Callable[..., Pty]]:
    started: list[Pty] = []

    def start(env: Env, *argv: str) -> Pty:
        p = Pty(env, *argv)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(timeout=10)


# --- the simulator's view ----------------------------------------------------------------------


def last_seq(sim: KubeSimulator) -> int:
    reqs = sim.requests
    return reqs[-1].seq if reqs else 0


def writes_since(sim: KubeSimulator, seq: int) -> list[tuple[str, str, str]]:
    """Every write request (mutating or dry run) after `seq`: (method, path, query)."""
    return [
        (r.method, r.path, r.query)
        for r in sim.requests
        if r.seq > seq and r.method in ("POST", "PUT", "PATCH", "DELETE")
    ]


def mutations_since(sim: KubeSimulator, seq: int) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sim.requests if r.seq > seq and r.mutating]


def deployment(sim: KubeSimulator, name: str) -> dict[str, Any]:
    return sim.cluster.get(R.DEPLOYMENTS, NAMESPACE, name)


def state_of(sim: KubeSimulator) -> str:
    """Every stored object of the namespace as canonical JSON ("byte-identical afterwards")."""
    import json

    store = sim.cluster.store
    with store.lock:
        data = {
            rkey: {f"{k[0]}/{k[1]}": v for k, v in objs.items() if k[0] == NAMESPACE}
            for rkey, objs in store.objects.items()
        }
        return json.dumps(data, sort_keys=True, default=str)


class Ticker:
    """Moves the simulator's clock from a background thread (for --verify following a rollout)."""

    def __init__(self, sim: KubeSimulator, step: float = 2.0, every: float = 0.02) -> None:
        self.stop_event = threading.Event()

        def loop() -> None:
            while not self.stop_event.wait(every):
                sim.tick(step)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


@pytest.fixture
def ticker(sim: KubeSimulator) -> Iterator[Callable[..., Ticker]]:
    made: list[Ticker] = []

    def start(step: float = 2.0) -> Ticker:
        t = Ticker(sim, step)
        made.append(t)
        return t

    yield start
    for t in made:
        t.stop()


__all__ = ["ACTOR", "NAMESPACE", "Env", "Run", "Ticker", "wait_until"]


class PromStub:
    """A Prometheus query endpoint on loopback whose answers a test computes per query."""

    def __init__(self, answer: Callable[[str], float | None]) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        stub = self
        self.answer = answer
        self.queries: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query).get("query", [""])[0]
                stub.queries.append(query)
                value = stub.answer(query)
                result = (
                    [] if value is None else [{"metric": {}, "value": [time.time(), str(value)]}]
                )
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "vector", "result": result}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
