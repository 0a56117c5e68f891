"""`somactl lab`: a whole SomaGent production on this machine, every process recorded by pid.

Components, all on 127.0.0.1 and free ports:
- kube-api: the simulated Kubernetes API (a `somactl lab kube-api` process, snapshot in the
  lab dir so a `down`/`up` keeps the cluster's state);
- services: the SomaGent stand-ins (`python -m somactl.lab.services`): one /metrics listener per
  service, the tools API (port 8003 when free) and a GitHub API stand-in;
- backends: real PostgreSQL, Redis, Prometheus and the postgres/redis exporters
  (somactl.lab.runtime), Prometheus scraping every service;
- traffic: the application role generating Postgres traffic (somactl.lab.pgload).

`up` writes `lab.json` (addresses, pids, password *files*), a kubeconfig, and a somactl context
named `lab` in the config file. Nothing here prints: the command layer renders what it returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from somactl.core.errors import SomactlError, UsageError
from somactl.core.exitcodes import ExitCode
from somactl.lab.runtime import procs
from somactl.lab.runtime.procs import StartError, StateFile

NAMESPACE = "somagent-production"
CONTEXT = "lab"
INFO_FILE = "lab.json"
STATE_FILE = "state.json"
BACKENDS_DIR = "backends"
SERVICES = ("gateway-api", "orchestrator", "kamachiq-service")
DEFAULT_TOOLS_PORT = 8003
UP_TIMEOUT = 30.0


class LabNotRunningError(SomactlError):
    code = ExitCode.PRECONDITION
    default_hint = "start it with `somactl lab up`"


@dataclass
class LabInfo:
    """What `lab.json` records: enough for any later process to reach every component."""

    dir: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def kube_url(self) -> str:
        return str(self.data["kube"]["url"])

    @property
    def service_ports(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.data["services"].items()}

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.service_ports[name]}"

    @property
    def tools_url(self) -> str:
        return self.service_url("tools")

    @property
    def github_url(self) -> str:
        return self.service_url("github")

    @property
    def prometheus_url(self) -> str:
        return str(self.data["backends"]["prometheus"]["url"])

    @property
    def pg(self) -> dict[str, Any]:
        return dict(self.data["backends"]["postgres"])

    @property
    def redis(self) -> dict[str, Any]:
        return dict(self.data["backends"]["redis"])

    def pg_dsn(self, role: str) -> str:
        """A DSN with the role's password (for the lab's own sessions; never printed)."""
        pg = self.pg
        password = Path(pg["roles"][role]).read_text().strip()
        return (
            f"postgresql://{role}:{password}@{pg['host']}:{pg['port']}/{pg['dbname']}"
            "?application_name=somactl-lab"
        )

    def redis_password(self, user: str) -> str:
        return Path(self.redis["users"][user]).read_text().strip()

    def save(self) -> None:
        tmp = self.dir / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.dir / INFO_FILE)


def default_dir(env: Mapping[str, str]) -> Path:
    from somactl.config.settings import default_state_dir

    base = env.get("SOMACTL_STATE_DIR") or default_state_dir(env)
    return Path(base).expanduser() / "lab"


def load(lab_dir: Path) -> LabInfo:
    path = lab_dir / INFO_FILE
    try:
        return LabInfo(lab_dir, json.loads(path.read_text()))
    except FileNotFoundError:
        raise LabNotRunningError(f"no lab in {lab_dir}") from None
    except ValueError as exc:
        raise LabNotRunningError(
            f"{path} is not readable ({exc}); run `somactl lab reset`"
        ) from None


# -- processes ---------------------------------------------------------------------------------


def _state(lab_dir: Path) -> StateFile:
    return StateFile(lab_dir / STATE_FILE)


def _backend_state(lab_dir: Path) -> StateFile:
    return StateFile(lab_dir / BACKENDS_DIR / "state.json")


def records(lab_dir: Path) -> list[procs.ProcRecord]:
    return [*_state(lab_dir).records(), *_backend_state(lab_dir).records()]


def _alive(lab_dir: Path, name: str) -> procs.ProcRecord | None:
    for rec in _state(lab_dir).records():
        if rec.name == name and procs.record_alive(rec):
            return rec
    return None


def _python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def _http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 3.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback only
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        text = resp.read().decode()
    return json.loads(text) if text else None


def _start_kube(lab_dir: Path, deadline: float) -> dict[str, Any]:
    kubeconfig = lab_dir / "kubeconfig"

    def start(port: int) -> procs.ProcRecord:
        rec = procs.spawn(
            "kube-api",
            _python_argv(
                "-m",
                "somactl",
                "lab",
                "kube-api",
                "--port",
                str(port),
                "--kubeconfig",
                str(kubeconfig),
                "--snapshot",
                str(lab_dir / "kube-snapshot.json"),
                "--tick",
                "1",
            ),
            log_dir=lab_dir / "logs",
            state=_state(lab_dir),
            ports={"http": port},
        )
        try:
            procs.wait_ready(
                rec,
                lambda: _http_json(f"http://127.0.0.1:{port}/version", timeout=1)["minor"] == "32",
                timeout=max(1.0, deadline - time.monotonic()),
                what="simulated Kubernetes API",
                port=port,
            )
        except StartError:
            procs.stop_recorded(_state(lab_dir), rec)
            raise
        return rec

    rec = procs.with_port_retry(start)
    port = rec.ports["http"]
    return {"url": f"http://127.0.0.1:{port}", "kubeconfig": str(kubeconfig), "pid": rec.pid}


def _start_services(
    lab_dir: Path, kube_url: str, tools_port: int, deadline: float
) -> dict[str, int]:
    ports_file = lab_dir / "services-ports.json"
    ports_file.unlink(missing_ok=True)
    token_file = lab_dir / "secrets" / "github.token"
    if not token_file.exists():
        import secrets

        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("ghp_lab" + secrets.token_hex(16) + "\n")
    rec = procs.spawn(
        "services",
        _python_argv(
            "-m",
            "somactl.lab.services",
            "--kube-api",
            kube_url,
            "--namespace",
            NAMESPACE,
            "--ports-file",
            str(ports_file),
            "--tools-port",
            str(tools_port),
            "--github-token-file",
            str(token_file),
        ),
        log_dir=lab_dir / "logs",
        state=_state(lab_dir),
    )

    def ready() -> bool:
        return ports_file.exists() and bool(json.loads(ports_file.read_text()))

    procs.wait_ready(
        rec, ready, timeout=max(1.0, deadline - time.monotonic()), what="SomaGent stand-ins"
    )
    doc = json.loads(ports_file.read_text())
    ports = {name: int(port) for name, port in doc["metrics"].items()}
    ports["tools"] = int(doc["tools"])
    ports["github"] = int(doc["github"])
    return ports


def _start_traffic(lab_dir: Path, info: LabInfo) -> None:
    procs.spawn(
        "traffic",
        _python_argv("-m", "somactl.lab.pgload", "traffic"),
        log_dir=lab_dir / "logs",
        state=_state(lab_dir),
        env={"SOMACTL_LAB_APP_DSN": info.pg_dsn(info.pg["app_user"])},
    )


def _context_for(info: LabInfo) -> dict[str, Any]:
    pg = info.pg
    redis = info.redis
    return {
        "description": f"somactl lab in {info.dir}",
        "kubeconfig": info.data["kube"]["kubeconfig"],
        "kube-context": CONTEXT,
        "namespace": NAMESPACE,
        "postgres": {
            "dsn": f"host={pg['host']} port={pg['port']} user=oncall dbname={pg['dbname']}",
            "password": {"file": pg["roles"]["oncall"]},
        },
        "redis": {
            "url": f"redis://oncall@{redis['host']}:{redis['port']}/0",
            "password": {"file": redis["users"]["oncall"]},
        },
        "prometheus": info.prometheus_url,
        "tools-api": info.tools_url,
        "github": {
            "api": info.github_url,
            "token": {"file": str(info.dir / "secrets" / "github.token")},
        },
    }


def status(lab_dir: Path) -> list[dict[str, Any]]:
    """Each recorded process with pid, ports, alive, and a health probe where one exists."""
    rows = []
    info: LabInfo | None
    try:
        info = load(lab_dir)
    except LabNotRunningError:
        info = None
    for rec in records(lab_dir):
        alive = procs.record_alive(rec)
        health = "down"
        if alive:
            health = _probe(rec, info)
        rows.append(
            {
                "component": rec.name,
                "pid": rec.pid,
                "ports": rec.ports,
                "alive": alive,
                "health": health,
                "log": rec.log,
            }
        )
    return rows


def _probe(rec: procs.ProcRecord, info: LabInfo | None) -> str:
    try:
        if rec.name == "kube-api":
            _http_json(f"http://127.0.0.1:{rec.ports['http']}/version", timeout=1)
        elif rec.name == "services" and info is not None:
            _http_json(info.tools_url + "/tools/recent?limit=1", timeout=1)
        elif rec.name == "prometheus":
            port = next(iter(rec.ports.values()))
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).close()
        elif rec.ports:
            port = next(iter(rec.ports.values()))
            if not procs.can_connect(port):
                return "not answering"
    except (OSError, ValueError, KeyError):
        return "not answering"
    return "ok"


def up(
    lab_dir: Path,
    *,
    env: Mapping[str, str],
    tools_port: int = DEFAULT_TOOLS_PORT,
    write_context: bool = True,
    timeout: float = UP_TIMEOUT,
) -> dict[str, Any]:
    """Start whatever is not running; return what runs, what was started, timings."""
    from somactl.lab.runtime.backends import start_backends

    began = time.monotonic()
    deadline = began + timeout
    lab_dir = lab_dir.resolve()
    lab_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    timings: dict[str, float] = {}
    info = LabInfo(lab_dir, {})
    with contextlib.suppress(LabNotRunningError):
        info = load(lab_dir)
    data = info.data
    data.setdefault("scenarios", [])
    data["dir"] = str(lab_dir)
    data["namespace"] = NAMESPACE

    kube = _alive(lab_dir, "kube-api")
    if kube is None or "kube" not in data:
        _stop_named(lab_dir, "kube-api")
        t = time.monotonic()
        data["kube"] = _start_kube(lab_dir, deadline)
        timings["kube-api"] = time.monotonic() - t
        started.append("kube-api")
    services = _alive(lab_dir, "services")
    if services is None or "services" not in data or "kube-api" in started:
        _stop_named(lab_dir, "services")
        t = time.monotonic()
        data["services"] = _start_services(lab_dir, data["kube"]["url"], tools_port, deadline)
        timings["services"] = time.monotonic() - t
        started.append("services")
    backends_alive = [r for r in _backend_state(lab_dir).records() if procs.record_alive(r)]
    backend_records = _backend_state(lab_dir).records()
    jobs = {name: [f"127.0.0.1:{data['services'][name]}"] for name in SERVICES}
    jobs["tool-service"] = [f"127.0.0.1:{data['services']['tools']}"]
    if not backend_records or len(backends_alive) < len(backend_records) or "backends" not in data:
        from somactl.lab.runtime.backends import stop_all

        stop_all(lab_dir / BACKENDS_DIR / "state.json")
        shutil.rmtree(lab_dir / BACKENDS_DIR, ignore_errors=True)
        t = time.monotonic()
        backends = start_backends(
            lab_dir / BACKENDS_DIR,
            extra_jobs=jobs,
            timeout=max(5.0, deadline - time.monotonic()),
        )
        described = backends.describe()
        described["postgres"]["app_user"] = backends.postgres.app_user
        described["postgres"]["superuser"] = backends.postgres.superuser
        described["postgres"]["max_connections"] = _pg_max_connections(backends)
        data["backends"] = described
        timings["backends"] = time.monotonic() - t
        timings.update({f"backends.{k}": v for k, v in backends.timings.items()})
        started.append("backends")
        # new backends: scenarios that lived in the old ones are gone with them
        data["scenarios"] = [
            s
            for s in data["scenarios"]
            if s not in ("db-pool-exhaustion", "slow-queries", "redis-memory-pressure")
        ]
    elif "services" in started:
        _reload_jobs(LabInfo(lab_dir, data), jobs)
    info = LabInfo(lab_dir, data)
    if started:
        t = time.monotonic()
        data["metrics_ready"] = _wait_for_rates(info, deadline)
        timings["first-rates"] = time.monotonic() - t
    if _alive(lab_dir, "traffic") is None or "backends" in started:
        _stop_named(lab_dir, "traffic")
        _start_traffic(lab_dir, info)
        started.append("traffic")
    info.save()
    context_path = None
    if write_context:
        from somactl.config.model import ConfigFile
        from somactl.config.settings import (
            default_config_path,
            load_config,
            upsert_context,
        )

        cfg_path = default_config_path(env)
        current: ConfigFile = load_config(cfg_path)[0]
        make_current = current.current_context in (None, CONTEXT)
        context_path = upsert_context(env, CONTEXT, _context_for(info), make_current=make_current)
        data["config"] = str(context_path)
        data["context_is_current"] = make_current or current.current_context == CONTEXT
        info.save()
    timings["total"] = time.monotonic() - began
    return {
        "dir": str(lab_dir),
        "started": started,
        "already_running": not started,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "kube_api": data["kube"]["url"],
        "kubeconfig": data["kube"]["kubeconfig"],
        "prometheus": info.prometheus_url,
        "tools_api": info.tools_url,
        "github_api": info.github_url,
        "postgres": f"oncall@{info.pg['host']}:{info.pg['port']}/{info.pg['dbname']}",
        "redis": f"{info.redis['host']}:{info.redis['port']}",
        "config": str(context_path) if context_path else None,
        "context": CONTEXT,
        "context_is_current": data.get("context_is_current", False),
        "scenarios": data["scenarios"],
        "metrics_ready": data.get("metrics_ready", True),
    }


def _wait_for_rates(info: LabInfo, deadline: float) -> bool:
    """Wait (bounded by the up deadline) until Prometheus can answer the runbook's rate
    queries for every service: two scrapes of each, so `diagnose` right after `up` sees data."""
    import urllib.parse

    query = urllib.parse.quote("count(sum by (job) (rate(http_requests_total[5m])))")
    url = f"{info.prometheus_url}/api/v1/query?query={query}"
    while time.monotonic() < deadline - 1:
        try:
            result = _http_json(url, timeout=2)["data"]["result"]
            if result and int(float(result[0]["value"][1])) >= len(SERVICES):
                return True
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.5)
    return False


def _pg_max_connections(backends: Any) -> int:
    import psycopg

    with psycopg.connect(backends.postgres.superuser_dsn, connect_timeout=5) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    return int(row[0]) if row else 0


def _reload_jobs(info: LabInfo, jobs: Mapping[str, list[str]]) -> None:
    from somactl.lab.runtime.prometheus import render_config

    prom_dir = info.dir / BACKENDS_DIR / "prometheus"
    config = prom_dir / "prometheus.yml"
    if not config.exists():
        return
    from somactl.lab.runtime.backends import POSTGRES_JOB, REDIS_JOB
    from somactl.lab.runtime.prometheus import ScrapeJob, normalise_jobs

    b = info.data["backends"]
    all_jobs = [
        ScrapeJob(POSTGRES_JOB, (b["postgres_exporter"]["target"],)),
        ScrapeJob(REDIS_JOB, (b["redis_exporter"]["target"],)),
        *normalise_jobs(jobs),
    ]
    text = config.read_text()
    interval = "2s"
    for line in text.splitlines():
        if "scrape_interval:" in line:
            interval = line.split(":", 1)[1].strip()
            break
    config.write_text(render_config(all_jobs, interval))
    procs.http_post(f"{info.prometheus_url}/-/reload", timeout=5)


def _stop_named(lab_dir: Path, name: str) -> None:
    state = _state(lab_dir)
    for rec in state.records():
        if rec.name == name:
            procs.stop_recorded(state, rec)


def down(lab_dir: Path) -> dict[str, Any]:
    """Stop everything the lab started (by pid, never a stranger), even a half-started lab."""
    from somactl.lab.runtime.backends import stop_all

    stopped: dict[str, str] = {}
    state = _state(lab_dir)
    for name, outcome in procs.stop_state(state).items():
        stopped[name] = str(outcome)
    for name, outcome in stop_all(lab_dir / BACKENDS_DIR / "state.json").items():
        stopped[name] = str(outcome)
    try:
        info = load(lab_dir)
        info.data["scenarios"] = []
        info.data.pop("backends", None)
        info.data.pop("services", None)
        info.save()
    except LabNotRunningError:
        pass
    return {"dir": str(lab_dir), "stopped": stopped}


def reset(
    lab_dir: Path, *, env: Mapping[str, str], tools_port: int = DEFAULT_TOOLS_PORT
) -> dict[str, Any]:
    """Down, wipe the lab dir (the cluster's snapshot included), up from the seed."""
    down(lab_dir)
    if (lab_dir / INFO_FILE).exists() or (lab_dir / STATE_FILE).exists():
        shutil.rmtree(lab_dir, ignore_errors=True)
    return up(lab_dir, env=env, tools_port=tools_port)


def env_exports(lab_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The variables that point a shell's kubectl and somactl at the lab."""
    info = load(lab_dir)
    out = {"KUBECONFIG": info.data["kube"]["kubeconfig"], "SOMACTL_CONTEXT": CONTEXT}
    if env.get("SOMACTL_CONFIG"):
        out["SOMACTL_CONFIG"] = env["SOMACTL_CONFIG"]
    if env.get("SOMACTL_STATE_DIR"):
        out["SOMACTL_STATE_DIR"] = env["SOMACTL_STATE_DIR"]
    return out


def require_running(lab_dir: Path) -> LabInfo:
    info = load(lab_dir)
    dead = [r.name for r in records(lab_dir) if not procs.record_alive(r)]
    if dead:
        raise LabNotRunningError(
            f"lab in {lab_dir} is not fully running (down: {', '.join(dead)})",
            "run `somactl lab up` to start what is missing",
        )
    if not records(lab_dir):
        raise LabNotRunningError(f"no lab processes recorded in {lab_dir}")
    return info


def check_scenario(name: str) -> None:
    from somactl.lab.scenarios import SCENARIOS

    if name not in SCENARIOS:
        raise UsageError(
            f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}",
            "`somactl lab break --list` explains each",
        )


def url_error_text(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return type(exc).__name__
