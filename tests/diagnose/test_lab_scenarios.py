"""Each lab incident diagnosed with the right finding, verdict and suggested severity, against the
whole lab (simulated Kubernetes API, stand-ins, real Postgres, Redis and Prometheus); a healthy
lab is all ok; a blackholed or dripping backend ends the diagnosis at its deadline; planted
secrets never reach any output. Tests heal what they break."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.helpers import wait_until
from tests.helpers.faultproxy import FaultProxy
from tests.lab_fixture import Lab

pytestmark = pytest.mark.integration

HEALTHY = (
    "gateway-api",
    "orchestrator",
    "kamachiq-service",
    "postgres",
    "redis",
    "tool-service",
    "github",
)
PG_SENTINEL = "s3ntinel-PG-pass-9Q2x"
REDIS_SENTINEL = "s3ntinel-REDIS-pass-7Zk1"
GH_SENTINEL = "ghp_s3ntinelGitHubToken0000000000009"


def diagnose(lab: Lab, service: str, *extra: str, **env: str) -> tuple[int, dict[str, Any]]:
    r = lab.somactl("-o", "json", "diagnose", service, *extra, env=env or None)
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout)


def checks(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in env["data"]["checks"]}


def until(lab: Lab, service: str, want: Any, *extra: str, timeout: float = 90) -> dict[str, Any]:
    """Diagnose until `want(rc, envelope)` holds (Prometheus needs a few scrapes)."""
    last: list[Any] = []

    def attempt() -> dict[str, Any] | None:
        rc, env = diagnose(lab, service, *extra)
        last[:] = [rc, env["data"]["verdict"]["summary"]]
        return env if want(rc, env) else None

    try:
        result = wait_until(attempt, timeout=timeout, interval=2.0, message=f"diagnose {service}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {last}") from None
    return result


@pytest.fixture(scope="module")
def ready(lab: Lab) -> Lab:
    lab.heal()
    until(lab, "gateway-api", lambda rc, env: rc == 0, timeout=120)
    return lab


def test_a_healthy_lab_is_all_ok(ready: Lab) -> None:
    for service in HEALTHY:
        env = until(ready, service, lambda rc, env: rc == 0)
        bad = {c["id"]: c["summary"] for c in env["data"]["checks"] if c["status"] != "ok"}
        assert bad == {}
        v = env["data"]["verdict"]
        assert v["severity"] is None and v["scenario"] is None and v["next_steps"] == []
        assert v["summary"] == f"{service}: all its checks ok"
        assert env["exit_code"] == 0


def status_code_of_a_healthy_lab(lab: Lab) -> int:
    """0, or 9 while the lab's cluster has no tool-service Deployment (the runbook's tools API
    workload): its pods cannot be read, so status is partial."""
    url = (
        f"{lab.info.kube_url}/apis/apps/v1/namespaces/somagent-production/deployments/tool-service"
    )
    try:
        urllib.request.urlopen(url, timeout=5).close()  # noqa: S310 - loopback
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return 9
    return 0


def test_status_of_a_healthy_lab(ready: Lab) -> None:
    r = ready.somactl("-o", "json", "status")
    assert r.returncode == status_code_of_a_healthy_lab(ready)
    rows = {row["service"]: row for row in json.loads(r.stdout)["data"]["services"]}
    for service in ("gateway-api", "orchestrator", "kamachiq-service", "postgres", "redis"):
        assert rows[service]["status"] == "ok", rows[service]
    assert rows["gateway-api"]["pods"] == "3/3"
    assert rows["gateway-api"]["up"] == 1.0
    assert 0 <= rows["gateway-api"]["error_rate"] < 0.01
    assert rows["github"]["health"] == "healthy"


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    made: list[FaultProxy] = []
    yield made
    for p in made:
        p.close()


def test_a_blackholed_database_ends_at_the_deadline_and_reports_the_rest(
    ready: Lab, proxies: list[FaultProxy]
) -> None:
    pg = ready.info.pg
    p = FaultProxy((pg["host"], int(pg["port"])), mode="blackhole")
    proxies.append(p)
    dsn = f"host=127.0.0.1 port={p.port} user=oncall dbname={pg['dbname']}"
    t0 = time.monotonic()
    r = ready.somactl(
        "-o", "json", "--timeout", "3s", "diagnose", "gateway-api", env={"SOMACTL_PG_DSN": dsn}
    )
    wall = time.monotonic() - t0
    assert wall <= 3.2, f"took {wall:.2f}s"
    assert r.returncode == 9
    st = {c["id"]: c["status"] for c in json.loads(r.stdout)["data"]["checks"]}
    assert {k: v for k, v in st.items() if not k.startswith("db.")} == {
        k: "ok" for k in st if not k.startswith("db.")
    }
    assert {st["db.connectivity"], st["db.activity"], st["db.slow-queries"]} == {"unknown"}


def test_a_dripping_kubernetes_api_ends_at_the_deadline(
    ready: Lab, proxies: list[FaultProxy], tmp_path: Path
) -> None:
    from somactl.lab.kube import write_kubeconfig

    kube = urlsplit(ready.info.kube_url)
    p = FaultProxy((kube.hostname or "127.0.0.1", kube.port or 80), mode="drip")
    proxies.append(p)
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", f"http://{p.address}", "somagent-production"
    )
    t0 = time.monotonic()
    r = ready.somactl(
        "-o",
        "json",
        "--timeout",
        "4s",
        "diagnose",
        "gateway-api",
        env={"SOMACTL_KUBECONFIG": str(kubeconfig), "SOMACTL_KUBE_CONTEXT": "lab"},
    )
    wall = time.monotonic() - t0
    assert wall <= 4.2, f"took {wall:.2f}s"
    assert r.returncode == 9
    st = {c["id"]: c["status"] for c in json.loads(r.stdout)["data"]["checks"]}
    assert st["k8s.pods"] == "unknown"
    assert st["db.connectivity"] == st["redis.ping"] == st["prom.error-rate"] == "ok"


def test_planted_secrets_never_reach_any_output(ready: Lab, tmp_path: Path) -> None:
    """Wrong password and token, from env vars holding sentinels: exit 7 naming each backend,
    and no sentinel in stdout/stderr (table, json, --debug) or in the evidence bundle."""
    config = yaml.safe_load(Path(ready.env["SOMACTL_CONFIG"]).read_text())
    leaky = json.loads(json.dumps(config["contexts"]["lab"]))
    leaky["postgres"]["password"] = {"env": "LEAKY_PG"}
    leaky["redis"]["password"] = {"env": "LEAKY_REDIS"}
    leaky["github"]["token"] = {"env": "LEAKY_GH"}
    config["contexts"]["leaky"] = leaky
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {
        "SOMACTL_CONFIG": str(cfg),
        "LEAKY_PG": PG_SENTINEL,
        "LEAKY_REDIS": REDIS_SENTINEL,
        "LEAKY_GH": GH_SENTINEL,
    }
    snap = tmp_path / "snap"
    runs = [
        ready.somactl("--context", "leaky", "diagnose", "gateway-api", env=env),
        ready.somactl("--context", "leaky", "--debug", "diagnose", "gateway-api", env=env),
        ready.somactl(
            "--context",
            "leaky",
            "-o",
            "json",
            "diagnose",
            "gateway-api",
            "--snapshot",
            str(snap),
            env=env,
        ),
        ready.somactl("--context", "leaky", "-o", "yaml", "--debug", "db", "pool", env=env),
        ready.somactl("--context", "leaky", "--debug", "redis", "info", env=env),
        ready.somactl("--context", "leaky", "--debug", "tools", "rate-limit", "github", env=env),
        ready.somactl("--context", "leaky", "--debug", "status", env=env),
    ]
    assert [r.returncode for r in runs] == [7, 7, 7, 7, 7, 7, status_code_of_a_healthy_lab(ready)]
    text = "".join(r.stdout + r.stderr for r in runs)
    for sentinel in (PG_SENTINEL, REDIS_SENTINEL, GH_SENTINEL):
        assert sentinel not in text
    pg = ready.info.pg
    assert (
        f"postgres (oncall@{pg['host']}:{pg['port']}/{pg['dbname']}): authentication failed" in text
    )
    assert "redis (127.0.0.1:" in text and "): authentication failed" in text
    assert "GitHub: HTTP 401" in text
    files = [f for f in snap.rglob("*") if f.is_file()]
    assert len(files) > 10
    for f in files:
        data = f.read_bytes()
        for sentinel in (PG_SENTINEL, REDIS_SENTINEL, GH_SENTINEL):
            assert sentinel.encode() not in data, f
    shutil.rmtree(snap)


# -- the incidents -------------------------------------------------------------------------------


@pytest.fixture
def broken(ready: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    ready.break_scenario(request.param)
    try:
        yield ready
    finally:
        ready.heal()


def _level(env: dict[str, Any]) -> str | None:
    sev = env["data"]["verdict"]["severity"]
    return sev["level"] if sev else None


def _commands(env: dict[str, Any]) -> list[str]:
    return [s["command"] for s in env["data"]["verdict"]["next_steps"] if s["command"]]


@pytest.mark.parametrize("broken", ["gateway-down"], indirect=True)
def test_gateway_down(broken: Lab) -> None:
    env = until(
        broken,
        "gateway-api",
        lambda rc, e: (
            rc == 11 and _level(e) == "P0" and checks(e)["k8s.pods"]["facts"]["crashloop"]
        ),
    )
    v = env["data"]["verdict"]
    assert (
        v["scenario"]["id"] == "gateway-api-down" and v["scenario"]["title"] == "Gateway API Down"
    )
    assert v["severity"]["response"] == "Page immediately"
    assert v["worst_checks"][0] == "k8s.pods"
    assert checks(env)["k8s.pods"]["summary"].startswith("0/3 ready: no pod is ready")
    assert _commands(env)[0] == "somactl mitigate rollback gateway-api"
    assert "crash-looping" in v["next_steps"][0]["why"]


@pytest.mark.parametrize("broken", ["db-pool-exhaustion"], indirect=True)
def test_db_pool_exhaustion(broken: Lab) -> None:
    env = until(broken, "postgres", lambda rc, e: rc == 11)
    pool = checks(env)["db.activity"]
    assert pool["status"] == "critical"
    assert "left for non-superusers" in pool["summary"]
    assert pool["evidence"]["by_state"]["idle in transaction"] >= 20
    v = env["data"]["verdict"]
    assert v["scenario"]["id"] == "database-performance"
    assert _level(env) == "P1"
    assert any(
        re.fullmatch(
            r"somactl mitigate kill-queries --older-than \d+s --state idle-in-transaction", c
        )
        for c in _commands(env)
    ), _commands(env)


@pytest.mark.parametrize("broken", ["slow-queries"], indirect=True)
def test_slow_queries(broken: Lab) -> None:
    env = until(
        broken,
        "postgres",
        lambda rc, e: (
            rc in (10, 11)
            and checks(e)["db.slow-queries"]["evidence"]["blocking_chains"]
            and checks(e)["db.slow-queries"]["signals"]["long_running_queries"] >= 2
        ),
        "--long-running",
        "1s",
    )
    slow = checks(env)["db.slow-queries"]
    assert slow["status"] in ("warn", "critical")
    assert slow["signals"]["long_running_queries"] >= 2
    chain = slow["evidence"]["blocking_chains"][0]
    assert chain["blocker"]["application"] == "somagent-worker"
    assert env["data"]["verdict"]["scenario"]["id"] == "database-performance"
    assert _level(env) == "P1"
    assert any(
        c.startswith("somactl mitigate kill-queries --older-than 1s") for c in _commands(env)
    )


@pytest.mark.parametrize("broken", ["redis-memory-pressure"], indirect=True)
def test_redis_memory_pressure(broken: Lab) -> None:
    env = until(broken, "redis", lambda rc, e: rc == 11)
    mem = checks(env)["redis.memory"]
    assert mem["status"] == "critical"
    assert "policy noeviction" in mem["summary"]
    assert mem["signals"]["redis_memory_ratio"] >= 0.95
    # a data store's memory is its data: Redis's own scenario, never the pods' memory leak
    assert env["data"]["verdict"]["scenario"]["id"] == "redis-memory-pressure"
    assert "memory-leak" not in {s["id"] for s in env["data"]["verdict"]["other_scenarios"]}
    assert _level(env) == "P2"
    assert "somactl mitigate redis-flush" in _commands(env)


@pytest.mark.parametrize("broken", ["github-rate-limited"], indirect=True)
def test_github_rate_limited(broken: Lab) -> None:
    env = until(broken, "github", lambda rc, e: rc == 11 and _level(e) == "P1")
    assert checks(env)["tools.rate-limit"]["status"] == "critical"
    assert "GitHub rate limit exhausted until" in checks(env)["tools.rate-limit"]["summary"]
    assert env["data"]["verdict"]["scenario"]["id"] == "tool-adapter-failures"
    assert any(
        c.startswith("somactl mitigate circuit-breaker") and c.endswith(" github")
        for c in _commands(env)
    )


@pytest.mark.parametrize("broken", ["tool-adapter-failures"], indirect=True)
def test_tool_adapter_failures(broken: Lab) -> None:
    env = until(
        broken,
        "tool-service",
        lambda rc, e: (
            rc == 11 and checks(e)["tools.recent"]["signals"].get("adapter_failure_ratio", 0) > 0.5
        ),
    )
    health = checks(env)["tools.health"]
    assert health["status"] == "critical"
    assert set(health["facts"]["failing_adapters"]) == {"github", "notion", "slack"}
    assert env["data"]["verdict"]["scenario"]["id"] == "tool-adapter-failures"
    assert _level(env) == "P1"
    cmds = _commands(env)
    for tool in ("github", "notion", "slack"):
        assert any(
            c.startswith("somactl mitigate circuit-breaker") and c.endswith(f" {tool}")
            for c in cmds
        )


@pytest.mark.parametrize("broken", ["memory-leak"], indirect=True)
def test_memory_leak(broken: Lab) -> None:
    # let the simulated pods leak until their limit: ten minutes of simulated time
    req = urllib.request.Request(  # noqa: S310 - loopback
        f"{broken.info.kube_url}/_sim/tick?seconds=900&step=5", method="POST"
    )
    urllib.request.urlopen(req, timeout=30).close()  # noqa: S310 - loopback
    env = until(
        broken,
        "orchestrator",
        lambda rc, e: rc in (10, 11) and checks(e)["k8s.pods"]["facts"].get("oom_killed"),
    )
    pods = checks(env)["k8s.pods"]
    assert "OOMKilled in the last hour" in pods["summary"]
    assert env["data"]["verdict"]["scenario"]["id"] == "memory-leak"
    assert _level(env) == "P2"
    assert "somactl mitigate restart orchestrator" in _commands(env)


@pytest.mark.parametrize("broken", ["high-load"], indirect=True)
def test_high_load(broken: Lab) -> None:
    env = until(
        broken, "gateway-api", lambda rc, e: checks(e)["prom.p95-latency"]["status"] == "critical"
    )
    assert checks(env)["prom.p95-latency"]["evidence"]["value"] > 5
    v = env["data"]["verdict"]
    assert _level(env) == "P1"
    assert v["severity"]["rule"]["id"] == "performance-degradation"
    assert "somactl mitigate scale gateway-api --replicas 10" in _commands(env)
    assert checks(env)["prom.p95-latency"]["evidence"]["series"][-1] > 5  # the 30-min shape
