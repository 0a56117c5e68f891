"""Pure logic of the checks and the verdict: no sockets."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from somactl.checks.base import CheckResult, Status
from somactl.checks.kube import analyse_log, line_weight, pick_pod, pod_info, rollout_state
from somactl.checks.postgres import blocking_chains
from somactl.checks.prom import PromQuery, describe_trend, fmt, series_values
from somactl.checks.shared import Memo
from somactl.checks.tools import failure_stats
from somactl.core.exitcodes import ExitCode
from somactl.ops.budget import seconds_since_process_start
from somactl.ops.plan import memory_query, own_checks, top_level_denominator, zero_when_quiet
from somactl.ops.verdict import decide, exit_code_for, merge_signals
from somactl.runbook.loader import load_runbook
from somactl.ui.sparkline import sparkline

RB = load_runbook()


def _pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "gateway-api-abc-1",
            "creationTimestamp": "2026-11-26T10:00:00Z",
            "labels": {"pod-template-hash": "abc"},
        },
        "spec": {"containers": [{"name": "api"}], "nodeName": "n1"},
        "status": status,
    }


def test_pod_info_reads_crashloop_and_last_termination_like_kubectl() -> None:
    p = pod_info(
        _pod(
            phase="Running",
            conditions=[{"type": "Ready", "status": "False"}],
            containerStatuses=[
                {
                    "name": "api",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "reason": "OOMKilled",
                            "exitCode": 137,
                            "finishedAt": "2026-11-26T10:05:00Z",
                        }
                    },
                }
            ],
        )
    )
    assert (p.status, p.ready, p.restarts) == ("CrashLoopBackOff", False, 4)
    assert (p.last_reason, p.last_exit_code, p.container) == ("OOMKilled", 137, "api")
    assert p.last_finished is not None and p.template_hash == "abc"


def test_pod_info_of_a_terminating_and_a_pending_pod() -> None:
    obj = _pod(phase="Running", containerStatuses=[{"ready": True, "state": {"running": {}}}])
    obj["metadata"]["deletionTimestamp"] = "2026-11-26T10:05:00Z"
    assert pod_info(obj).status == "Terminating"
    assert pod_info(_pod(phase="Pending")).status == "Pending"
    assert pod_info(_pod(phase="Pending")).ready is False


def test_pick_pod_prefers_the_crash_looping_one() -> None:
    ok = pod_info(
        _pod(phase="Running", containerStatuses=[{"ready": True, "restartCount": 0, "state": {}}])
    )
    bad_obj = _pod(
        phase="Running",
        containerStatuses=[
            {
                "ready": False,
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ],
    )
    bad_obj["metadata"]["name"] = "gateway-api-abc-2"
    bad = pod_info(bad_obj)
    assert pick_pod([ok, bad]) == bad
    assert pick_pod([]) is None


def test_log_analysis_counts_errors_and_names_the_worst_line() -> None:
    text = "\n".join(
        [
            "INFO: started",
            "ERROR:    Traceback (most recent call last):",
            '  File "/app/main.py", line 42, in lifespan',
            "ConnectionRefusedError: [Errno 111] Connection refused",
            "ERROR:    Application startup failed. Exiting.",
            "INFO: errors=0 in the last minute",
        ]
    )
    a = analyse_log(text)
    assert a.lines == 6
    assert a.error_lines == 3
    assert a.worst == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert line_weight("FATAL: disk full") > line_weight("ERROR: x") > line_weight("INFO: y")
    assert line_weight('{"level": "error", "msg": "x"}') == 2
    assert analyse_log("").error_lines == 0


def test_rollout_state_of_a_deployment() -> None:
    base = {
        "metadata": {"generation": 4},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3},
    }
    complete = {**base, "status": {**base["status"], "availableReplicas": 3}}
    assert rollout_state(complete)[0] == "complete"
    assert rollout_state({**base, "status": {**base["status"], "availableReplicas": 0}})[0] == (
        "progressing"
    )
    stalled = {
        **base,
        "status": {
            **base["status"],
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ],
        },
    }
    assert rollout_state(stalled)[0] == "stalled"
    assert rollout_state({**complete, "spec": {"replicas": 3, "paused": True}})[0] == "paused"


def test_blocking_chains_group_waiters_under_their_root_blocker() -> None:
    rows = [
        {"pid": 10, "blocked_by": None, "query_age": 50.0},
        {"pid": 11, "blocked_by": [10], "query_age": 40.0},
        {"pid": 12, "blocked_by": [11], "query_age": 70.0},
        {"pid": 13, "blocked_by": [10, 11], "query_age": 5.0},
        {"pid": 20, "blocked_by": None, "query_age": 1.0},
    ]
    chains = blocking_chains(rows)
    assert len(chains) == 1
    assert chains[0].blocker == 10
    assert sorted(chains[0].blocked) == [11, 12, 13]
    assert chains[0].longest_wait == 70.0
    assert blocking_chains([{"pid": 1, "blocked_by": None}]) == []


def test_failure_stats_count_workflows_and_keep_breaker_calls_apart() -> None:
    inv = [
        {"tool": "github", "workflow_id": "a", "status": "failure", "error": "502"},
        {"tool": "github", "workflow_id": "b", "status": "success"},
        {"tool": "notion", "workflow_id": "b", "status": "rate_limited", "error": "429"},
        {"tool": "slack", "workflow_id": "c", "status": "success"},
        {"tool": "github", "workflow_id": "d", "status": "failure", "short_circuited": True},
    ]
    s = failure_stats(inv)
    assert (s["workflows"], s["failing_workflows"]) == (4, 2)
    assert s["ratio"] == 0.5
    assert s["per_tool"]["github"] == {"calls": 3, "failures": 1, "short_circuited": 1}
    assert s["per_tool"]["notion"]["rate_limited"] == 1
    assert failure_stats([])["ratio"] == 0.0


def test_promql_rewrites_make_quiet_error_series_read_as_zero() -> None:
    q = RB.query("error-rate").for_job("gateway-api")
    den = top_level_denominator(q)
    assert den == 'sum(rate(http_requests_total{job="gateway-api"}[5m]))'
    assert zero_when_quiet(q) == f"({q}) or (0 * ({den}))"
    assert top_level_denominator('sum(rate(x{a="1/2"}[5m]))') is None
    assert (
        zero_when_quiet('sum(rate(x{s="500"}[5m]))') == '(sum(rate(x{s="500"}[5m]))) or vector(0)'
    )
    assert zero_when_quiet('avg(up{job="x"})') is None
    mq = memory_query("ns", "web.v2", "deployment").promql
    assert 'pod=~"web\\\\.v2-[a-z0-9]+-[a-z0-9]+"' in mq


def test_prom_query_levels_and_formatting() -> None:
    above = PromQuery("p", "P", "x", "ratio", "above", 0.01, 0.05)
    below = PromQuery("a", "A", "x", "ratio", "below", 1.0, 0.5)
    assert [above.level(v) for v in (0.0, 0.01, 0.2)] == [Status.ok, Status.warn, Status.critical]
    assert [below.level(v) for v in (1.0, 0.9, 0.4)] == [Status.ok, Status.warn, Status.critical]
    assert fmt(0.123, "ratio") == "12%"
    assert fmt(0.004, "ratio") == "0.4%"
    assert fmt(6.2, "seconds") == "6.20 s"
    assert fmt(0.2, "seconds") == "200 ms"
    assert series_values([{"values": [[1, "0.5"], [2, "NaN"], [3, "1"]]}]) == [
        [1.0, 0.5],
        [3.0, 1.0],
    ]
    assert describe_trend([[i, float(i)] for i in range(10)]) == "rising over 30 min"
    assert describe_trend([[i, 1.0] for i in range(10)]) == "steady for 30 min"


def test_sparkline_floors_at_zero_and_keeps_gaps() -> None:
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([1, 1]) == "██"
    assert sparkline([0, 0.5, 1]) == "▁▅█"
    assert sparkline([None, 1]) == " █"
    assert sparkline([]) == ""
    assert len(sparkline(list(range(100)), width=30)) == 30


def test_memo_computes_once_across_threads_and_shares_errors() -> None:
    memo = Memo()
    calls: list[int] = []
    gate = threading.Event()

    def slow() -> int:
        calls.append(1)
        gate.wait(2)
        return 42

    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(memo.get("k", slow))) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # let every thread reach the memo (no assertion depends on the timing)
    gate.set()
    for t in threads:
        t.join(5)
    assert got == [42] * 5
    assert len(calls) == 1

    def boom() -> int:
        raise ValueError("down")

    for _ in range(2):
        with pytest.raises(ValueError, match="down"):
            memo.get("e", boom)
    assert memo.peek("k") == 42
    assert memo.peek("e") is None


def test_process_start_is_known_on_linux() -> None:
    since = seconds_since_process_start()
    assert since is not None and since > 0


def _r(cid: str, status: Status, **kw: Any) -> CheckResult:
    return CheckResult(cid, cid, "x", status, f"{cid} {status}", **kw)


def test_exit_code_precedence() -> None:
    ok, warn, crit = _r("a", Status.ok), _r("b", Status.warn), _r("c", Status.critical)
    late = _r("d", Status.unknown, error="no answer", error_code=6)
    denied = _r("e", Status.unknown, error="auth", error_code=7)
    assert exit_code_for([ok]) is ExitCode.OK
    assert exit_code_for([ok, late]) is ExitCode.PARTIAL
    assert exit_code_for([ok, late, denied]) is ExitCode.PERMISSION
    assert exit_code_for([warn, late]) is ExitCode.WARNINGS
    assert exit_code_for([crit, warn, denied]) is ExitCode.CRITICAL


def test_merge_signals_keeps_the_worse_value() -> None:
    merged = merge_signals(
        RB,
        [
            _r("a", Status.ok, signals={"db_up": True, "p95_seconds": 1.0, "service_down": ["x"]}),
            _r("b", Status.ok, signals={"db_up": False, "p95_seconds": 6.0, "service_down": ["y"]}),
            _r("c", Status.ok, signals={"availability": 1.0, "not_a_signal": 3}),
            _r("d", Status.ok, signals={"availability": 0.5}),
        ],
    )
    assert merged == {
        "db_up": False,
        "p95_seconds": 6.0,
        "service_down": ["x", "y"],
        "availability": 0.5,
    }


def test_a_recent_bad_deploy_of_the_gateway_gives_p0_and_a_rollback() -> None:
    pods = _r(
        "k8s.pods",
        Status.critical,
        signals={"service_down": ["gateway-api"]},
        facts={"crashloop": True},
    )
    rollout = _r(
        "k8s.rollout-history",
        Status.warn,
        facts={
            "recent_deploy": True,
            "current_revision": 5,
            "previous_revision": 4,
            "deployed_seconds_ago": 240.0,
            "change_cause": "deploy 1.9.1",
        },
    )
    db = _r("db.connectivity", Status.ok, signals={"db_up": True})
    v = decide(RB, "gateway-api", [pods, rollout, db], own=own_checks(RB, "gateway-api"))
    assert v.exit_code is ExitCode.CRITICAL
    assert v.severity is not None and v.severity["level"] == "P0"
    assert v.severity["response"] == "Page immediately"
    assert v.scenario == {"id": "gateway-api-down", "title": "Gateway API Down", "severity": "P0"}
    commands = [s.command for s in v.next_steps if s.command]
    assert commands[0] == "somactl mitigate rollback gateway-api"
    assert "previous revision 4" in (v.next_steps[0].why or "")
    assert "somactl mitigate scale gateway-api --replicas 5" in commands
    assert "Check database connectivity" in v.checked


def test_no_rollback_without_a_recent_deploy() -> None:
    pods = _r(
        "k8s.pods",
        Status.critical,
        signals={"service_down": ["gateway-api"]},
        facts={"crashloop": True},
    )
    rollout = _r("k8s.rollout-history", Status.ok, facts={"recent_deploy": False})
    v = decide(RB, "gateway-api", [pods, rollout], own=own_checks(RB, "gateway-api"))
    commands = [s.command for s in v.next_steps]
    assert "somactl mitigate rollback gateway-api" not in commands
    assert any(s["title"].startswith("Rollback") for s in v.skipped_steps)


def test_findings_about_other_services_are_elsewhere_not_in_the_exit_code() -> None:
    """Redis is fine: a critical Postgres pool (not a dependency of Redis) and the namespace's
    other rollouts are shown as elsewhere, with the diagnosis that covers them, exit 0."""
    ok = [_r(c, Status.ok) for c in ("k8s.pods", "redis.ping", "redis.memory", "prom.up")]
    pool = _r(
        "db.activity",
        Status.critical,
        signals={"db_connection_ratio": 0.95},
        facts={"idle_in_transaction": 30},
    )
    rollouts = _r("k8s.recent-rollouts", Status.warn)
    v = decide(RB, "redis", [*ok, pool, rollouts], own=own_checks(RB, "redis"))
    assert (v.status, v.exit_code) == (Status.ok, ExitCode.OK)
    assert v.severity is None and v.scenario is None and v.next_steps == []
    assert v.elsewhere is not None
    assert [(f["check"], f["status"], f["diagnose"]) for f in v.elsewhere["findings"]] == [
        ("db.activity", "critical", "somactl diagnose postgres"),
        ("k8s.recent-rollouts", "warn", None),
    ]
    assert v.elsewhere["scenarios"][0]["id"] == "database-performance"
    assert v.summary == (
        "redis: all its checks ok | elsewhere: db.activity critical "
        "(see somactl diagnose postgres) +1 more"
    )
    # a warning about the service itself is its verdict; the critical pool still is not
    hot = _r("redis.memory", Status.warn, signals={"redis_memory_ratio": 0.85})
    v = decide(RB, "redis", [hot, pool], own=own_checks(RB, "redis"))
    assert (v.status, v.exit_code) == (Status.warn, ExitCode.WARNINGS)


def test_a_check_elsewhere_that_could_not_run_makes_a_clean_diagnosis_partial() -> None:
    """Its findings do not count, but its silence does: exit 0 with errors printed would tell a
    script the sweep was complete (README: 9 when some checks could not run)."""
    ok = [_r(c, Status.ok) for c in ("k8s.pods", "redis.ping", "redis.memory", "prom.up")]
    stuck = _r("db.activity", Status.unknown, error="postgres: no response", error_code=6)
    v = decide(RB, "redis", [*ok, stuck], own=own_checks(RB, "redis"))
    assert (v.status, v.exit_code) == (Status.ok, ExitCode.PARTIAL)
    # a database this context does not configure is a choice, not a gap, for redis' diagnosis
    unset = _r("db.activity", Status.unknown, error="postgres.dsn is not set", error_code=3)
    assert decide(RB, "redis", [*ok, unset], own=own_checks(RB, "redis")).exit_code == ExitCode.OK
    assert decide(RB, "postgres", [unset], own=own_checks(RB, "postgres")).exit_code == 9
    hot = _r("redis.memory", Status.warn, signals={"redis_memory_ratio": 0.85})
    v = decide(RB, "redis", [hot, stuck], own=own_checks(RB, "redis"))
    assert v.exit_code == ExitCode.WARNINGS  # a finding about the service outranks partial


def test_a_dependency_is_part_of_the_diagnosis() -> None:
    """runbooks.yaml depends_on: gateway-api needs its Postgres and Redis, tool-service the
    adapters it serves; a notion diagnosis does not judge GitHub's rate limit."""
    assert {"db.activity", "redis.memory"} <= own_checks(RB, "gateway-api")
    assert "tools.rate-limit" not in own_checks(RB, "gateway-api")
    assert {"tools.health", "tools.recent", "tools.rate-limit"} <= own_checks(RB, "tool-service")
    assert not {"db.activity", "tools.health"} & own_checks(RB, "redis")
    pool = _r(
        "db.activity",
        Status.critical,
        signals={"db_connection_ratio": 0.95},
        facts={"idle_in_transaction": 30},
    )
    v = decide(
        RB, "gateway-api", [_r("k8s.pods", Status.ok), pool], own=own_checks(RB, "gateway-api")
    )
    assert (v.status, v.exit_code) == (Status.critical, ExitCode.CRITICAL)
    assert v.elsewhere is None
    assert v.scenario is not None and v.scenario["id"] == "database-performance"
    assert any(s.command and "kill-queries" in s.command for s in v.next_steps)
    limited = _r("tools.rate-limit", Status.critical, signals={"adapters_rate_limited": 1})
    v = decide(RB, "notion", [_r("tools.health", Status.ok), limited], own=own_checks(RB, "notion"))
    assert v.exit_code is ExitCode.OK
    assert v.elsewhere is not None
    assert v.elsewhere["findings"][0]["diagnose"] == "somactl diagnose github"
    v = decide(RB, "tool-service", [limited], own=own_checks(RB, "tool-service"))
    assert v.exit_code is ExitCode.CRITICAL


