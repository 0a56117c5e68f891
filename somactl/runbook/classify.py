"""Severity classification: measured signals -> the runbook's rules -> a level (P0-P4).

The rules are data (runbooks.yaml `classification.rules`); this module only evaluates them. An
absent signal is unknown: a comparison on it never fires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from somactl.core.errors import UsageError
from somactl.runbook.schema import CRITICALITY_RANK, LEVELS, Condition, Runbook, SignalSpec, Target

SignalValue = float | int | bool | str | Sequence[str]
Signals = dict[str, SignalValue]


@dataclass(frozen=True)
class FiredRule:
    id: str
    severity: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "description": self.description}


@dataclass(frozen=True)
class Classification:
    """The outcome: `level` is None when no rule fired (not an incident by the runbook)."""

    level: str | None
    name: str | None
    rule: FiredRule | None
    fired: tuple[FiredRule, ...]
    response: Target | None
    signals: Mapping[str, SignalValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "response": None if self.response is None else self.response.model_dump(),
            "rule": None if self.rule is None else self.rule.to_dict(),
            "fired": [r.to_dict() for r in self.fired],
            "signals": {k: list(v) if isinstance(v, tuple) else v for k, v in self.signals.items()},
        }


def classify(
    signals: Mapping[str, SignalValue | None], runbook: Runbook | None = None
) -> Classification:
    """Evaluate every rule, highest severity first; the first rule of the highest level wins.

    `signals` maps names of `classification.signals` to values (None = unknown). Unknown names
    and out-of-range values are UsageErrors.
    """
    if runbook is None:
        from somactl.runbook.loader import load_runbook

        runbook = load_runbook()
    values = normalize_signals(runbook, signals)
    rank = {lvl: i for i, lvl in enumerate(LEVELS)}
    rules = sorted(runbook.classification.rules, key=lambda r: rank[r.severity])
    fired = tuple(
        FiredRule(r.id, r.severity, r.description) for r in rules if _holds(r.when, values, runbook)
    )
    if not fired:
        return Classification(None, None, None, (), None, values)
    win = fired[0]
    sev = runbook.severities[win.severity]  # type: ignore[index]  # Level by schema
    return Classification(win.severity, sev.name, win, fired, sev.response, values)


def matching_scenarios(
    signals: Mapping[str, SignalValue | None], runbook: Runbook
) -> tuple[str, ...]:
    """Ids of the scenarios whose `match` holds for `signals` (for diagnose to suggest).

    With the `service` signal (the service being diagnosed), a scenario of that service is more
    specific than a scenario of no service: where the service's own scenario holds on every
    signal that makes a generic one hold, the generic one is left out (Redis near its memory
    limit is redis-memory-pressure, not the memory leak of an application's pods).
    """
    values = normalize_signals(runbook, signals)
    held = {
        sid: _holding_signals(sc.match, values, runbook)
        for sid, sc in runbook.scenarios.items()
        if sc.match is not None and _holds(sc.match, values, runbook)
    }
    service = values.get("service")
    covered: set[str] = set()
    for sid, names in held.items():
        if service is not None and runbook.scenarios[sid].service == service:
            covered |= names
    return tuple(
        sid
        for sid, names in held.items()
        if runbook.scenarios[sid].service is not None or not names or not names <= covered
    )


def _holding_signals(cond: Condition, values: Signals, runbook: Runbook) -> set[str]:
    """The signals (but `service`) of the comparisons that make `cond` hold."""
    if cond.all_ is not None:
        return {n for c in cond.all_ for n in _holding_signals(c, values, runbook)}
    if cond.any_ is not None:
        return {
            n
            for c in cond.any_
            if _holds(c, values, runbook)
            for n in _holding_signals(c, values, runbook)
        }
    if cond.signal is None or cond.signal == "service" or not _holds(cond, values, runbook):
        return set()
    return {cond.signal}


def normalize_signals(runbook: Runbook, signals: Mapping[str, SignalValue | None]) -> Signals:
    specs = runbook.classification.signals
    out: Signals = {}
    for name, raw in signals.items():
        if raw is None:
            continue
        spec = specs.get(name)
        if spec is None:
            raise UsageError(
                f"unknown signal {name!r}", f"known signals: {', '.join(sorted(specs))}"
            )
        out[name] = _coerce(runbook, name, spec, raw)
    for name, spec in specs.items():
        if spec.derived_from and name not in out and spec.derived_from in out:
            downs = out[spec.derived_from]
            if isinstance(downs, tuple) and downs:  # services signals are tuples after _coerce
                out[name] = max(
                    (runbook.services[s].criticality for s in downs),
                    key=CRITICALITY_RANK.__getitem__,
                )
    return out


def parse_signal(
    runbook: Runbook, assignment: str, *, option: str = "--signal"
) -> tuple[str, SignalValue]:
    """`name=value` as typed on a command line, converted to the signal's type."""
    name, sep, text = assignment.partition("=")
    name = name.strip().replace("-", "_")
    specs = runbook.classification.signals
    if not sep or not name:
        raise UsageError(
            f"{option}: expected NAME=VALUE, got {assignment!r}", "e.g. --signal error_rate=0.2"
        )
    spec = specs.get(name)
    if spec is None:
        raise UsageError(
            f"{option}: unknown signal {name!r}", f"known signals: {', '.join(sorted(specs))}"
        )
    text = text.strip()
    value: SignalValue
    if spec.type == "bool":
        low = text.lower()
        if low not in ("true", "false", "yes", "no", "1", "0"):
            raise UsageError(f"{option} {name}: {text!r} is not true/false")
        value = low in ("true", "yes", "1")
    elif spec.type in ("ratio", "seconds"):
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{option} {name}: {text!r} is not a number") from None
    elif spec.type == "count":
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{option} {name}: {text!r} is not a whole number") from None
    elif spec.type == "services":
        value = tuple(s.strip() for s in text.split(",") if s.strip())
    else:
        value = text
    return name, _coerce(runbook, name, spec, value, label=f"{option} {name}")


def _coerce(
    runbook: Runbook, name: str, spec: SignalSpec, raw: SignalValue, *, label: str | None = None
) -> SignalValue:
    label = label or name
    kind = spec.type
    if kind == "bool":
        if not isinstance(raw, bool):
            raise UsageError(f"{label}: expected true/false, got {raw!r}")
        return raw
    if kind in ("ratio", "seconds", "count"):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise UsageError(f"{label}: expected a number, got {raw!r}")
        if not math.isfinite(raw) or raw < 0 or (kind == "ratio" and raw > 1):
            rng = "0..1" if kind == "ratio" else ">= 0"
            raise UsageError(f"{label}: {raw!r} is out of range ({rng})")
        if kind == "count":
            if raw != int(raw):
                raise UsageError(f"{label}: {raw!r} is not a whole number")
            return int(raw)
        return float(raw)
    if kind == "criticality":
        if raw not in CRITICALITY_RANK:
            raise UsageError(f"{label}: expected one of {', '.join(CRITICALITY_RANK)}, got {raw!r}")
        return raw
    if kind == "service":
        if not isinstance(raw, str):
            raise UsageError(f"{label}: expected a service name, got {raw!r}")
        runbook.service(raw)
        return raw
    if isinstance(raw, (int, float)):
        raise UsageError(f"{label}: expected service names, got {raw!r}")
    names = (raw,) if isinstance(raw, str) else tuple(raw)
    for svc in names:
        runbook.service(str(svc))
    return tuple(dict.fromkeys(str(s) for s in names))


def _holds(cond: Condition, values: Signals, runbook: Runbook) -> bool:
    if cond.all_ is not None:
        return all(_holds(c, values, runbook) for c in cond.all_)
    if cond.any_ is not None:
        return any(_holds(c, values, runbook) for c in cond.any_)
    if cond.signal is None or cond.signal not in values:
        return False
    have = values[cond.signal]
    op, want = cond.op, cond.value
    if op == "is_true":
        return have is True
    if op == "is_false":
        return have is False
    if isinstance(have, tuple):  # services: eq = includes
        return (want in have) if op == "eq" else (want not in have)
    a: float
    b: float
    if isinstance(have, str):
        if have in CRITICALITY_RANK and isinstance(want, str) and want in CRITICALITY_RANK:
            a, b = CRITICALITY_RANK[have], CRITICALITY_RANK[want]
        else:
            return (have == want) if op == "eq" else (have != want) if op == "ne" else False
    elif isinstance(have, (int, float)) and isinstance(want, (int, float)):
        if isinstance(have, bool) or isinstance(want, bool):
            return False
        a, b = float(have), float(want)
    else:
        return False
    return {
        "gt": a > b,
        "ge": a >= b,
        "lt": a < b,
        "le": a <= b,
        "eq": a == b,
        "ne": a != b,
    }[str(op)]
