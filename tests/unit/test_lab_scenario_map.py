"""Each lab scenario names the runbook scenario an on-call would follow for it (drill, `lab break
--list` and the runbook run tests rely on the mapping)."""

from __future__ import annotations

from somactl.lab.scenarios import SCENARIOS
from somactl.runbook.loader import load_runbook


def test_every_lab_scenario_maps_to_a_runbook_scenario() -> None:
    rb = load_runbook()
    mapping = {name: s.runbook_scenario for name, s in SCENARIOS.items()}
    assert set(mapping.values()) <= set(rb.scenarios), mapping
    assert mapping["redis-memory-pressure"] == "redis-memory-pressure"  # not gateway-api-down
    assert mapping["gateway-down"] == "gateway-api-down"
