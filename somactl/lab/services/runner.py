"""Start every SomaGent stand-in in one process: in-process for tests, or as `python -m`.

    python -m somactl.lab.services --kube-api URL --namespace NS --ports-file FILE \
        [--tools-port 8003] [--github-port 0] [--metrics-ports gateway-api=0,orchestrator=0,...] \
        [--github-token-file FILE] [--kube-token-file FILE] [--poll-interval 1.0] [--seed N]

The ports file is written atomically once every listener is accepting connections, so its
appearance means "ready" (format: `ports_json()`). SIGTERM / SIGINT stop everything and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from somactl.lab.services.github import GitHubApp, GitHubSim
from somactl.lab.services.httpbase import LabServer
from somactl.lab.services.kubestate import KubeSource, KubeWatcher
from somactl.lab.services.metrics import MetricsApp, ServiceSim
from somactl.lab.services.tools import DEFAULT_ADAPTERS, ToolsApp, ToolsSim

PORTS_FILE_VERSION = 1
DEFAULT_SERVICES = ("gateway-api", "orchestrator", "kamachiq-service")
DEFAULT_TOOLS_PORT = 8003
HOST = "127.0.0.1"


@dataclass
class ServicesHandle:
    """What `start_services` started; `stop()` is idempotent. Usable as a context manager."""

    namespace: str
    kube_api: str | None
    metrics_servers: dict[str, LabServer]
    tools_server: LabServer
    github_server: LabServer
    sims: dict[str, ServiceSim]
    watchers: dict[str, KubeWatcher]
    tools: ToolsSim
    github: GitHubSim
    started_at: float = field(default_factory=time.time)
    _stopped: bool = False

    @property
    def metrics_ports(self) -> dict[str, int]:
        return {name: s.port for name, s in self.metrics_servers.items()}

    @property
    def tools_port(self) -> int:
        return self.tools_server.port

    @property
    def github_port(self) -> int:
        return self.github_server.port

    @property
    def ports(self) -> dict[str, int]:
        """Every listener: service name -> port, plus "tools" and "github"."""
        return {**self.metrics_ports, "tools": self.tools_port, "github": self.github_port}

    def url(self, name: str) -> str:
        if name == "tools":
            return self.tools_server.url
        if name == "github":
            return self.github_server.url
        return self.metrics_servers[name].url

    def ports_json(self) -> dict[str, Any]:
        return {
            "version": PORTS_FILE_VERSION,
            "pid": os.getpid(),
            "host": HOST,
            "started_at": self.started_at,
            "namespace": self.namespace,
            "kube_api": self.kube_api,
            "metrics": self.metrics_ports,
            "tools": self.tools_port,
            "github": self.github_port,
            "urls": {
                "metrics": {n: f"{s.url}/metrics" for n, s in self.metrics_servers.items()},
                "tools": self.tools_server.url,
                "github": self.github_server.url,
            },
        }

    def write_ports_file(self, path: Path) -> None:
        write_json_atomically(path, self.ports_json())

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        servers = [*self.metrics_servers.values(), self.tools_server, self.github_server]
        # Each shutdown waits for its serve loop's next poll: stop them side by side.
        stoppers = [threading.Thread(target=s.stop, daemon=True) for s in servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(timeout=10)
        for w in self.watchers.values():
            w.stop()
        for sim in self.sims.values():
            sim.stop()
        self.tools.stop()

    def __enter__(self) -> ServicesHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def start_services(
    *,
    kube_api: str | None,
    namespace: str = "somagent-production",
    services: Sequence[str] = DEFAULT_SERVICES,
    metrics_ports: Mapping[str, int] | None = None,
    tools_port: int = 0,
    github_port: int = 0,
    github_token: str | None = None,
    kube_token: str | None = None,
    kube_ca_file: str | None = None,
    poll_interval: float = 1.0,
    adapters: Sequence[str] = DEFAULT_ADAPTERS,
    tools_rate_scale: float = 1.0,
    seed: int | None = None,
    port_fallback: bool = True,
    access_log: Callable[[str], None] | None = None,
) -> ServicesHandle:
    """Start the metrics stand-ins, the tools API and the GitHub stand-in on 127.0.0.1.

    Ports are 0 (free port) unless given; a given port that is taken falls back to a free one
    when `port_fallback`. `kube_api=None` runs without Kubernetes (services look healthy).
    """
    ports = dict(metrics_ports or {})
    unknown = set(ports) - set(services)
    if unknown:
        raise ValueError(f"metrics ports for unknown services: {', '.join(sorted(unknown))}")
    started: list[LabServer] = []
    sims: dict[str, ServiceSim] = {}
    watchers: dict[str, KubeWatcher] = {}
    tools: ToolsSim | None = None
    try:
        github = GitHubSim(token=github_token)
        github_server = LabServer(
            GitHubApp(github),
            host=HOST,
            port=github_port,
            fallback=port_fallback,
            access_log=access_log,
        )
        started.append(github_server)
        tools = ToolsSim(adapters, github=github, seed=seed, rate_scale=tools_rate_scale)
        tools_server = LabServer(
            ToolsApp(tools),
            host=HOST,
            port=tools_port,
            fallback=port_fallback,
            access_log=access_log,
        )
        started.append(tools_server)
        metrics_servers: dict[str, LabServer] = {}
        for i, name in enumerate(services):
            watcher = None
            if kube_api:
                source = KubeSource(
                    kube_api,
                    namespace,
                    token=kube_token,
                    ca_file=kube_ca_file,
                    timeout=max(0.2, min(0.8, poll_interval)),
                )
                watcher = KubeWatcher(source, name, interval=poll_interval)
                watchers[name] = watcher
            sim = ServiceSim(name, watcher=watcher, seed=None if seed is None else seed + i + 1)
            sims[name] = sim
            server = LabServer(
                MetricsApp(sim),
                host=HOST,
                port=ports.get(name, 0),
                fallback=port_fallback,
                access_log=access_log,
            )
            started.append(server)
            metrics_servers[name] = server
        # First poll synchronously so the first scrape already reflects the cluster.
        for w in watchers.values():
            w.poll_once()
            w.start()
        for sim in sims.values():
            sim.start()
        tools.start()
        for s in started:
            s.start()
    except BaseException:
        for s in started:
            s.stop()
        for w in watchers.values():
            w.stop()
        for sim in sims.values():
            sim.stop()
        if tools is not None:
            tools.stop()
        raise
    return ServicesHandle(
        namespace=namespace,
        kube_api=kube_api,
        metrics_servers=metrics_servers,
        tools_server=tools_server,
        github_server=github_server,
        sims=sims,
        watchers=watchers,
        tools=tools,
        github=github,
    )


# ---- command line ---------------------------------------------------------------------------


def parse_metrics_ports(text: str) -> dict[str, int]:
    """`gateway-api=0,orchestrator=9101` -> {"gateway-api": 0, "orchestrator": 9101}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, port = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {part!r}")
        try:
            value = int(port)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad port in {part!r}") from None
        if not 0 <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port out of range in {part!r}")
        out[name.strip()] = value
    if not out:
        raise argparse.ArgumentTypeError("no NAME=PORT pairs given")
    return out


