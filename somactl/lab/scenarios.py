"""The runbook's incidents, made real in the lab: break, heal, and "is it fixed yet?".

Every break goes through the same interfaces production would: a bad deploy is a PATCH of the
deployment's image through the Kubernetes API; pool exhaustion is real idle-in-transaction
sessions; slow queries are real pg_sleep queries and lock chains; memory pressure is real keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from somactl.lab import stack
from somactl.lab.runtime import procs
from somactl.lab.stack import NAMESPACE, LabInfo, _http_json

BEHAVIOR_ANNOTATION = "somactl.lab/behavior"
FILLER_PREFIX = "lab:cache:blob:"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    runbook_scenario: str  # the runbooks.yaml scenario it exercises
    description: str
    fix: str  # what a responder does (somactl commands)
    do_break: Callable[[LabInfo], dict[str, Any]]
    do_heal: Callable[[LabInfo], None]
    fixed: Callable[[LabInfo], tuple[bool, str]]


# -- Kubernetes helpers (plain HTTP to the simulator) -------------------------------------------


def _deploy_path(info: LabInfo, name: str) -> str:
    return f"{info.kube_url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"


def _smp(info: LabInfo, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    import json
    import urllib.request

    req = urllib.request.Request(  # noqa: S310 - loopback only
        _deploy_path(info, name), data=json.dumps(patch).encode(), method="PATCH"
    )
    req.add_header("Content-Type", "application/strategic-merge-patch+json")
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback only
        result: dict[str, Any] = json.loads(resp.read())
    return result


def _deployment(info: LabInfo, name: str) -> dict[str, Any]:
    result: dict[str, Any] = _http_json(_deploy_path(info, name))
    return result


def _set_image(info: LabInfo, name: str, image: str, cause: str) -> dict[str, Any]:
    dep = _deployment(info, name)
    containers = dep["spec"]["template"]["spec"]["containers"]
    return _smp(
        info,
        name,
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": c["name"]} for c in containers],
                        "containers": [{"name": containers[0]["name"], "image": image}],
                    }
                }
            },
        },
    )


def _ready(info: LabInfo, name: str) -> tuple[bool, str]:
    dep = _deployment(info, name)
    want = int(dep["spec"].get("replicas", 1))
    st = dep.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    ok = ready >= want and updated >= want and int(st.get("replicas") or 0) == want
    return ok, f"{name}: {ready}/{want} ready, {updated} updated"


# -- gateway-down ------


def _gateway_break(info: LabInfo) -> dict[str, Any]:
    dep = _deployment(info, "gateway-api")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    repo, _, tag = image.rpartition(":")
    tag = tag.removesuffix("-crashloop")
    # Every bad deploy is a new build, as in real life: never the template of an earlier
    # revision (re-applying one would look like a rollback to `mitigate rollback`'s guard).
    build = int(info.data.get("bad_builds", 0)) + 1
    info.data["bad_builds"] = build
    base = tag.split("-b", 1)[0]
    bad = f"{repo}:{base}-b{build}-crashloop"
    tag = base
    info.data.setdefault("healthy_images", {})["gateway-api"] = f"{repo}:{tag}"
    # The release also switched the rollout strategy to Recreate (a migration "needed" it), so
    # every old pod is gone before the new ones crash: a complete outage, not a partial one.
    _smp(
        info,
        "gateway-api",
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        },
    )
    _set_image(info, "gateway-api", bad, f"deploy gateway-api {base}-b{build} (SOMA-447)")
    return {"image": bad, "strategy": "Recreate"}


def _gateway_heal(info: LabInfo) -> None:
    good = info.data.get("healthy_images", {}).get("gateway-api")
    dep = _deployment(info, "gateway-api")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    if good and image != good and image.endswith("-crashloop"):
        _set_image(info, "gateway-api", good, "lab heal: back to a healthy image")
    if (dep["spec"].get("strategy") or {}).get("type") == "Recreate":
        _smp(
            info,
            "gateway-api",
            {
                "spec": {
                    "strategy": {
                        "$retainKeys": ["type", "rollingUpdate"],
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    }
                }
            },
        )


def _gateway_fixed(info: LabInfo) -> tuple[bool, str]:
    dep = _deployment(info, "gateway-api")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    ok, why = _ready(info, "gateway-api")
    if image.endswith("-crashloop"):
        return False, f"gateway-api still runs {image.rsplit('/', 1)[-1]}"
    return ok, why


# -- memory-leak ------


def _leak_break(info: LabInfo) -> dict[str, Any]:
    _smp(
        info,
        "orchestrator",
        {"spec": {"template": {"metadata": {"annotations": {BEHAVIOR_ANNOTATION: "leak"}}}}},
    )
    info.data["leak_since"] = time.time()
    return {"service": "orchestrator", "behavior": "leak"}


def _leak_heal(info: LabInfo) -> None:
    _smp(
        info,
        "orchestrator",
        {"spec": {"template": {"metadata": {"annotations": {BEHAVIOR_ANNOTATION: None}}}}},
    )


def _leak_fixed(info: LabInfo) -> tuple[bool, str]:
    dep = _deployment(info, "orchestrator")
    ann = (dep["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    restarted = ann.get("kubectl.kubernetes.io/restartedAt")
    if ann.get(BEHAVIOR_ANNOTATION) == "leak" and not restarted:
        return False, "orchestrator pods still leak and were not restarted"
    ok, why = _ready(info, "orchestrator")
    return ok, why


# -- high-load ------


def _load_break(info: LabInfo) -> dict[str, Any]:
    _http_json(info.service_url("gateway-api") + "/_lab/mode", "POST", {"load": "high"})
    return {"service": "gateway-api", "load": "high"}


def _load_heal(info: LabInfo) -> None:
    _http_json(info.service_url("gateway-api") + "/_lab/mode", "POST", {"load": "normal"})


def _load_fixed(info: LabInfo) -> tuple[bool, str]:
    dep = _deployment(info, "gateway-api")
    ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
    mode = _http_json(info.service_url("gateway-api") + "/_lab/mode")
    relief = mode.get("relief_replicas") or 10
    if mode.get("load") == "normal":
        return True, "gateway-api load is normal"
    return ready >= relief, f"gateway-api has {ready} ready replicas (load relieved at {relief})"


# -- tools ------

FAILING_ADAPTERS = ("github", "notion", "slack")


def _tools_break(info: LabInfo) -> dict[str, Any]:
    for tool in FAILING_ADAPTERS:
        _http_json(f"{info.tools_url}/_lab/tools/{tool}/fail", "POST", {"error_rate": 0.9})
    return {"failing": list(FAILING_ADAPTERS)}


def _tools_heal(info: LabInfo) -> None:
    for tool in FAILING_ADAPTERS:
        _http_json(f"{info.tools_url}/_lab/tools/{tool}/recover", "POST", {})
        _http_json(f"{info.tools_url}/tools/{tool}/circuit-breaker/disable", "POST", {})


def _tools_fixed(info: LabInfo) -> tuple[bool, str]:
    open_or_ok = []
    for tool in FAILING_ADAPTERS:
        breaker = _http_json(f"{info.tools_url}/tools/{tool}/circuit-breaker")
        health = _tools_health(info, tool)
        open_or_ok.append(breaker.get("state") == "open" or health == "healthy")
    n = sum(open_or_ok)
    return n == len(FAILING_ADAPTERS), f"{n}/{len(FAILING_ADAPTERS)} failing adapters contained"


def _tools_health(info: LabInfo, tool: str) -> str:
    import urllib.error

    try:
        return str(_http_json(f"{info.tools_url}/tools/{tool}/health").get("status"))
    except urllib.error.HTTPError as exc:  # 503 carries the body too
        return "down" if exc.code == 503 else f"HTTP {exc.code}"


def _github_break(info: LabInfo) -> dict[str, Any]:
    result: dict[str, Any] = _http_json(
        f"{info.github_url}/_lab/exhaust", "POST", {"resource": "core", "reset_in_minutes": 40}
    )
    return result


def _github_heal(info: LabInfo) -> None:
    _http_json(f"{info.github_url}/_lab/restore", "POST", {})
    _http_json(f"{info.tools_url}/tools/github/circuit-breaker/disable", "POST", {})


def _github_fixed(info: LabInfo) -> tuple[bool, str]:
    breaker = _http_json(f"{info.tools_url}/tools/github/circuit-breaker")
    if breaker.get("state") == "open":
        return True, "github circuit breaker is open until the limit resets"
    core = _http_json(f"{info.github_url}/_lab/state")
    remaining = _github_remaining(core)
    if remaining is not None and remaining > 0:
        return True, f"GitHub core limit has {remaining} calls left"
    return False, "github adapter keeps calling a rate-limited GitHub (breaker closed)"


def _github_remaining(state: Any) -> int | None:
    """`remaining` of the authenticated core bucket in the stand-in's /_lab/state."""
    try:
        return int(state["resources"]["authenticated"]["core"]["remaining"])
    except (KeyError, TypeError, ValueError):
        return None


