"""runbooks.yaml as data: schema, loader (file:line errors), severity classification, templates."""

from somactl.runbook.classify import (
    Classification,
    FiredRule,
    SignalValue,
    classify,
    matching_scenarios,
    normalize_signals,
    parse_signal,
)
from somactl.runbook.loader import default_path, load_runbook, parse_runbook, shipped_path
from somactl.runbook.schema import Runbook
from somactl.runbook.templates import render_channel, render_command, render_pir, render_template

__all__ = [
    "Classification",
    "FiredRule",
    "Runbook",
    "SignalValue",
    "classify",
    "default_path",
    "load_runbook",
    "matching_scenarios",
    "normalize_signals",
    "parse_runbook",
    "parse_signal",
    "render_channel",
    "render_command",
    "render_pir",
    "render_template",
    "shipped_path",
]