def test_pool_exhaustion_targets_idle_in_transaction_sessions() -> None:
    pool = _r(
        "db.activity",
        Status.critical,
        signals={"db_connection_ratio": 0.9},
        facts={"idle_in_transaction": 31},
    )
    v = decide(RB, "postgres", [pool], own=own_checks(RB, "postgres"))
    assert v.scenario is not None and v.scenario["id"] == "database-performance"
    assert v.severity is not None and v.severity["level"] == "P1"
    kill = next(s for s in v.next_steps if s.command and "kill-queries" in s.command)
    assert kill.command == (
        "somactl mitigate kill-queries --older-than 30s --state idle-in-transaction"
    )


def test_pool_exhaustion_aims_at_the_age_it_saw() -> None:
    for oldest, flag in ((7.9, "7s"), (2.0, "5s"), (600.0, "30s")):
        pool = _r(
            "db.activity",
            Status.critical,
            signals={"db_connection_ratio": 0.9},
            facts={"idle_in_transaction": 31, "oldest_idle_in_transaction": oldest},
        )
        v = decide(RB, "postgres", [pool], own=own_checks(RB, "postgres"))
        kill = next(s for s in v.next_steps if s.command and "kill-queries" in s.command)
        assert f"--older-than {flag} --state idle-in-transaction" in str(kill.command)


