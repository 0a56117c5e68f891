"""`somactl status`: the runbook's detection dashboard, every service in one table.

Per service: pods ready (one list of Deployments and one of StatefulSets), `up`, error rate and
p95 latency (the runbook's queries, instant values), and for tool adapters their health. All of
it concurrently under the command's deadline, like a diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from somactl.checks.base import Check, CheckResult, Status, run_checks, worst
from somactl.checks.prom import PromQuery
from somactl.core.deadline import Deadline
from somactl.core.options import GlobalOptions
from somactl.core.result import Result
from somactl.ops.budget import command_deadline
from somactl.ops.plan import prom_query, up_query
from somactl.ops.targets import load_runbook_for, settings_for_context, targets_for
from somactl.ops.verdict import envelope_status, exit_code_for
from somactl.runbook.schema import Runbook

COLUMNS = {
    "availability": "up",
    "error-rate": "error_rate",
    "p95-latency": "p95",
    # how full a backend is: connections / max_connections, used / max memory
    "db-connections": "saturation",
    "redis-memory": "saturation",
}


def _workloads_check(t: Any, deadline: Deadline) -> Callable[[Deadline], CheckResult]:
    def run(d: Deadline) -> CheckResult:
        from somactl.checks.kube import workload_ready
        from somactl.clients.kube import KubeClient

        client = KubeClient(t.kube, d)
        found: dict[str, dict[str, int]] = {}
        for resource in ("deployments", "statefulsets"):
            for obj in client.iter_items("apps/v1", resource):
                ready, want = workload_ready(obj)
                name = str((obj.get("metadata") or {}).get("name"))
                found[name] = {"ready": ready, "desired": want}
        return CheckResult(
            "status.workloads",
            "Workloads",
            "kubernetes",
            Status.ok,
            f"{len(found)} workloads",
            evidence={"workloads": found},
        )

    return run


def status(
    opts: GlobalOptions,
    *,
    on_result: Callable[[CheckResult], None] | None = None,
    env: Mapping[str, str] | None = None,
    deadline: Deadline | None = None,
) -> Result:
    from somactl.checks import prom, tools

    rb = load_runbook_for(opts)
    deadline = deadline or command_deadline(opts.timeout)
    t = targets_for(settings_for_context(opts, env=env), env=env)
    checks: list[Check] = []
    if t.kube is not None:
        checks.append(
            Check("status.workloads", "Workloads", "kubernetes", _workloads_check(t, deadline))
        )
    cells: dict[str, dict[str, str]] = {}  # service -> column -> check id
    for name, svc in rb.services.items():
        if svc.kind == "tool-adapter" or not t.prometheus:
            continue
        url = t.prometheus
        queries = [_renamed(up_query(rb, name), f"status.{name}.up")]
        queries += [
            _renamed(prom_query(rb, name, svc, qid), f"status.{name}.{COLUMNS[qid]}")
            for qid in svc.queries
            if qid in COLUMNS and qid != "availability"
        ]
        for q in queries:
            col = q.check_id.rsplit(".", 1)[-1]
            cells.setdefault(name, {})[col] = q.check_id
            checks.append(
                Check(
                    q.check_id,
                    q.title,
                    "prometheus",
                    lambda d, q=q, url=url: prom.query_check(url, q, d, with_range=False),  # type: ignore[misc]
                )
            )
    adapters = list(rb.tool_adapters())
    if t.tools and adapters:
        turl = t.tools
        checks.append(
            Check(
                "status.adapters",
                "Tool adapters",
                "tools-api",
                lambda d: tools.health_check(turl, adapters, d, check_id="status.adapters"),
            )
        )
    results = run_checks(checks, deadline, on_result)
    by_id = {r.id: r for r in results}
    rows = _rows(
        rb,
        by_id,
        cells,
        has_kube=t.kube is not None,
        has_prom=bool(t.prometheus),
        has_tools=bool(t.tools),
    )
    # the rows decide (a service with no data is unknown even when no check failed), the
    # failed checks say whether that is a refused credential (7) or a partial answer (9)
    unknown_codes = [r for r in results if r.status is Status.unknown]
    summary = [CheckResult(r["service"], "", "", Status(r["status"]), "") for r in rows]
    if worst([s.status for s in summary]) is Status.unknown:
        summary += unknown_codes or [CheckResult("?", "", "", Status.unknown, "")]
    code = exit_code_for(summary)
    # one error per distinct cause: a refused Prometheus is one line, not one per query
    errors: list[dict[str, Any]] = []
    by_message: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.status is not Status.unknown:
            continue
        message = r.error or r.summary
        entry = by_message.get(message)
        if entry is None:
            entry = {
                "check": r.id,
                "checks": [],
                "message": message,
                "exit_code": r.error_code or 9,
            }
            by_message[message] = entry
            errors.append(entry)
        entry["checks"].append(r.id)
    for entry in errors:
        if len(entry["checks"]) > 1:
            entry["message"] += f" ({len(entry['checks'])} checks)"
    if t.kube is None:
        errors.append(
            {
                "check": "status.workloads",
                "message": "kubernetes: kube.kubeconfig is not set",
                "exit_code": 3,
            }
        )
    return Result(
        command="status",
        data={
            "context": t.context,
            "namespace": t.namespace,
            "services": rows,
            "deadline_seconds": deadline.seconds,
        },
        exit_code=code,
        status=envelope_status(summary),
        errors=errors,
    )


def _renamed(q: PromQuery, check_id: str) -> PromQuery:
    from dataclasses import replace

    return replace(q, check_id=check_id)


def _rows(
    rb: Runbook,
    by_id: Mapping[str, CheckResult],
    cells: Mapping[str, Mapping[str, str]],
    *,
    has_kube: bool,
    has_prom: bool,
    has_tools: bool,
) -> list[dict[str, Any]]:
    workloads: dict[str, Any] = {}
    wl = by_id.get("status.workloads")
    if wl is not None and wl.status is not Status.unknown:
        workloads = wl.evidence.get("workloads") or {}
    adapters: dict[str, Any] = {}
    ad = by_id.get("status.adapters")
    if ad is not None and ad.status is not Status.unknown:
        adapters = {a["tool"]: a for a in ad.evidence.get("adapters") or []}
    rows = []
    for name, svc in rb.services.items():
        row: dict[str, Any] = {"service": name, "kind": svc.kind, "criticality": svc.criticality}
        statuses: list[Status] = []
        if svc.kind == "tool-adapter":
            a = adapters.get(name)
            health = a.get("status") if a else ("?" if has_tools else "not configured")
            row.update(health=health, breaker=a.get("breaker") if a else None)
            if a:
                statuses.append(
                    Status.critical
                    if health == "down"
                    else Status.warn
                    if health == "degraded" or a.get("breaker") == "open"
                    else Status.ok
                )
            else:
                statuses.append(Status.unknown)
        else:
            w = workloads.get(svc.workload)
            if w is not None:
                row.update(
                    pods=f"{w['ready']}/{w['desired']}", ready=w["ready"], desired=w["desired"]
                )
                ps = (
                    Status.critical
                    if w["ready"] == 0 or w["ready"] * 2 < w["desired"]
                    else Status.warn
                    if w["ready"] < w["desired"]
                    else Status.ok
                )
                row["pods_status"] = str(ps)
                statuses.append(ps)
            else:
                row.update(pods=None, pods_status="unknown" if has_kube else "not configured")
                statuses.append(Status.unknown)
            for col, cid in (cells.get(name) or {}).items():
                r = by_id.get(cid)
                if r is None:
                    continue
                row[col] = r.evidence.get("value")
                row[f"{col}_status"] = str(r.status)
                recent = r.evidence.get("recent")
                if recent:  # warn/critical over the runbook's window: the last minutes too
                    row[f"{col}_recent"] = recent["value"]
                    row[f"{col}_recent_status"] = recent["status"]
                statuses.append(r.status)
            if not has_prom:
                row["up_status"] = "not configured"
        row["status"] = str(worst(statuses))
        rows.append(row)
    return rows