def _read_secret_file(path: str | None) -> str | None:
    if not path:
        return None
    value = Path(path).read_text().strip()
    return value or None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m somactl.lab.services",
        description="Run the lab's SomaGent stand-ins (service metrics, tools API, GitHub API).",
    )
    p.add_argument(
        "--kube-api",
        default=None,
        help="simulated Kubernetes API base URL (omit: no Kubernetes state)",
    )
    p.add_argument("--namespace", default="somagent-production")
    p.add_argument(
        "--ports-file",
        type=Path,
        required=True,
        help="where to write the chosen ports (JSON, atomically, once ready)",
    )
    p.add_argument(
        "--tools-port",
        type=int,
        default=DEFAULT_TOOLS_PORT,
        help="tools API port (default 8003; a free port if taken)",
    )
    p.add_argument("--github-port", type=int, default=0)
    p.add_argument(
        "--metrics-ports",
        type=parse_metrics_ports,
        default={name: 0 for name in DEFAULT_SERVICES},
        help="NAME=PORT,... one metrics listener per service (0: a free port)",
    )
    p.add_argument(
        "--github-token-file",
        default=None,
        help="file holding the token the GitHub stand-in accepts (default: any)",
    )
    p.add_argument("--kube-token-file", default=None, help="bearer token file for the API")
    p.add_argument("--kube-ca-file", default=None)
    p.add_argument("--poll-interval", type=float, default=1.0)
    p.add_argument(
        "--tools-rate-scale",
        type=float,
        default=1.0,
        help="multiplier on the simulated tool invocation rate",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--access-log", action="store_true", help="log requests to stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        handle = start_services(
            kube_api=args.kube_api,
            namespace=args.namespace,
            services=tuple(args.metrics_ports),
            metrics_ports=args.metrics_ports,
            tools_port=args.tools_port,
            github_port=args.github_port,
            github_token=_read_secret_file(args.github_token_file),
            kube_token=_read_secret_file(args.kube_token_file),
            kube_ca_file=args.kube_ca_file,
            poll_interval=args.poll_interval,
            tools_rate_scale=args.tools_rate_scale,
            seed=args.seed,
            access_log=log if args.access_log else None,
        )
    except (OSError, ValueError) as exc:
        print(f"error: lab services did not start: {exc}", file=sys.stderr)
        return 1
    try:
        handle.write_ports_file(args.ports_file)
        log(f"lab services ready: {json.dumps(handle.ports)}")
        while not stop.wait(0.5):
            pass
    finally:
        handle.stop()
    return 0