# -- Postgres ------


def _pg(info: LabInfo, role: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(info.pg_dsn(role), connect_timeout=5, autocommit=True)


def _spawn_pgload(info: LabInfo, name: str, *args: str) -> None:
    procs.spawn(
        name,
        stack._python_argv("-m", "somactl.lab.pgload", *args),
        log_dir=info.dir / "logs",
        state=stack._state(info.dir),
        env={"SOMACTL_LAB_APP_DSN": info.pg_dsn(info.pg["app_user"])},
    )


PGLOAD_APPS = {
    "pool-exhaustion": ["somagent-api"],
    "slow-queries": ["somagent-worker", "somagent-api", "somagent-reports"],
}


def _pool_break(info: LabInfo) -> dict[str, Any]:
    max_conn = int(info.pg.get("max_connections") or 40)
    with _pg(info, info.pg["superuser"]) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
        used = int(row[0]) if row else 0
        reserved_row = conn.execute("SHOW superuser_reserved_connections").fetchone()
        reserved = int(reserved_row[0]) if reserved_row else 3
    # leave two slots, so the on-call role can still connect and fix it
    hold = max(1, max_conn - reserved - used - 2)
    _spawn_pgload(info, "pool-exhaustion", "hold-idle", str(hold))
    _wait_sessions(info, "idle in transaction", hold, 15.0)
    return {"idle_in_transaction_sessions": hold, "max_connections": max_conn}


def _wait_sessions(info: LabInfo, state: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count_sessions(info, state) >= count:
            return
        time.sleep(0.2)


def _count_sessions(info: LabInfo, state: str, extra: str = "") -> int:
    with _pg(info, info.pg["superuser"]) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'somagent' "
            "AND usename = %s AND state = %s" + extra,
            (info.pg["app_user"], state),
        ).fetchone()
    return int(row[0]) if row else 0


def _stop_pgload(info: LabInfo, name: str) -> None:
    """Stop the session holder, then end its sessions: Postgres does not notice a vanished
    client while a backend sits in pg_sleep or a lock wait."""
    stack._stop_named(info.dir, name)
    with _pg(info, info.pg["superuser"]) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'somagent' "
            "AND usename = %s AND pid <> pg_backend_pid() AND application_name = ANY(%s)",
            (info.pg["app_user"], PGLOAD_APPS[name]),
        )


