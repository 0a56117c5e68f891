"""`somactl runbook list` and `runbook run --plan`: the steps as commands, nothing run (exit 0);
unknown scenario or service: exit 2 naming the known ones, before anything is touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from somactl.app import run

Cap = pytest.CaptureFixture[str]

PLANS = {
    ("gateway-api-down", None): """\
# runbook gateway-api-down: Gateway API Down (typically P0), for gateway-api: 5 steps
# 1. Check Kubernetes pod status
somactl status
# 2. Review recent deployments
somactl rollout history gateway-api
# 3. Check database connectivity
somactl db pool
# 4. Rollback if recent deployment (only when a deployment happened shortly before the incident)
somactl mitigate rollback gateway-api
# 5. Scale up replicas
somactl mitigate scale gateway-api --replicas 5
""",
    ("database-performance", None): """\
# runbook database-performance: Database Performance Issues (typically P1), for postgres: 4 steps
# 1. Check slow query log
somactl db activity --slow
# 2. Terminate long-running queries
somactl mitigate kill-queries --older-than 5m
# 3. Increase connection pool (manual)
#    Raise max_connections / the services' pool size (the PIR example went from 100 to 200); \
see Scaling Procedures.
#    see Scaling Procedures: docs/runbooks/scaling_procedures.md
# 4. Enable read replicas (manual)
#    Route read-only traffic to the read replicas; see Scaling Procedures.
#    see Scaling Procedures: docs/runbooks/scaling_procedures.md
""",
    ("tool-adapter-failures", "github"): """\
# runbook tool-adapter-failures: Tool Adapter Failures (typically P2), for github: 4 steps
# 1. Check rate limits
somactl tools rate-limit github
# 2. Verify API credentials
somactl tools health github
#    A 401 or 403 from the adapter's health endpoint means its API token is invalid or \
expired; rotate it.
# 3. Enable circuit breaker
somactl mitigate circuit-breaker enable github
# 4. Fallback to alternative tools (manual)
#    Route affected workflows to an alternative tool until the adapter recovers; see Tool \
Health Monitoring.
#    see Tool Health Monitoring: docs/runbooks/tool_health_monitoring.md
""",
    ("memory-leak", "orchestrator"): """\
# runbook memory-leak: Memory Leak (typically P2), for orchestrator: 4 steps
# 1. Identify service with high memory
somactl status
# 2. Capture heap dump (manual)
#    Before restarting, capture a heap dump of one affected pod (e.g. `kubectl exec` into it \
and run the runtime's heap-dump tool) and copy it out with `kubectl cp`.
# 3. Restart affected pods
somactl mitigate restart orchestrator
# 4. File bug with heap dump (manual)
#    File a bug for the owning team with the heap dump, the memory graph and the pod's \
restart count attached.
""",
    ("security-incident", "kamachiq-service"): """\
