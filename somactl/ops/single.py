"""Each check on its own: `db pool`, `db activity`, `redis info`, `tools health|recent|rate-limit`,
`logs`, `rollout history`.

The same check functions as `diagnose`, under the same absolute deadline (so a blackholed or
dripping backend ends the command at --timeout), but a check that cannot run is the command's
error: exit 6 (no answer), 7 (refused credential or privilege), 3 (not configured).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from somactl.checks.base import Check, CheckResult, Status, run_checks, worst
from somactl.core.deadline import Deadline
from somactl.core.errors import (
    ActionFailedError,
    ConfigError,
    PartialError,
    PermissionDeniedError,
    PreconditionError,
    SomactlError,
    UnreachableError,
    UsageError,
)
from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.core.result import Result
from somactl.ops.budget import command_deadline
from somactl.ops.targets import Targets, load_runbook_for, settings_for_context, targets_for
from somactl.ops.verdict import exit_code_for
from somactl.runbook.schema import Runbook

_ERRORS: dict[int, type[SomactlError]] = {
    int(ExitCode.USAGE): UsageError,
    int(ExitCode.CONFIG): ConfigError,
    int(ExitCode.PRECONDITION): PreconditionError,
    int(ExitCode.UNREACHABLE): UnreachableError,
    int(ExitCode.PERMISSION): PermissionDeniedError,
    int(ExitCode.PARTIAL): PartialError,
}


def error_of(result: CheckResult) -> SomactlError:
    cls = _ERRORS.get(result.error_code or 0, ActionFailedError)
    return cls(result.error or result.summary, result.hint)


class Context:
    """What a single-check command needs: runbook, targets, the deadline."""

    def __init__(self, opts: GlobalOptions) -> None:
        self.opts = opts
        self.runbook: Runbook = load_runbook_for(opts)
        self.deadline: Deadline = command_deadline(opts.timeout)
        self._targets: Targets | None = None

    @property
    def targets(self) -> Targets:
        if self._targets is None:
            self._targets = targets_for(settings_for_context(self.opts))
        return self._targets

    def require(self, backend: str) -> None:
        """ConfigError (exit 3) naming the setting when `backend` has no address."""
        t = self.targets
        problem = t.problems.get(backend)
        if problem is not None:
            raise problem
        missing = {
            "kubernetes": (t.kube is None, "kube.kubeconfig", "KUBECONFIG"),
            "postgres": (t.pg is None, "postgres.dsn", "SOMACTL_PG_DSN"),
            "redis": (t.redis is None, "redis.url", "SOMACTL_REDIS_URL"),
            "prometheus": (not t.prometheus, "prometheus.url", "SOMACTL_PROMETHEUS_URL"),
            "tools-api": (not t.tools, "tools.url", "SOMACTL_TOOLS_URL"),
            "github": (not t.github, "github.url", "SOMACTL_GITHUB_URL"),
        }[backend]
        if missing[0]:
            raise ConfigError(
                f"{backend}: {missing[1]} is not set",
                f"set it in the context (`somactl config show`), or export {missing[2]}",
            )

    def run(self, checks: Sequence[Check], *, tolerate: Sequence[str] = ()) -> list[CheckResult]:
        """Run `checks`; the first that could not run (unless in `tolerate`) is the error."""
        results = run_checks(checks, self.deadline)
        for r in results:
            if r.status is Status.unknown and r.error is not None and r.id not in tolerate:
                raise error_of(r)
        return results


def result_for(
    command: str,
    data: Any,
    results: Sequence[CheckResult],
    *,
    errors: list[dict[str, Any]] | None = None,
) -> Result:
    """A Result whose exit code follows the worst finding (0/10/11; 7/9 when a check could not
    see everything)."""
    w = worst([r.status for r in results])
    code = exit_code_for(results)
    return Result(
        command=command,
        data=data,
        exit_code=code,
        status="partial" if w is Status.unknown else str(w),
        errors=errors or [],
    )


def one(
    check_id: str,
    title: str,
    backend: str,
    func: Callable[[Deadline], CheckResult],
    where: str = "",
) -> Check:
    return Check(check_id, title, backend, func, where)


def _json(r: CheckResult) -> dict[str, Any]:
    return {**r.to_json(), "evidence": r.evidence}


# -- db ------------------------------------------------------------------------------------------


def db_pool(opts: GlobalOptions) -> Result:
    """Connectivity and the pool: sessions by state against max_connections."""
    from somactl.checks import postgres

    c = Context(opts)
    c.require("postgres")
    pg = c.targets.pg
    assert pg is not None  # noqa: S101 - require() checked it
    session = postgres.PgSession(pg, c.deadline)
    q = c.runbook.queries.get("db-connections")
    warn, crit = (q.warn, q.critical) if q else (0.8, 0.95)  # db-connections is a ratio
    where = pg.describe()
    try:
        results = c.run(
            [
                one(
                    "db.connectivity",
                    "Database connectivity",
                    "postgres",
                    lambda d: postgres.connectivity_check(session),
                    where,
                ),
                one(
                    "db.activity",
                    "Connection pool",
                    "postgres",
                    lambda d: postgres.pool_check(session, warn_ratio=warn, critical_ratio=crit),
                    where,
                ),
            ],
            tolerate=("db.activity",),
        )
    finally:
        session.close()
    return result_for(
        "db pool",
        {"target": where, "checks": [_json(r) for r in results]},
        results,
        errors=_soft_errors(results),
    )


def db_activity(
    opts: GlobalOptions, *, older_than: float | None, slow_only: bool, include_idle: bool
) -> Result:
    """The sessions (pg_activity's view), long-running queries and blocking chains."""
    from somactl.checks import postgres

    c = Context(opts)
    c.require("postgres")
    pg = c.targets.pg
    assert pg is not None  # noqa: S101 - require() checked it
    session = postgres.PgSession(pg, c.deadline)
    threshold = float(
        older_than if older_than is not None else c.runbook.defaults.long_running_query_seconds
    )
    try:
        results = c.run(
            [
                one(
                    "db.slow-queries",
                    "Long-running queries, blocking chains",
                    "postgres",
                    lambda d: postgres.slow_queries_check(session, long_running_seconds=threshold),
                    pg.describe(),
                )
            ],
            tolerate=("db.slow-queries",),
        )
        if results[0].error_code == int(ExitCode.UNREACHABLE):
            # the database did not answer within the deadline: asking again for the sessions
            # would wait for the same connect, past the deadline
            raise error_of(results[0])
        act = session.activity()
    finally:
        session.close()
    rows = [
        r
        for r in act.clients()
        if not r.get("self")
        and (
            include_idle
            or r.get("state") not in ("idle", None)
            or r.get("query") == postgres.HIDDEN
        )
    ]
    if slow_only:
        rows = [
            r
            for r in rows
            if r.get("state") == "active" and (r.get("query_age") or 0.0) >= threshold
        ]
    rows.sort(key=lambda r: -(r.get("query_age") or r.get("xact_age") or 0.0))
    sessions = [postgres.session_row(r) for r in rows]
    return result_for(
        "db activity",
        {
            "target": pg.describe(),
            "threshold_seconds": threshold,
            "sessions": sessions,
            "hidden_sessions": len(act.hidden()),
            "privilege_note": act.privilege_note() if act.hidden() else None,
            "checks": [_json(r) for r in results],
        },
        results,
        errors=_soft_errors(results),
    )


def _soft_errors(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """A check that ran but could not see everything (a missing privilege): its note, exit 7."""
    return [
        {"check": r.id, "message": r.error, "hint": r.hint, "exit_code": r.error_code}
        for r in results
        if r.status is Status.unknown and r.error
    ]


# -- redis ---------------------------------------------------------------------------------------


def redis_info(opts: GlobalOptions) -> Result:
    from somactl.checks import redis

    c = Context(opts)
    c.require("redis")
    target = c.targets.redis
    assert target is not None  # noqa: S101 - require() checked it
    session = redis.RedisSession(target, c.deadline)
    q = c.runbook.queries.get("redis-memory")
    warn, crit = (q.warn, q.critical) if q else (0.8, 0.95)
    where = target.describe()
    try:
        results = c.run(
            [
                one(
                    "redis.ping",
                    "Redis connectivity",
                    "redis",
                    lambda d: redis.ping_check(session),
                    where,
                ),
                one(
                    "redis.memory",
                    "Redis memory",
                    "redis",
                    lambda d: redis.memory_check(session, warn_ratio=warn, critical_ratio=crit),
                    where,
                ),
            ]
        )
    finally:
        session.close()
    return result_for(
        "redis info", {"target": where, "checks": [_json(r) for r in results]}, results
    )


# -- tools ---------------------------------------------------------------------------------------


def tools_health(opts: GlobalOptions, tool: str | None) -> Result:
    from somactl.checks import tools
    from somactl.clients.tools import check_tool_name

    c = Context(opts)
    adapters = list(c.runbook.tool_adapters())
    if tool is not None:
        check_tool_name(tool)
        adapters = [tool]
    c.require("tools-api")
    url = c.targets.tools or ""
    known = set(c.runbook.services)
    results = c.run(
        [
            one(
                "tools.health",
                "Tool adapter health",
                "tools-api",
                lambda d: tools.health_check(url, adapters, d, services=known),
                url,
            )
        ]
    )
    return result_for(
        "tools health", {"tools_api": url, "checks": [_json(r) for r in results]}, results
    )


def tools_recent(opts: GlobalOptions, limit: int, tool: str | None) -> Result:
    from somactl.checks import tools
    from somactl.clients.tools import check_tool_name

    if not 1 <= limit <= 1000:
        raise UsageError(f"--limit must be between 1 and 1000 (got {limit})")
    if tool is not None:
        check_tool_name(tool)
    c = Context(opts)
    c.require("tools-api")
    url = c.targets.tools or ""
    results = c.run(
        [
            one(
                "tools.recent",
                "Recent tool invocations",
                "tools-api",
                lambda d: tools.recent_check(url, d, limit=limit, tool=tool),
                url,
            )
        ]
    )
    r = results[0]
    return result_for(
        "tools recent",
        {
            "tools_api": url,
            "invocations": r.raw.get("recent.json", []),
            "stats": r.evidence,
            "checks": [_json(x) for x in results],
        },
        results,
    )


def tools_rate_limit(opts: GlobalOptions, provider: str) -> Result:
    """GitHub's own /rate_limit; for another adapter, the rate limit its health reports."""
    from somactl.checks import tools
    from somactl.clients.tools import check_tool_name

    check_tool_name(provider)
    c = Context(opts)
    if provider == "github":
        c.require("github")
        gurl, token = c.targets.github or "", c.targets.github_token
        results = c.run(
            [
                one(
                    "tools.rate-limit",
                    "GitHub rate limit",
                    "github",
                    lambda d: tools.rate_limit_check(gurl, token, d),
                    gurl,
                )
            ]
        )
        r = results[0]
        res = result_for("tools rate-limit", {"provider": "github", "checks": [_json(r)]}, results)
        if r.facts.get("github_remaining") == 0:
            # exhausted: the caller cannot proceed until the reset (ARCHITECTURE: unreachable)
            res.exit_code = ExitCode.UNREACHABLE
            res.errors = [
                {
                    "message": r.summary,
                    "exit_code": int(ExitCode.UNREACHABLE),
                    "hint": "wait for the reset; `somactl mitigate circuit-breaker "
                    "enable github` stops the adapter meanwhile",
                }
            ]
        return res
    c.require("tools-api")
    url = c.targets.tools or ""
    results = c.run(
        [
            one(
                "tools.health",
                f"{provider} rate limit",
                "tools-api",
                lambda d: tools.health_check(url, [provider], d),
                url,
            )
        ]
    )
    return result_for(
        "tools rate-limit", {"provider": provider, "checks": [_json(r) for r in results]}, results
    )


# -- kubernetes ------------------------------------------------------------------------------------


MAX_LOG_PODS = 50  # --all reads the logs of at most this many pods (the most telling first)


def _workload(rb: Runbook, service: str) -> Any:
    from somactl.checks.kube import Workload
    from somactl.ops.plan import _owner

    svc = rb.service(service)
    owner = service if svc.kind != "tool-adapter" else _owner(rb, svc)
    wsvc = rb.services.get(owner, svc)
    return Workload(
        owner, "statefulset" if wsvc.kind == "statefulset" else "deployment", wsvc.workload
    )


def rollout_history(opts: GlobalOptions, service: str) -> Result:
    from somactl.checks import kube

    c = Context(opts)
    wl = _workload(c.runbook, service)
    c.require("kubernetes")
    assert c.targets.kube is not None  # noqa: S101 - require() checked it
    session = kube.KubeSession(c.targets.kube, c.deadline)
    results = c.run(
        [
            one(
                "k8s.rollout-history",
                f"Rollout of {wl.name}",
                "kubernetes",
                lambda d: kube.rollout_check(session, wl),
            )
        ]
    )
    r = results[0]
    return result_for(
        "rollout history",
        {
            "service": service,
            "workload": f"{wl.kind}/{wl.name}",
            "namespace": session.namespace,
            "checks": [_json(r)],
        },
        results,
    )


def logs(
    opts: GlobalOptions,
    service: str,
    *,
    tail: int | None,
    pod: str | None,
    previous: bool,
    all_pods: bool,
    save: bool,
) -> Result:
    """The last log lines of the service's most telling pod (or of every pod with --all)."""
    from somactl.checks import kube

    c = Context(opts)
    wl = _workload(c.runbook, service)
    n = tail if tail is not None else c.runbook.defaults.log_tail_lines
    if n < 0 or n > 100_000:
        raise UsageError(f"--tail must be between 0 and 100000 (got {n})")
    c.require("kubernetes")
    assert c.targets.kube is not None  # noqa: S101 - require() checked it
    session = kube.KubeSession(c.targets.kube, c.deadline)
    out: dict[str, Any] = {}

    def run(d: Deadline) -> CheckResult:
        pods = [p for p in session.pods(wl) if not p.terminating]
        if pod is not None:
            chosen = [p for p in pods if p.name == pod]
            if not chosen:
                raise PreconditionError(
                    f"kubernetes: no pod {pod!r} of {wl.kind}/{wl.name}",
                    f"pods: {', '.join(p.name for p in pods[:10]) or 'none'}",
                )
        elif all_pods:
            chosen = sorted(pods, key=kube.trouble_score, reverse=True)
        else:
            best = kube.pick_pod(pods)
            chosen = [best] if best is not None else []
        if not chosen:
            raise PreconditionError(f"kubernetes: {wl.kind}/{wl.name} has no pods")
        entries = []
        for listed in chosen[:MAX_LOG_PODS]:
            p = session.full_pod(listed)
            text, prev = kube.read_logs(session, p, n, previous=True if previous else None)
            a = kube.analyse_log(text)
            entries.append(
                {
                    "pod": p.name,
                    "status": p.status,
                    "previous": prev,
                    "text": text,
                    "lines": a.lines,
                    "error_lines": a.error_lines,
                    "worst": a.worst,
                }
            )
        out["pods"] = entries
        out["found"] = len(pods)
        return CheckResult("k8s.logs", "logs", "kubernetes", Status.ok, f"{len(entries)} pods")

    c.run([one("k8s.logs", f"Logs of {wl.name}", "kubernetes", run)])
    data: dict[str, Any] = {
        "service": service,
        "workload": f"{wl.kind}/{wl.name}",
        "namespace": session.namespace,
        "tail": n,
        "pods_found": out.get("found", 0),
        "logs": out.get("pods", []),
    }
    if save:
        data["saved"] = str(_save_logs(c.targets.state_dir, service, data))
    return Result("logs", data)


def _save_logs(state_dir: str, service: str, data: dict[str, Any]) -> Any:
    import time
    from pathlib import Path

    from somactl.ops.snapshot import new_bundle, safe_name

    if not state_dir:
        raise ConfigError("--save: state_dir is not set", "export SOMACTL_STATE_DIR")
    bundle = new_bundle(Path(state_dir) / "evidence", f"logs-{service}")
    for entry in data["logs"]:
        suffix = "-previous" if entry["previous"] else ""
        bundle.text(f"{safe_name(entry['pod'])}{suffix}.log", entry["text"])
    return bundle.finish(
        {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "service": service,
            "workload": data["workload"],
            "namespace": data["namespace"],
            "tail": data["tail"],
        }
    )