def _pool_fixed(info: LabInfo) -> tuple[bool, str]:
    n = _count_sessions(info, "idle in transaction")
    return n < 3, f"{n} idle-in-transaction application sessions"


def _slow_break(info: LabInfo) -> dict[str, Any]:
    _spawn_pgload(info, "slow-queries", "slow")
    _wait_sessions(info, "active", 4, 15.0)
    return {"lock_chain": "1 holder, 2 waiters", "long_query": "pg_sleep(3600) report"}


def _slow_fixed(info: LabInfo) -> tuple[bool, str]:
    with _pg(info, info.pg["superuser"]) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'somagent' "
            "AND (query ILIKE '%%pg_sleep(3600)%%' AND state = 'active' "
            "OR cardinality(pg_blocking_pids(pid)) > 0) AND pid <> pg_backend_pid()"
        ).fetchone()
    n = int(row[0]) if row else 0
    return n == 0, f"{n} long-running or blocked sessions"


# -- Redis ------


def _redis(info: LabInfo) -> Any:
    import redis

    r = info.redis
    return redis.Redis(
        host=r["host"],
        port=int(r["port"]),
        username="oncall",
        password=info.redis_password("oncall"),
        socket_timeout=5,
        socket_connect_timeout=3,
    )


def _redis_break(info: LabInfo) -> dict[str, Any]:
    client = _redis(info)
    client.config_set("maxmemory-policy", "noeviction")
    maxmem = int(client.config_get("maxmemory")["maxmemory"])
    blob = b"x" * 65536
    i = 0
    pipe = client.pipeline(transaction=False)
    while int(client.info("memory")["used_memory"]) < 0.97 * maxmem:
        for _ in range(32):
            pipe.set(f"{FILLER_PREFIX}{i}", blob)
            i += 1
        try:
            pipe.execute()
        except Exception:  # noqa: BLE001 - OOM from noeviction: we are there
            break
    used = int(client.info("memory")["used_memory"])
    return {"keys": i, "used_memory": used, "maxmemory": maxmem, "policy": "noeviction"}


def _redis_heal(info: LabInfo) -> None:
    client = _redis(info)
    for key in client.scan_iter(match=f"{FILLER_PREFIX}*", count=1000):
        client.unlink(key)
    client.config_set("maxmemory-policy", info.redis.get("maxmemory_policy") or "allkeys-lru")


