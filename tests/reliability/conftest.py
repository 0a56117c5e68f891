"""The fault matrix's world: the session's lab with a fault proxy in front of each backend.

`faulted` (module-scoped, on the shared `lab` fixture: no extra lab) puts one
tests/helpers/faultproxy.FaultProxy, in pass mode, in front of each of the six backends
(Kubernetes API, Postgres, Redis, Prometheus, tools API, GitHub) and points somactl at the
proxies through SOMACTL_* variables; a test flips one proxy's mode for its runs.

"Nothing changed or was lost" is witnessed three ways (`Faulted.unchanged`): the simulated API
server's request log has no mutating request since the mark, three planted Postgres sessions
(idle, idle in transaction) are alive with the same (pid, backend_start), and planted Redis keys
keep their values and TTLs (and no FLUSHALL/FLUSHDB ran). Every run's stdout and stderr are also
scanned for the lab's real secrets (the oncall passwords, the GitHub token).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import wait_until
from tests.helpers.faultproxy import FaultProxy
from tests.lab_fixture import Lab

NAMESPACE = "somagent-production"
BACKENDS = ("kube", "postgres", "redis", "prometheus", "tools", "github")
# which diagnose checks each backend answers (gateway-api's diagnosis touches all six)
CHECKS: dict[str, set[str]] = {
    "kube": {"k8s.pods", "k8s.logs", "k8s.rollout-history", "k8s.recent-rollouts"},
    "postgres": {"db.connectivity", "db.activity", "db.slow-queries"},
    "redis": {"redis.ping", "redis.memory"},
    "prometheus": {
        "prom.availability",
        "prom.error-rate",
        "prom.p95-latency",
        "prom.gateway-500-rate",
        "k8s.memory",
    },
    "tools": {"tools.health", "tools.recent"},
    "github": {"tools.rate-limit"},
}
# the checks a diagnosis of gateway-api is judged by (its own and its dependencies', Postgres and
# Redis): the rest (tool adapters, GitHub, the namespace's rollouts) only shows as elsewhere
# (written out, not computed by ops.plan.own_checks: the oracle must not be the code under test)
GATEWAY_JUDGED: frozenset[str] = frozenset(
    {
        "k8s.pods", "k8s.logs", "k8s.rollout-history", "k8s.memory",
        "prom.up", "prom.availability", "prom.error-rate", "prom.p95-latency",
        "prom.gateway-500-rate",
        "db.connectivity", "db.activity", "db.slow-queries",
        "redis.ping", "redis.memory",
    }
)  # fmt: skip
REDIS_PREFIX = "reliability:witness:"


@dataclass
class Run:
    argv: tuple[str, ...]
    rc: int
    out: str
    err: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.out)

    def statuses(self) -> dict[str, str]:
        return {c["id"]: c["status"] for c in self.json()["data"]["checks"]}

    def checks(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.json()["data"]["checks"]}

    def __str__(self) -> str:
        return (
            f"somactl {' '.join(self.argv)}: rc={self.rc} in {self.seconds:.2f}s\n"
            f"stdout: {self.out[-1200:]}\nstderr: {self.err[-1200:]}"
        )


@dataclass
class Witness:
    """What must survive any fault: planted sessions and keys, a quiet API server log."""

    sessions: list[Any] = field(default_factory=list)  # psycopg connections held open
    pids: dict[int, str] = field(default_factory=dict)  # pid -> backend_start
    keys: dict[str, str] = field(default_factory=dict)
    flushes: int = 0
    sim_seq: int = 0


@dataclass
class Faulted:
    lab: Lab
    proxies: dict[str, FaultProxy]
    env: dict[str, str]
    secrets: list[str]
    witness: Witness
    dir: Path

    def somactl(self, *argv: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Run:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "somactl", *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            check=False,
        )
        run = Run(tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
        for secret in self.secrets:
            assert secret not in run.out + run.err, f"a lab secret was printed\n{run}"
        assert "Traceback" not in run.err or "--debug" in argv, str(run)
        return run

    def together(self, *argvs: tuple[str, ...], env: Mapping[str, str] | None = None) -> list[Run]:
        """Run several command lines at once (each is its own process with its own deadline)."""
        with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
            return list(pool.map(lambda a: self.somactl(*a, env=env), argvs))

    def mark(self) -> None:
        self.witness.sim_seq = _sim_seq(self.lab)
        # the idle-in-transaction witness starts a fresh transaction on the same session (same
        # pid and backend_start): left open for the whole module it crossed the runbook's 300 s
        # idle-in-transaction line mid-test and db.activity flipped from ok to warn
        in_xact = self.witness.sessions[1]
        in_xact.commit()
        in_xact.execute("SELECT 1")

    def unchanged(self) -> None:
        """Nothing changed or was lost since the last mark (see the module docstring)."""
        writes = [
            f"{r['method']} {r['path']}"
            for r in _sim_requests(self.lab, self.witness.sim_seq)
            if r["mutating"]
        ]
        assert writes == [], f"mutating requests reached the API server: {writes}"
        import psycopg

        with psycopg.connect(self.lab.info.pg_dsn("postgres"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = ANY(%s)",
                (list(self.witness.pids),),
            ).fetchall()
        assert dict(rows) == self.witness.pids, "a planted Postgres session was ended"
        client = _redis(self.lab)
        try:
            now = {k: client.get(k) for k in self.witness.keys}
            assert now == self.witness.keys, "planted Redis keys changed"
            assert all(client.ttl(k) > 0 for k in self.witness.keys)
            assert _flushes(client) == self.witness.flushes, "a FLUSHALL/FLUSHDB ran"
        finally:
            client.close()


def _sim_requests(lab: Lab, since: int) -> list[dict[str, Any]]:
    url = f"{lab.info.kube_url}/_sim/requests?since={since}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the lab, on loopback
        items: list[dict[str, Any]] = json.loads(resp.read())["items"]
    return items


def _sim_seq(lab: Lab) -> int:
    items = _sim_requests(lab, 0)
    return int(items[-1]["seq"]) if items else 0


def _redis(lab: Lab) -> Any:
    import redis

    r = lab.info.redis
    return redis.Redis(
        host=r["host"],
        port=int(r["port"]),
        username="oncall",
        password=lab.info.redis_password("oncall"),
        decode_responses=True,
        socket_timeout=5,
    )


def _flushes(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("flushall", "flushdb"))


def proxy_env(lab: Lab, proxies: dict[str, FaultProxy], root: Path) -> dict[str, str]:
    from somactl.lab.kube import write_kubeconfig

    kubeconfig = write_kubeconfig(
        root / "kubeconfig-proxied", f"http://{proxies['kube'].address}", NAMESPACE
    )
    pg = lab.info.pg
    return {
        "SOMACTL_KUBECONFIG": str(kubeconfig),
        "SOMACTL_KUBE_CONTEXT": "lab",
        "SOMACTL_PG_DSN": (
            f"host=127.0.0.1 port={proxies['postgres'].port} user=oncall dbname={pg['dbname']}"
        ),
        "SOMACTL_REDIS_URL": f"redis://oncall@127.0.0.1:{proxies['redis'].port}/0",
        "SOMACTL_PROMETHEUS_URL": f"http://{proxies['prometheus'].address}",
        "SOMACTL_TOOLS_URL": f"http://{proxies['tools'].address}",
        "SOMACTL_GITHUB_URL": f"http://{proxies['github'].address}",
    }


def _upstreams(lab: Lab) -> dict[str, tuple[str, int]]:
    info = lab.info

    def hp(url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    return {
        "kube": hp(info.kube_url),
        "postgres": (info.pg["host"], int(info.pg["port"])),
        "redis": (info.redis["host"], int(info.redis["port"])),
        "prometheus": hp(info.prometheus_url),
        "tools": hp(info.tools_url),
        "github": hp(info.github_url),
    }


def _plant(lab: Lab, witness: Witness) -> None:
    import psycopg

    dsn = lab.info.pg_dsn("somagent").replace("somactl-lab", "reliability-witness")
    idle = psycopg.connect(dsn, autocommit=True)
    in_xact = psycopg.connect(dsn)
    in_xact.execute("SELECT 1")  # BEGIN ... and leave it open: idle in transaction
    second = psycopg.connect(dsn, autocommit=True)
    witness.sessions = [idle, in_xact, second]
    for conn in witness.sessions:
        pid = conn.info.backend_pid
        with psycopg.connect(lab.info.pg_dsn("postgres"), autocommit=True) as su:
            row = su.execute(
                "SELECT backend_start::text FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
        assert row is not None
        witness.pids[pid] = row[0]
    client = _redis(lab)
    try:
        for i in range(5):
            key = f"{REDIS_PREFIX}{i}"
            client.set(key, f"value-{i}", ex=3600)
            witness.keys[key] = f"value-{i}"
        witness.flushes = _flushes(client)
    finally:
        client.close()


def healthy_enough(lab: Lab, env: Mapping[str, str]) -> dict[str, str]:
    """Diagnose gateway-api through the proxies until every check answers (none unknown)."""

    def attempt() -> dict[str, str] | None:
        proc = subprocess.run(
            [sys.executable, "-m", "somactl", "-o", "json", "diagnose", "gateway-api"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(env),
            check=False,
        )
        st = {c["id"]: c["status"] for c in json.loads(proc.stdout)["data"]["checks"]}
        return st if "unknown" not in st.values() else None

    return wait_until(attempt, timeout=120, interval=2.0, message="every check answers")


@pytest.fixture(scope="module")
def faulted(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulted]:
    root = tmp_path_factory.mktemp("reliability")
    lab.heal()
    proxies = {name: FaultProxy(up, latency=0.05) for name, up in _upstreams(lab).items()}
    env = {**lab.env, **proxy_env(lab, proxies, root)}
    info = lab.info
    secrets = [
        Path(info.pg["roles"]["oncall"]).read_text().strip(),
        info.redis_password("oncall"),
        (info.dir / "secrets" / "github.token").read_text().strip(),
    ]
    assert all(len(s) >= 8 for s in secrets)
    witness = Witness()
    try:
        healthy_enough(lab, env)
        _plant(lab, witness)
        yield Faulted(lab, proxies, env, secrets, witness, root)
    finally:
        for conn in witness.sessions:
            conn.close()
        for p in proxies.values():
            p.close()
        client = _redis(lab)
        try:
            for key in witness.keys:
                client.delete(key)
        finally:
            client.close()


@pytest.fixture
def world(faulted: Faulted) -> Iterator[Faulted]:
    """`faulted` with every proxy back in pass mode, a fresh mark, and the witness checked after
    the test (nothing changed or was lost, whatever the test broke)."""
    for p in faulted.proxies.values():
        p.mode = "pass"
    faulted.mark()
    yield faulted
    for p in faulted.proxies.values():
        p.mode = "pass"
    faulted.unchanged()
