"""Templates render the runbook's own messages, PIR and command lines exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from somactl.core.errors import UsageError
from somactl.runbook import (
    load_runbook,
    render_channel,
    render_command,
    render_pir,
    render_template,
)
from somactl.runbook.templates import placeholders, render_promql

REPO = Path(__file__).resolve().parents[3]
RB = load_runbook(REPO / "runbooks.yaml")

# Copied from docs/runbooks/incident-response-runbook.md (sections 2, 5, 6 and 7).
SEED_DECLARATION = """🚨 INCIDENT DECLARED - P0
Title: Gateway API Down
Impact: All API requests failing (100% error rate)
Assigned: @oncall-engineer
War room: #incident-<number>
Status page: https://status.somagent.ai"""

SEED_UPDATE = """Update #3 - 14:45 UTC
Status: Investigating
Impact: Gateway API 503 errors affecting 80% of requests
Actions: Rolled back deployment to v1.2.3, monitoring recovery
Next update: 15:00 UTC"""

SEED_RESOLUTION = """✅ RESOLVED - 15:30 UTC
Root cause: Database connection pool exhaustion
Fix: Increased max_connections from 100 to 200
Duration: 45 minutes"""

SEED_PIR = """# Post-Incident Review: Gateway API Outage (2024-01-15)

## Summary
- **Date:** 2024-01-15 14:00 UTC
- **Duration:** 45 minutes
- **Severity:** P0
- **Impact:** 100% of API requests failed

## Timeline
- 14:00 - Alert triggered (gateway_api_down)
- 14:03 - Incident declared, IC paged
- 14:05 - Investigation started
- 14:15 - Root cause identified (DB connection pool exhaustion)
- 14:20 - Mitigation applied (increased max_connections)
- 14:30 - Service recovered
- 14:45 - Incident resolved

## Root Cause
Database connection pool exhausted due to spike in traffic from new customer onboarding.

## What Went Well
- Alert fired within 30 seconds
- IC responded in 3 minutes
- Clear war room communication

## What Went Wrong
- No autoscaling configured
- Database connection limits too low
- Missing capacity planning for traffic spike

## Action Items
- [ ] Configure autoscaling for gateway-api (@alice, Due: 2024-01-20)
- [ ] Increase DB connection pool to 500 (@bob, Due: 2024-01-18)
- [ ] Add capacity planning dashboard (@charlie, Due: 2024-01-25)
- [ ] Document connection pool tuning (@david, Due: 2024-01-22)

## Lessons Learned
1. Always load test before major customer onboarding
2. Autoscaling should be default for all services
3. Database connection pool should scale with replica count
"""


def test_declaration_renders_the_runbook_message() -> None:
    text = render_template(
        "declaration",
        runbook=RB,
        severity="P0",
        title="Gateway API Down",
        impact="All API requests failing (100% error rate)",
        assigned="@oncall-engineer",
        war_room="#incident-<number>",
        status_page="https://status.somagent.ai",
    )
    assert text == SEED_DECLARATION


def test_update_renders_the_runbook_message() -> None:
    text = RB.render_template(
        "update",
        number=3,
        time="14:45",
        status="Investigating",
        impact="Gateway API 503 errors affecting 80% of requests",
        actions="Rolled back deployment to v1.2.3, monitoring recovery",
        next_time="15:00",
    )
    assert text == SEED_UPDATE


def test_resolution_renders_the_runbook_message() -> None:
    text = render_template(
        "resolution",
        runbook=RB,
        time="15:30",
        root_cause="Database connection pool exhaustion",
        fix="Increased max_connections from 100 to 200",
        duration="45 minutes",
    )
    assert text == SEED_RESOLUTION


@pytest.mark.parametrize(
    ("name", "seed"),
    [("declaration", SEED_DECLARATION), ("update", SEED_UPDATE), ("resolution", SEED_RESOLUTION)],
)
def test_each_template_example_renders_the_runbook_message(name: str, seed: str) -> None:
    example = RB.communication.templates[name].example
    assert render_template(name, runbook=RB, **example) == seed


def test_war_room_channel_and_status_page() -> None:
    assert render_channel("war-room", runbook=RB, number=1234) == "#incident-1234"
    assert RB.communication.status_page == "https://status.somagent.ai"
    assert [RB.communication.channels[c].name for c in RB.communication.update_channels] == [
        "#incident-{number}",
        "#general",
    ]


def test_missing_fields_and_unknown_templates_are_usage_errors() -> None:
    with pytest.raises(UsageError) as exc:
        render_template("update", runbook=RB, number=1, time="10:00")
    assert exc.value.message == "template update needs status, impact, actions, next_time"
    with pytest.raises(UsageError) as exc:
        render_template("farewell", runbook=RB)
    assert "known templates: declaration, resolution, update" in exc.value.hint