def _redis_fixed(info: LabInfo) -> tuple[bool, str]:
    client = _redis(info)
    mem = client.info("memory")
    maxmem = int(mem.get("maxmemory") or 0)
    ratio = int(mem["used_memory"]) / maxmem if maxmem else 0.0
    return ratio < 0.8, f"redis memory at {ratio:.0%} of maxmemory"


SCENARIOS: dict[str, Scenario] = {
    s.id: s
    for s in [
        Scenario(
            "gateway-down",
            "Gateway API down after a bad deploy",
            "gateway-api-down",
            "Rolls out gateway-api with a crash-looping image (a new revision with a "
            "change-cause): pods go CrashLoopBackOff, the gateway serves 100% 5xx.",
            "somactl diagnose gateway-api; somactl mitigate rollback gateway-api",
            _gateway_break,
            _gateway_heal,
            _gateway_fixed,
        ),
        Scenario(
            "db-pool-exhaustion",
            "Database connection pool exhausted",
            "database-performance",
            "Opens real application sessions that sit idle in transaction until only two "
            "connection slots are left.",
            "somactl db pool; somactl mitigate kill-queries --state idle-in-transaction "
            "--older-than 30s",
            _pool_break,
            lambda info: _stop_pgload(info, "pool-exhaustion"),
            _pool_fixed,
        ),
        Scenario(
            "slow-queries",
            "Slow queries and a lock chain",
            "database-performance",
            "Runs a transaction holding a row lock inside pg_sleep(3600), two sessions blocked "
            "behind it, and a long-running report query.",
            "somactl db activity; somactl mitigate kill-queries --older-than 30s",
            _slow_break,
            lambda info: _stop_pgload(info, "slow-queries"),
            _slow_fixed,
        ),
        Scenario(
            "redis-memory-pressure",
            "Redis near maxmemory",
            "redis-memory-pressure",
            "Switches Redis to noeviction and fills it with cache keys to about 97% of "
            "maxmemory: writes start failing with OOM.",
            "somactl redis info; somactl mitigate redis-flush",
            _redis_break,
            _redis_heal,
            _redis_fixed,
        ),
        Scenario(
            "github-rate-limited",
            "GitHub adapter rate limited",
            "tool-adapter-failures",
            "Exhausts the GitHub API's core rate limit (reset in 40 minutes): the github "
            "adapter's calls fail with 403 rate limit exceeded.",
            "somactl tools rate-limit github; somactl mitigate circuit-breaker enable github",
            _github_break,
            _github_heal,
            _github_fixed,
        ),
        Scenario(
            "tool-adapter-failures",
            "Most tool adapters failing",
            "tool-adapter-failures",
            "Makes github, notion and slack fail 90% of their calls: more than half of the "
            "workflows' tool calls fail.",
            "somactl tools health; somactl mitigate circuit-breaker enable TOOL",
            _tools_break,
            _tools_heal,
            _tools_fixed,
        ),
        Scenario(
            "memory-leak",
            "Memory leak in the orchestrator",
            "memory-leak",
            "Rolls out orchestrator pods that leak memory until they are OOMKilled and restart.",
            "somactl diagnose orchestrator; somactl mitigate restart orchestrator",
            _leak_break,
            _leak_heal,
            _leak_fixed,
        ),
        Scenario(
            "high-load",
            "High load on the gateway",
            "gateway-api-down",
            "Drives gateway-api's traffic up until its p95 latency is above 5 s; it recovers "
            "at 10 ready replicas.",
            "somactl diagnose gateway-api; somactl mitigate scale gateway-api --replicas 10",
            _load_break,
            _load_heal,
            _load_fixed,
        ),
    ]
}


def break_scenario(info: LabInfo, name: str) -> dict[str, Any]:
    stack.check_scenario(name)
    scenario = SCENARIOS[name]
    details = scenario.do_break(info)
    if name not in info.data.setdefault("scenarios", []):
        info.data["scenarios"].append(name)
    info.data.setdefault("broken_at", {})[name] = time.time()
    info.save()
    return {
        "scenario": name,
        "title": scenario.title,
        "runbook_scenario": scenario.runbook_scenario,
        "details": details,
    }


def heal(info: LabInfo, names: list[str] | None = None) -> dict[str, Any]:
    active = list(info.data.get("scenarios", []))
    targets = names if names is not None else active
    healed = []
    for name in targets:
        stack.check_scenario(name)
        SCENARIOS[name].do_heal(info)
        healed.append(name)
        if name in info.data.get("scenarios", []):
            info.data["scenarios"].remove(name)
    info.save()
    return {"healed": healed, "still_broken": info.data.get("scenarios", [])}


def is_fixed(info: LabInfo, name: str) -> tuple[bool, str]:
    return SCENARIOS[name].fixed(info)
