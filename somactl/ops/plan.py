"""Which checks a diagnosis runs, built from runbooks.yaml and the context's targets.

`somactl diagnose SERVICE` runs the runbook's whole section 3 (investigation) concurrently:
the service's own Kubernetes workload (pods, logs, rollout) and Prometheus queries (its
`queries` in runbooks.yaml, plus container memory), and the shared checks every incident looks
at (database connectivity, pool and slow queries; Redis ping and memory; tool adapters; recent
changes). Thresholds come from runbooks.yaml; the checks themselves know nothing of the runbook.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from somactl.checks.base import Check, CheckResult, not_configured
from somactl.checks.prom import PromQuery
from somactl.core.deadline import Deadline
from somactl.ops.targets import Targets
from somactl.runbook.schema import Runbook, Service

# Signals whose runbook help defines them as user-facing: for a non-critical service its own
# values describe that service's degradation, never "a complete outage affecting all users".
USER_FACING_ERROR_RATE_MAX = 0.98  # below complete-outage's 0.99
USER_FACING_AVAILABILITY_MIN = 0.01  # above complete-outage's 0
MEMORY_WARN = 0.8
MEMORY_CRITICAL = 0.9  # the memory-leak scenario's line


@dataclass
class Plan:
    service: str
    checks: list[Check]
    not_run: list[dict[str, str]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)  # check id -> runbook group
    # the checks about the service itself (the rest are the shared section-3 sweep)
    own: set[str] = field(default_factory=set)

    def close(self) -> None:
        for close in self.closers:
            close()


def top_level_denominator(promql: str) -> str | None:
    """`B` of a PromQL `A / B` whose `/` is outside every bracket; None otherwise."""
    depth = 0
    quote: str | None = None
    for i, ch in enumerate(promql):
        if quote:
            if ch == quote and promql[i - 1] != "\\":
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "/" and depth == 0:
            rest = promql[i + 1 :].strip()
            return rest or None
    return None


def zero_when_quiet(promql: str) -> str | None:
    """The query to send so that "no error series" reads as 0, not as "no data".

    A ratio `A / B` becomes `(A / B) or (0 * (B))`: 0 while there is traffic and no errors,
    still empty without traffic. A summed rate becomes `(...) or vector(0)`. Others: None.
    """
    denominator = top_level_denominator(promql)
    if denominator is not None:
        return f"({promql}) or (0 * ({denominator}))"
    if re.match(r"^\s*sum\s*\(\s*(rate|increase)\s*\(", promql):
        return f"({promql}) or vector(0)"
    return None


def prom_query(rb: Runbook, service: str, svc: Service, query_id: str) -> PromQuery:
    q = rb.query(query_id)
    promql = q.for_job(svc.job, rb.namespace_of(service))
    signal = q.signal
    signal_max = None
    signal_min = None
    if svc.criticality != "critical":
        if signal == "error_rate":
            signal_max = USER_FACING_ERROR_RATE_MAX
        if signal == "availability":
            signal_min = USER_FACING_AVAILABILITY_MIN
    return PromQuery(
        check_id=f"prom.{query_id}",
        title=f"{q.title} of {service}",
        promql=promql,
        unit=q.unit,
        direction=q.direction,
        warn=q.warn,
        critical=q.critical,
        signal=signal,
        signal_max=signal_max,
        signal_min=signal_min,
        executed=zero_when_quiet(promql) if q.direction == "above" else None,
    )


def up_query(rb: Runbook, service: str) -> PromQuery:
    """`up` of a service whose runbook queries do not include availability (postgres, redis,
    tool-service): shown and judged, but it feeds no signal (the runbook defines availability
    over the critical services' own targets; an exporter's `up` is not its database's)."""
    svc = rb.service(service)
    q = rb.queries.get("availability")
    promql = q.for_job(svc.job, rb.namespace_of(service)) if q else f'avg(up{{job="{svc.job}"}})'
    return PromQuery(
        check_id="prom.up",
        title=f"up of {service}'s scrape targets",
        promql=promql,
        unit="ratio",
        direction="below",
        warn=q.warn if q else 1.0,
        critical=q.critical if q else 0.5,
    )


def memory_query(namespace: str, workload: str, kind: str) -> PromQuery:
    # Kubernetes names are DNS-1123 (a-z, 0-9, '-', '.'): only '.' needs escaping, and inside a
    # PromQL string literal its backslash is doubled (Python's re.escape would also escape '-',
    # which PromQL rejects as an unknown escape sequence).
    name = workload.replace(".", "\\\\.")
    pods = f"{name}-[a-z0-9]+-[a-z0-9]+" if kind == "deployment" else f"{name}-[0-9]+"
    sel = f'namespace="{namespace}",pod=~"{pods}"'
    promql = (
        f"max(container_memory_working_set_bytes{{{sel}}} "
        f"/ on(namespace, pod, container) container_spec_memory_limit_bytes{{{sel}}})"
    )
    return PromQuery(
        check_id="k8s.memory",
        title=f"Memory use of {workload} pods (working set / limit)",
        promql=promql,
        unit="ratio",
        direction="above",
        warn=MEMORY_WARN,
        critical=MEMORY_CRITICAL,
        signal="memory_ratio",
        no_data_ok=True,
    )


def build_plan(
    rb: Runbook,
    service: str,
    t: Targets,
    deadline: Deadline,
    *,
    long_running_seconds: float | None = None,
    prefix: str = "",
) -> Plan:
    """Every check of the runbook's investigation for `service` against targets `t`."""
    from somactl.checks import git, kube, postgres, prom, redis, tools

    svc = rb.service(service)
    plan = Plan(service, [])
    add = plan.checks.append
    workload_service = service if svc.kind != "tool-adapter" else _owner(rb, svc)
    wsvc = rb.service(workload_service) if workload_service in rb.services else svc

    def cid(name: str) -> str:
        return f"{prefix}{name}"

    def missing(name: str, title: str, backend: str, key: str) -> None:
        problem = t.problems.get(backend)
        if problem is not None:
            err = problem

            def fail(_: Deadline) -> CheckResult:
                raise err

            add(Check(cid(name), title, backend, fail))
        else:
            add(not_configured(cid(name), title, backend, key, t.hint(key)))

    # -- Kubernetes: the service's workload ----------------------------------------------------
    wl = kube.Workload(
        workload_service,
        "statefulset" if wsvc.kind == "statefulset" else "deployment",
        wsvc.workload,
    )
    k8s_titles = {
        "k8s.pods": f"Pods of {wl.name}",
        "k8s.logs": f"Logs of {wl.name}",
        "k8s.rollout-history": f"Rollout of {wl.name}",
        "k8s.recent-rollouts": "Rollouts in the last hour",
    }
    if t.kube is None:
        for name, title in k8s_titles.items():
            add(not_configured(cid(name), title, "kubernetes", "kube.kubeconfig", "KUBECONFIG"))
    else:
        ks = kube.KubeSession(t.kube, deadline)
        where = t.kube.context or "current kube context"
        tail = rb.defaults.log_tail_lines
        down = workload_service
        add(
            Check(
                cid("k8s.pods"),
                k8s_titles["k8s.pods"],
                "kubernetes",
                lambda d: kube.pods_check(ks, wl, check_id=cid("k8s.pods"), down_service=down),
                where,
            )
        )
        add(
            Check(
                cid("k8s.logs"),
                k8s_titles["k8s.logs"],
                "kubernetes",
                lambda d: kube.logs_check(ks, wl, tail=tail, check_id=cid("k8s.logs")),
                where,
            )
        )
        add(
            Check(
                cid("k8s.rollout-history"),
                k8s_titles["k8s.rollout-history"],
                "kubernetes",
                lambda d: kube.rollout_check(ks, wl, check_id=cid("k8s.rollout-history")),
                where,
            )
        )
        add(
            Check(
                cid("k8s.recent-rollouts"),
                k8s_titles["k8s.recent-rollouts"],
                "kubernetes",
                lambda d: kube.recent_rollouts_check(ks, check_id=cid("k8s.recent-rollouts")),
                where,
            )
        )

    # -- Prometheus: the service's queries and its containers' memory ---------------------------
    queries = [prom_query(rb, service, svc, q) for q in svc.queries]
    if svc.kind != "tool-adapter":
        if "availability" not in svc.queries:
            queries.append(up_query(rb, service))
        queries.append(memory_query(rb.namespace_of(workload_service), wl.name, wl.kind))
    for query in queries:
        q = _prefixed(query, prefix)
        if not t.prometheus:
            add(
                not_configured(
                    q.check_id, q.title, "prometheus", "prometheus.url", "SOMACTL_PROMETHEUS_URL"
                )
            )
            continue
        url = t.prometheus
        add(
            Check(
                q.check_id,
                q.title,
                "prometheus",
                lambda d, q=q, url=url: prom.query_check(url, q, d),  # type: ignore[misc]
                _netloc(url),
            )
        )

    # -- Postgres --------------------------------------------------------------------------------
    pg_checks = {
        "db.connectivity": "Database connectivity",
        "db.activity": "Connection pool",
        "db.slow-queries": "Slow / long-running queries",
    }
    if t.pg is None or "postgres" in t.problems:
        for name, title in pg_checks.items():
            missing(name, title, "postgres", "postgres.dsn")
    else:
        ps = postgres.PgSession(t.pg, deadline)
        plan.closers.append(ps.close)
        db_q = rb.queries.get("db-connections")
        # db-connections is a share of max_connections: its thresholds are the pool's lines
        warn_r = db_q.warn if db_q else 0.8
        crit_r = db_q.critical if db_q else 0.95
        lr = float(
            long_running_seconds
            if long_running_seconds is not None
            else rb.defaults.long_running_query_seconds
        )
        where = t.pg.describe()
        add(
            Check(
                cid("db.connectivity"),
                pg_checks["db.connectivity"],
                "postgres",
                lambda d: postgres.connectivity_check(ps, check_id=cid("db.connectivity")),
                where,
            )
        )
        add(
            Check(
                cid("db.activity"),
                pg_checks["db.activity"],
                "postgres",
                lambda d: postgres.pool_check(
                    ps, warn_ratio=warn_r, critical_ratio=crit_r, check_id=cid("db.activity")
                ),
                where,
            )
        )
        add(
            Check(
                cid("db.slow-queries"),
                pg_checks["db.slow-queries"],
                "postgres",
                lambda d: postgres.slow_queries_check(
                    ps, long_running_seconds=lr, check_id=cid("db.slow-queries")
                ),
                where,
            )
        )

    # -- Redis -----------------------------------------------------------------------------------
    redis_checks = {"redis.ping": "Redis connectivity", "redis.memory": "Redis memory"}
    if t.redis is None or "redis" in t.problems:
        for name, title in redis_checks.items():
            missing(name, title, "redis", "redis.url")
    else:
        rs = redis.RedisSession(t.redis, deadline)
        plan.closers.append(rs.close)
        rq = rb.queries.get("redis-memory")
        rwarn, rcrit = (rq.warn, rq.critical) if rq else (0.8, 0.95)
        where = t.redis.describe()
        add(
            Check(
                cid("redis.ping"),
                redis_checks["redis.ping"],
                "redis",
                lambda d: redis.ping_check(rs, check_id=cid("redis.ping")),
                where,
            )
        )
        add(
            Check(
                cid("redis.memory"),
                redis_checks["redis.memory"],
                "redis",
                lambda d: redis.memory_check(
                    rs, warn_ratio=rwarn, critical_ratio=rcrit, check_id=cid("redis.memory")
                ),
                where,
            )
        )

    # -- tool adapters ---------------------------------------------------------------------------
    # an adapter's diagnosis reads its own health and calls, not its neighbours'
    tool = service if svc.kind == "tool-adapter" else None
    adapters = [tool] if tool is not None else list(rb.tool_adapters())
    if not t.tools:
        missing("tools.health", "Tool adapter health", "tools-api", "tools.url")
        missing("tools.recent", "Recent tool invocations", "tools-api", "tools.url")
    else:
        turl = t.tools
        limit = rb.defaults.recent_invocations_limit
        known = set(rb.services)
        add(
            Check(
                cid("tools.health"),
                "Tool adapter health",
                "tools-api",
                lambda d: tools.health_check(
                    turl, adapters, d, services=known, check_id=cid("tools.health")
                ),
                _netloc(turl),
            )
        )
        add(
            Check(
                cid("tools.recent"),
                "Recent tool invocations",
                "tools-api",
                lambda d: tools.recent_check(
                    turl, d, limit=limit, tool=tool, check_id=cid("tools.recent")
                ),
                _netloc(turl),
            )
        )
    if "github" in rb.services:
        if not t.github or "github" in t.problems:
            missing("tools.rate-limit", "GitHub rate limit", "github", "github.url")
        else:
            gurl, token = t.github, t.github_token
            add(
                Check(
                    cid("tools.rate-limit"),
                    "GitHub rate limit",
                    "github",
                    lambda d: tools.rate_limit_check(
                        gurl, token, d, check_id=cid("tools.rate-limit")
                    ),
                    _netloc(gurl),
                )
            )

    # -- recent changes: git -----------------------------------------------------------------------
    if t.git_repo:
        repo = t.git_repo
        since = rb.defaults.recent_commits_since
        add(
            Check(
                cid("git.recent-commits"),
                "Recent commits",
                "git",
                lambda d: git.recent_commits_check(
                    repo, d, since=since, check_id=cid("git.recent-commits")
                ),
                repo,
            )
        )
    else:
        plan.not_run.append(
            {
                "check": "git.recent-commits",
                "why": "git.repo is not set (set SOMACTL_GIT_REPO or the context's git-repo "
                "to a clone of the deployed repository to see recent commits)",
            }
        )
    mine = own_checks(rb, service)
    for check in plan.checks:
        base = check.id[len(prefix) :]
        if base in rb.checks:
            plan.titles[check.id] = rb.checks[base].group
        if base in mine:
            plan.own.add(check.id)
    return plan


def dependencies(rb: Runbook, service: str) -> list[str]:
    """What `service` cannot work without, transitively: its runbook `depends_on`, and for a
    workload serving tool adapters (tool-service) those adapters."""
    found: list[str] = []
    todo = [service]
    while todo:
        svc = rb.service(todo.pop(0))
        direct = list(svc.depends_on)
        if svc.kind != "tool-adapter":
            direct += [
                n
                for n, o in rb.services.items()
                if o.kind == "tool-adapter" and o.workload == svc.workload
            ]
        for dep in direct:
            if dep != service and dep not in found:
                found.append(dep)
                todo.append(dep)
    return found


def own_checks(rb: Runbook, service: str) -> set[str]:
    """The checks a diagnosis of `service` is judged by: its runbook checks, its workload, its
    queries, and the backend checks of its dependencies (gateway-api's Postgres and Redis,
    tool-service's adapters). The rest of the sweep is reported as found elsewhere."""
    svc = rb.service(service)
    own = set(svc.checks) | {f"prom.{q}" for q in svc.queries}
    own |= {"k8s.pods", "k8s.logs", "k8s.rollout-history", "k8s.memory", "prom.up"}
    for dep in dependencies(rb, service):
        # a dependency's workload and metrics are not in this plan (k8s./prom. here are the
        # diagnosed service's own): its backend checks are
        own |= {c for c in rb.service(dep).checks if not c.startswith(("k8s.", "prom."))}
    return own


def service_of_check(rb: Runbook, check_id: str) -> str | None:
    """The service whose own diagnosis covers a shared check (db.* -> postgres, ...)."""
    base = check_id.split(":", 1)[-1]
    if base == "tools.rate-limit" and "github" in rb.services:
        return "github"
    for name, svc in rb.services.items():
        if svc.kind != "tool-adapter" and base in svc.checks and base.split(".", 1)[0] != "k8s":
            return name
    if base.startswith("tools."):
        return next(
            (
                n
                for n, s in rb.services.items()
                if s.kind != "tool-adapter"
                and any(
                    o.kind == "tool-adapter" and o.workload == s.workload
                    for o in rb.services.values()
                )
            ),
            None,
        )
    return None


def _owner(rb: Runbook, svc: Service) -> str:
    """The runbook service that runs a tool adapter's workload (tool-service)."""
    for name, other in rb.services.items():
        if other.kind != "tool-adapter" and other.workload == svc.workload:
            return name
    return svc.workload


def _netloc(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname or url)
    except ValueError:
        return "?"


def _prefixed(q: PromQuery, prefix: str) -> PromQuery:
    if not prefix:
        return q
    from dataclasses import replace

    return replace(q, check_id=prefix + q.check_id)