# runbook security-incident: Security Incident (typically P0), for kamachiq-service: 5 steps
# 1. IMMEDIATELY page Security Lead (manual)
#    Page the Security Lead now, before anything else.
#    Security Lead: Charlie (@charlie) (secondary: David (@david))
# 2. Isolate affected systems (high impact: type the name)
somactl mitigate isolate kamachiq-service
# 3. Preserve logs for forensics
somactl logs kamachiq-service --all --save
# 4. Follow security runbook (see docs/runbooks/security.md) (manual)
#    see Security Runbook: docs/runbooks/security.md
# 5. Notify legal if data breach suspected (manual) (only when a data breach is suspected)
#    escalate to Legal: For security incidents or data breaches
""",
}


@pytest.mark.parametrize(("scenario", "service"), list(PLANS), ids=[s for s, _ in PLANS])
def test_plan_prints_each_scenario_as_commands(
    scenario: str, service: str | None, capsys: Cap
) -> None:
    argv = ["runbook", "run", scenario, *([service] if service else []), "--plan"]
    assert run(argv) == 0  # exit 0: nothing run
    out, err = capsys.readouterr()
    assert out == PLANS[(scenario, service)]
    assert err == ""


def test_plan_without_a_service_uses_placeholders(capsys: Cap) -> None:
    assert run(["runbook", "run", "memory-leak", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "for SERVICE: 4 steps" in out
    assert "somactl mitigate restart SERVICE\n" in out


def test_plan_json_has_the_steps(capsys: Cap) -> None:
    rc = run(["-o", "json", "runbook", "run", "gateway-api-down", "--plan"])
    env = json.loads(capsys.readouterr().out)
    assert rc == 0 and env["exit_code"] == 0 and env["command"] == "runbook run"
    steps: list[dict[str, Any]] = env["data"]["steps"]
    assert [(s["n"], s["kind"], s["checks"] or s["action"]) for s in steps] == [
        (1, "check", ["k8s.pods"]),
        (2, "check", ["k8s.rollout-history"]),
        (3, "check", ["db.connectivity"]),
        (4, "action", "rollback"),
        (5, "action", "scale"),
    ]
    assert steps[3]["when"] == "a deployment happened shortly before the incident"
    assert steps[4]["params"] == {"replicas": 5} and steps[4]["confirm"] == "yes"


def test_unknown_scenario_is_exit_2_naming_the_known_ones(capsys: Cap) -> None:
    assert run(["runbook", "run", "volcano", "--plan"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'volcano'" in err
    assert (
        "known scenarios: database-performance, gateway-api-down, memory-leak, "
        "redis-memory-pressure, security-incident, tool-adapter-failures" in err
    )
    assert run(["runbook", "run", "gateway-api-dwon"]) == 2
    assert "did you mean gateway-api-down?" in capsys.readouterr().err


def test_unknown_service_is_exit_2(capsys: Cap) -> None:
    assert run(["runbook", "run", "memory-leak", "teapot"]) == 2
    err = capsys.readouterr().err
    assert "unknown service 'teapot'" in err and "known services:" in err


def test_a_scenario_without_a_service_needs_one(capsys: Cap) -> None:
    assert run(["runbook", "run", "tool-adapter-failures"]) == 2
    err = capsys.readouterr().err
    assert "scenario tool-adapter-failures is not tied to a service: name one" in err
    assert "somactl runbook run tool-adapter-failures github" in err
    assert "(services: github, notion, slack, jira)" in err


def test_skip_naming_no_step_is_exit_2(capsys: Cap) -> None:
    assert run(["runbook", "run", "gateway-api-down", "--skip", "9"]) == 2
    err = capsys.readouterr().err
    assert "--skip '9': no such step" in err
    assert "1 (k8s.pods)" in err and "4 (rollback)" in err


def test_list_shows_ids_titles_step_counts_and_signals(capsys: Cap) -> None:
    assert run(["runbook", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "TITLE", "SEVERITY"]
    gw = next(line for line in lines if line.startswith("gateway-api-down"))
    assert "Gateway API Down" in gw and "5 (3 checks, 2 actions, 0 manual)" in gw
    assert "service_down, service, availability, error_rate" in gw
    rc = run(["-o", "json", "runbook", "list"])
    env = json.loads(capsys.readouterr().out)
    assert rc == 0
    rows = {r["id"]: r for r in env["data"]}
    assert list(rows) == [
        "gateway-api-down",
        "database-performance",
        "tool-adapter-failures",
        "memory-leak",
        "redis-memory-pressure",
        "security-incident",
    ]
    assert rows["security-incident"]["steps"] == 5
    assert rows["security-incident"]["manual"] == 3
    assert rows["memory-leak"]["signals"] == ["memory_ratio"]
    assert rows["redis-memory-pressure"]["signals"] == [
        "redis_memory_ratio",
        "service",
        "memory_ratio",
    ]


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["runbook", "list"], 0),
        (["runbook", "run", "gateway-api-down", "--plan"], 0),
        (["runbook", "run", "volcano"], 2),
        (["runbook", "run", "memory-leak", "teapot"], 2),
    ],
)
def test_list_plan_and_usage_errors_touch_no_backend(
    argv: list[str], code: int, tmp_path: Path
) -> None:
    """--plan runs nothing and a usage error is caught before any backend library loads."""
    heavy = ["kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"]
    program = (
        "import sys\nfrom somactl.app import run\n"
        f"rc = run({argv!r})\n"
        f"print('RC=%d HEAVY=%s' % (rc, ','.join(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SOMACTL_STATE_DIR": str(tmp_path)},
    )
    assert proc.stdout.strip().splitlines()[-1] == f"RC={code} HEAVY="