def test_rate_limited_github_suggests_its_circuit_breaker() -> None:
    health = _r(
        "tools.health",
        Status.critical,
        signals={"adapters_failing": 1, "adapters_rate_limited": 1, "service_down": ["github"]},
        facts={"failing_adapters": ["github"], "rate_limited_adapters": ["github"]},
    )
    v = decide(RB, "github", [health], own=own_checks(RB, "github"))
    assert v.severity is not None and v.severity["level"] == "P1"  # GitHub adapter rate limited
    assert v.scenario is not None and v.scenario["id"] == "tool-adapter-failures"
    commands = [s.command for s in v.next_steps if s.command]
    assert any(
        c.startswith("somactl mitigate circuit-breaker") and c.endswith(" github") for c in commands
    )


def test_redis_near_maxmemory_is_redis_memory_pressure_not_a_memory_leak() -> None:
    """A data store's memory is its data: Redis near maxmemory (or near its container's limit)
    is the redis-memory-pressure scenario; the memory leak is about an application's pods."""
    from somactl.runbook.classify import matching_scenarios

    full = _r("redis.memory", Status.critical, signals={"redis_memory_ratio": 0.97})
    v = decide(RB, "redis", [full], own=own_checks(RB, "redis"))
    assert v.scenario is not None and v.scenario["id"] == "redis-memory-pressure"
    assert v.other_scenarios == []
    assert v.severity is not None and v.severity["level"] == "P2"
    commands = [s.command for s in v.next_steps if s.command]
    assert "somactl mitigate redis-flush" in commands
    assert "somactl mitigate redis-restart" in commands
    assert not any(c.startswith("somactl mitigate restart ") for c in commands)
    # its own container near the limit: still Redis's scenario, the generic leak stands aside
    assert matching_scenarios({"service": "redis", "memory_ratio": 0.95}, RB) == (
        "redis-memory-pressure",
    )
    # an application's pods near their limit: the memory leak, as before
    assert matching_scenarios({"service": "orchestrator", "memory_ratio": 0.95}, RB) == (
        "memory-leak",
    )
    assert matching_scenarios({"memory_ratio": 0.95}, RB) == ("memory-leak",)


def test_the_runner_files_results_under_their_check_with_code_and_hint() -> None:
    from somactl.checks.base import Check, run_checks
    from somactl.core.deadline import Deadline
    from somactl.core.errors import PermissionDeniedError

    def denied(d: Any) -> CheckResult:
        raise PermissionDeniedError("postgres (u@h:1/d): authentication failed", "fix the secret")

    def misnamed(d: Any) -> CheckResult:
        return CheckResult("db.connectivity", "t", "postgres", Status.ok, "fine")

    a, b = run_checks(
        [Check("x:db.connectivity", "t", "postgres", misnamed), Check("d", "t", "pg", denied)],
        Deadline(5),
    )
    assert (a.id, a.status) == ("x:db.connectivity", Status.ok)
    assert (b.status, b.error_code, b.hint) == (Status.unknown, 7, "fix the secret")
    assert b.to_json()["error_code"] == 7