def test_values_are_never_formatted_again() -> None:
    text = render_template(
        "resolution",
        runbook=RB,
        time="1",
        root_cause="{fix} {0} {__class__}",
        fix="f",
        duration="d",
    )
    assert "Root cause: {fix} {0} {__class__}" in text


def test_placeholders_refuse_anything_but_plain_names() -> None:
    assert placeholders("a {b} {c} {b}") == ("b", "c")
    for bad in ["{}", "{0}", "{a.b}", "{a[0]}", "{a!r}", "{a:>5}", "{A}"]:
        with pytest.raises(ValueError, match="placeholder"):
            placeholders(bad)
    with pytest.raises(ValueError):
        placeholders("unbalanced }")


def test_pir_example_renders_the_runbook_document() -> None:
    example = RB.pir.example
    assert example is not None
    assert render_pir(RB.pir, example.fields, example.items) == SEED_PIR


# The runbook's command lines, rendered for the service it names.
SEED_COMMANDS: list[tuple[str, str, str | None, dict[str, str], str]] = [
    (
        "checks",
        "db.connectivity",
        None,
        {},
        'psql -h $DB_HOST -U somagent -d somagent -c "SELECT 1"',
    ),
    ("checks", "redis.ping", None, {}, "redis-cli -h $REDIS_HOST ping"),
    ("checks", "git.recent-commits", None, {}, 'git log --since="1 hour ago" --oneline'),
    (
        "checks",
        "tools.rate-limit",
        "github",
        {},
        'curl -H "Authorization: token $GITHUB_TOKEN" https://api.github.com/rate_limit',
    ),
    ("actions", "redis-flush", "redis", {}, "redis-cli FLUSHALL"),
    ("checks", "k8s.pods", None, {}, "kubectl get pods -n somagent-production"),
    (
        "checks",
        "k8s.logs",
        "gateway-api",
        {},
        "kubectl logs -n somagent-production deployment/gateway-api --tail=200",
    ),
    (
        "checks",
        "k8s.rollout-history",
        "gateway-api",
        {},
        "kubectl rollout history deployment/gateway-api -n somagent-production",
    ),
    ("checks", "tools.health", "github", {}, "curl http://localhost:8003/tools/github/health"),
    ("checks", "tools.recent", None, {}, "curl http://localhost:8003/tools/recent?limit=50"),
    (
        "actions",
        "rollback",
        "gateway-api",
        {},
        "kubectl rollout undo deployment/gateway-api -n somagent-production",
    ),
    (
        "actions",
        "scale",
        "gateway-api",
        {},
        "kubectl scale deployment/gateway-api --replicas=5 -n somagent-production",
    ),
    (
        "actions",
        "scale-out",
        "gateway-api",
        {},
        "kubectl scale deployment/gateway-api --replicas=10 -n somagent-production",
    ),
    (
        "actions",
        "restart",
        "gateway-api",
        {},
        "kubectl rollout restart deployment/gateway-api -n somagent-production",
    ),
    (
        "actions",
        "db-restart",
        "postgres",
        {},
        "kubectl rollout restart statefulset/postgres -n somagent-production",
    ),
    (
        "actions",
        "redis-restart",
        "redis",
        {},
        "kubectl rollout restart deployment/redis -n somagent-production",
    ),
    (
        "actions",
        "autoscale",
        "gateway-api",
        {},
        "kubectl autoscale deployment/gateway-api --min=3 --max=10 --cpu-percent=70",
    ),
    (
        "actions",
        "circuit-breaker-enable",
        "github",
        {},
        "curl -X POST http://localhost:8003/tools/github/circuit-breaker/enable",
    ),
]


@pytest.mark.parametrize(("section", "entry", "service", "params", "expected"), SEED_COMMANDS)
def test_command_templates_render_the_runbook_lines(
    section: str, entry: str, service: str | None, params: dict[str, str], expected: str
) -> None:
    item = RB.checks[entry] if section == "checks" else RB.actions[entry]
    defaults = getattr(item, "params", {})
    assert item.command is not None
    assert render_command(item.command, RB, service, **{**defaults, **params}) == expected


def test_somactl_templates_render_for_a_service() -> None:
    action = RB.action("scale")
    assert action.somactl is not None
    text = render_command(action.somactl, RB, "gateway-api", **action.params)
    assert text == "somactl mitigate scale gateway-api --replicas 5"
    with pytest.raises(UsageError, match="needs service"):
        render_command(action.somactl, RB, None, **action.params)


def test_promql_templates_scope_to_a_job() -> None:
    assert (
        render_promql('avg(up{job="{job}"})', job="orchestrator") == 'avg(up{job="orchestrator"})'
    )
    assert RB.query("redis-memory").for_job("redis") == (
        'redis_memory_used_bytes{job="redis"} / redis_memory_max_bytes{job="redis"}'
    )
    with pytest.raises(UsageError):
        render_promql('up{job="{job}"}')
