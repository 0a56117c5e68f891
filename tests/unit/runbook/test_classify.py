"""The classifier against the runbook's own examples, and its monotonicity as a property."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from somactl.core.errors import UsageError
from somactl.runbook import classify, load_runbook, matching_scenarios, parse_signal
from somactl.runbook.schema import Runbook

REPO = Path(__file__).resolve().parents[3]
RB: Runbook = load_runbook(REPO / "runbooks.yaml")

# (runbook example, signals, level, winning rule)
SEED_EXAMPLES: list[tuple[str, dict[str, Any], str, str]] = [
    ("gateway-api 100% errors", {"error_rate": 1.0}, "P0", "complete-outage"),
    ("complete outage", {"availability": 0.0}, "P0", "complete-outage"),
    ("gateway-api crashed", {"service_down": ["gateway-api"]}, "P0", "critical-service-down"),
    ("Database down", {"db_up": False}, "P0", "database-down"),
    ("Database down (by name)", {"service_down": ["postgres"]}, "P0", "critical-service-down"),
    ("Data loss or corruption", {"data_loss": True}, "P0", "data-loss"),
    ("Security breach", {"security_breach": True}, "P0", "security-breach"),
    ("authentication failure", {"auth_failure": True}, "P0", "authentication-failure"),
    ("KAMACHIQ down", {"service_down": ["kamachiq-service"]}, "P1", "major-feature-unavailable"),
    ("p95 6 s", {"p95_seconds": 6.0}, "P1", "performance-degradation"),
    (">50% of workflows", {"adapter_failure_ratio": 0.6}, "P1", "adapter-failures-majority"),
    ("Redis unavailable", {"redis_up": False}, "P1", "redis-unavailable"),
    ("Redis down (by name)", {"service_down": ["redis"]}, "P1", "major-feature-unavailable"),
    (
        "GitHub adapter rate limited",
        {"service_down": ["github"]},
        "P1",
        "major-feature-unavailable",
    ),
    (
        "one critical service of three down",
        {"availability": 2 / 3},
        "P1",
        "major-feature-unavailable",
    ),
    ("Single tool adapter failure", {"adapters_failing": 1}, "P2", "single-adapter-failure"),
    ("Notion sync delayed", {"service_down": ["notion"]}, "P2", "minor-feature-degradation"),
    ("High error rate in specific service", {"error_rate": 0.1}, "P2", "high-error-rate"),
    ("capsule marketplace slow", {"p95_seconds": 3.0}, "P2", "minor-feature-degradation"),
    ("Cosmetic issues", {"cosmetic": True}, "P3", "cosmetic"),
    ("Non-critical monitoring gaps", {"monitoring_gap": True}, "P3", "monitoring-gap"),
    ("Documentation errors", {"docs_error": True}, "P3", "documentation-error"),
    ("Feature requests", {"feature_request": True}, "P4", "feature-request"),
    ("Optimization opportunities", {"optimization": True}, "P4", "optimization"),
    ("Technical debt", {"tech_debt": True}, "P4", "technical-debt"),
]


@pytest.mark.parametrize(("example", "signals", "level", "rule"), SEED_EXAMPLES)
def test_each_runbook_example_gets_its_level(
    example: str, signals: dict[str, Any], level: str, rule: str
) -> None:
    result = classify(signals, RB)
    assert result.level == level, example
    assert result.rule is not None and result.rule.id == rule, (example, result.fired)
    assert result.response == RB.severities[level].response  # type: ignore[index]


def test_redis_down_fires_the_redis_rule_too() -> None:
    result = classify({"redis_up": False}, RB)
    assert [r.id for r in result.fired] == ["redis-unavailable"]
    assert result.level == "P1"


def test_every_rule_that_fired_is_reported_highest_first() -> None:
    result = classify({"error_rate": 1.0, "p95_seconds": 6.0}, RB)
    assert result.level == "P0"
    assert [(r.severity, r.id) for r in result.fired] == [
        ("P0", "complete-outage"),
        ("P1", "performance-degradation"),
        ("P2", "minor-feature-degradation"),
        ("P2", "high-error-rate"),
    ]
    assert result.response is not None and result.response.label == "Page immediately"
    data = result.to_dict()
    assert data["rule"]["id"] == "complete-outage"
    assert data["response"] == {"label": "Page immediately", "seconds": 0}


def test_healthy_signals_are_not_an_incident() -> None:
    result = classify(
        {"error_rate": 0.001, "p95_seconds": 0.3, "availability": 1.0, "redis_up": True}, RB
    )
    assert result.level is None and result.fired == () and result.rule is None


def test_the_worst_down_service_decides_the_criticality() -> None:
    result = classify({"service_down": ["notion", "kamachiq-service"]}, RB)
    assert result.signals["down_criticality"] == "major"
    assert result.level == "P1"


@pytest.mark.parametrize(
    ("signals", "fragment"),
    [
        ({"error_rate": 1.5}, "error_rate: 1.5 is out of range (0..1)"),
        ({"p95_seconds": -1}, "p95_seconds: -1 is out of range (>= 0)"),
        ({"p95_seconds": float("nan")}, "p95_seconds: nan is out of range"),
        ({"adapters_failing": 1.5}, "adapters_failing: 1.5 is not a whole number"),
        ({"redis_up": "no"}, "redis_up: expected true/false"),
        ({"latency": 3}, "unknown signal 'latency'"),
        ({"service_down": ["gatway-api"]}, "unknown service 'gatway-api'"),
    ],
)
def test_bad_signals_are_usage_errors(signals: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UsageError) as exc:
        classify(signals, RB)
    assert fragment in exc.value.message


def test_parse_signal_converts_by_type() -> None:
    assert parse_signal(RB, "error_rate=0.2") == ("error_rate", 0.2)
    assert parse_signal(RB, "redis-up=false") == ("redis_up", False)
    assert parse_signal(RB, "adapters_failing=2") == ("adapters_failing", 2)
    assert parse_signal(RB, "service_down=redis,notion") == ("service_down", ("redis", "notion"))
    for bad, fragment in [
        ("error_rate", "expected NAME=VALUE"),
        ("error_rate=lots", "'lots' is not a number"),
        ("cosmetic=maybe", "'maybe' is not true/false"),
        ("nope=1", "unknown signal 'nope'"),
        ("error_rate=2", "is out of range"),
    ]:
        with pytest.raises(UsageError) as exc:
            parse_signal(RB, bad)
        assert fragment in exc.value.message and exc.value.message.startswith("--signal")


def test_scenarios_are_suggested_from_signals() -> None:
    assert matching_scenarios({"service_down": ["gateway-api"]}, RB) == ("gateway-api-down",)
    assert matching_scenarios({"service": "gateway-api", "error_rate": 1.0}, RB) == (
        "gateway-api-down",
    )
    assert matching_scenarios({"service": "orchestrator", "error_rate": 1.0}, RB) == ()
    assert matching_scenarios({"security_breach": True}, RB) == ("security-incident",)
    assert matching_scenarios({"long_running_queries": 3}, RB) == ("database-performance",)
    assert matching_scenarios({"adapters_failing": 1}, RB) == ("tool-adapter-failures",)
    assert matching_scenarios({"memory_ratio": 0.95}, RB) == ("memory-leak",)


# -- monotonicity: worsening any signal never lowers the severity -----------------------------

SPECS = RB.classification.signals
RANKED = [n for n, s in SPECS.items() if s.worse is not None and s.derived_from is None]
SERVICES = sorted(RB.services)


def _rank(level: str | None) -> int:
    return 5 if level is None else int(level[1])


def _value(name: str) -> st.SearchStrategy[Any]:
    kind = SPECS[name].type
    if kind == "ratio":
        return st.floats(0, 1)
    if kind == "seconds":
        return st.floats(0, 60)
    if kind == "count":
        return st.integers(0, 20)
    if kind == "bool":
        return st.booleans()
    if kind == "services":
        return st.lists(st.sampled_from(SERVICES), max_size=3)
    return st.sampled_from(SERVICES)


@st.composite
def signal_sets(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from([*RANKED, "service_down"]), unique=True, max_size=8))
    return {name: draw(_value(name)) for name in names}


def _worsen(draw: st.DrawFn, name: str, value: Any) -> Any:
    spec = SPECS[name]
    if spec.type == "services":
        return [*value, draw(st.sampled_from(SERVICES))]
    if spec.type == "bool":
        return spec.worse if draw(st.booleans()) else value
    if spec.type == "count":
        return value + draw(st.integers(0, 5))
    if spec.worse == "higher":
        top = 1.0 if spec.type == "ratio" else 120.0
        return draw(st.floats(value, top))
    return draw(st.floats(0, value))


@st.composite
def worsened(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    base = draw(signal_sets())
    worse = dict(base)
    for name in draw(st.lists(st.sampled_from([*RANKED, "service_down"]), unique=True)):
        if name in worse:
            worse[name] = _worsen(draw, name, worse[name])
        else:  # learning a signal can only fire more rules
            worse[name] = draw(_value(name))
    return base, worse


@settings(max_examples=400, deadline=None)
@given(worsened())
def test_worsening_a_signal_never_lowers_the_severity(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    base, worse = pair
    before, after = classify(base, RB), classify(worse, RB)
    assert _rank(after.level) <= _rank(before.level), (base, worse, before.fired, after.fired)
    assert {r.id for r in before.fired} <= {r.id for r in after.fired}


@settings(max_examples=200, deadline=None)
@given(signal_sets())
def test_the_winner_is_the_first_fired_rule_of_the_highest_level(signals: dict[str, Any]) -> None:
    result = classify(signals, RB)
    if result.fired:
        assert result.rule == result.fired[0]
        assert result.level == min(r.severity for r in result.fired)
        order = [r.id for r in RB.classification.rules]
        same = [r.id for r in result.fired if r.severity == result.level]
        assert same == sorted(same, key=order.index)
    else:
        assert result.level is None
