"""Prometheus checks: one runbook query for one service, its value against the runbook's
thresholds, and the last 30 minutes as a series (a range query) so the on-call sees the shape.

The queries and thresholds come from runbooks.yaml through the ops layer; this module only
evaluates them (checks sit below the runbook layer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from somactl.checks.base import CheckResult, Status
from somactl.core.deadline import Deadline
from somactl.core.exitcodes import ExitCode

RANGE_MINUTES = 30
RANGE_STEP = "60s"
# A value over the runbook's window (5m) that is warn or critical is re-read over the last
# two minutes: right after a fix the 5-minute rate still averages in the broken minutes, and
# the on-call must see that it is already falling (the status stays the runbook's). Two
# minutes hold at least 4 samples at a 30 s scrape interval; one minute could hold one.
RECENT_SECONDS = 120
RECENT_BUDGET = 2.0  # seconds: the extra query never costs the finding itself its deadline
_RANGE = re.compile(r"\[(\d+)([smhd])\]")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def with_window(promql: str, seconds: float) -> str:
    """The query with every range selector (`[5m]`) set to `seconds`: after a fix, a 5-minute
    window would still average in the broken minutes before it."""
    return _RANGE.sub(f"[{max(1, int(seconds))}s]", promql)


def longest_window(promql: str) -> int:
    """The longest range selector of the query, in seconds (0: none)."""
    return max((int(n) * _UNIT_SECONDS[u] for n, u in _RANGE.findall(promql)), default=0)


@dataclass(frozen=True)
class PromQuery:
    """A query ready to run: PromQL rendered for one service, thresholds, the signal it feeds."""

    check_id: str
    title: str
    promql: str
    unit: str
    direction: Literal["above", "below"]
    warn: float
    critical: float
    signal: str | None = None
    # the signal's value is clamped into this range (see ops.plan for why)
    signal_max: float | None = None
    signal_min: float | None = None
    # an empty answer is not a gap in monitoring (e.g. optional container metrics): ok, say so
    no_data_ok: bool = False
    # what an empty answer means: "unknown" (no data) or a value (e.g. 0 errors)
    empty_means: float | None = None
    # the PromQL actually sent, when it differs from the runbook's (see ops.diagnose)
    executed: str | None = None

    def level(self, value: float) -> Status:
        if self.direction == "above":
            if value >= self.critical:
                return Status.critical
            return Status.warn if value >= self.warn else Status.ok
        if value < self.critical:
            return Status.critical
        return Status.warn if value < self.warn else Status.ok


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if math.isinf(value):
        return "inf"
    if unit == "ratio":
        return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "per-second":
        return f"{value:.2f}/s"
    if unit == "bytes":
        return f"{value / 1024 / 1024:.1f} MiB"
    return f"{value:g}"


def series_values(result: list[dict[str, Any]]) -> list[list[float]]:
    """The first series of a range answer as [[t, v], ...] (NaN/Inf dropped)."""
    if not result:
        return []
    out: list[list[float]] = []
    for t, v in result[0].get("values") or []:
        try:
            fv = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(fv):
            out.append([float(t), fv])
    return out


def _value(result: list[dict[str, Any]]) -> float | None:
    if not result:
        return None
    try:
        return float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def query_check(
    url: str, query: PromQuery, deadline: Deadline, *, with_range: bool = True
) -> CheckResult:
    from somactl.clients.prometheus import PromClient, PromTarget

    client = PromClient(PromTarget(url), deadline)
    promql = query.executed or query.promql
    value = _value(client.query(promql))
    series: list[list[float]] = []
    raw: dict[str, Any] = {}
    if with_range:
        ranged = client.query_range(promql, minutes=RANGE_MINUTES, step=RANGE_STEP)
        series = series_values(ranged)
        raw["range.json"] = {"promql": promql, "step": RANGE_STEP, "result": ranged}
    thresholds = f"warn {fmt(query.warn, query.unit)}, critical {fmt(query.critical, query.unit)}"
    evidence: dict[str, Any] = {
        "promql": query.promql,
        "executed": promql if promql != query.promql else None,
        "unit": query.unit,
        "warn": query.warn,
        "critical": query.critical,
        "direction": query.direction,
        "series": [round(v, 6) for _, v in series],
        "series_minutes": RANGE_MINUTES if with_range else None,
    }
    if value is None and query.empty_means is not None:
        value = query.empty_means
    if value is None or math.isnan(value):
        what = "no data" if value is None else "no traffic (0/0)"
        evidence["value"] = None
        gap = value is None and not query.no_data_ok
        return CheckResult(
            query.check_id,
            query.title,
            "prometheus",
            Status.unknown if gap else Status.ok,
            f"{what} for {query.promql}",
            evidence=evidence,
            raw=raw,
            error=f"prometheus: {what} for {query.promql}" if gap else None,
            error_code=int(ExitCode.PARTIAL) if gap else None,
        )
    if math.isinf(value):
        evidence["value"] = None
        return CheckResult(
            query.check_id,
            query.title,
            "prometheus",
            Status.ok,
            f"{query.title}: infinite (a zero denominator, e.g. no limit set)",
            evidence=evidence,
            raw=raw,
        )
    status = query.level(value)
    evidence["value"] = value
    signals: dict[str, Any] = {}
    if query.signal:
        sig = max(0.0, value)
        if query.unit == "ratio":
            sig = min(1.0, sig)
        if query.signal_max is not None:
            sig = min(sig, query.signal_max)
        if query.signal_min is not None:
            sig = max(sig, query.signal_min)
        signals[query.signal] = round(sig, 6)
    summary = f"{fmt(value, query.unit)} ({thresholds})"
    recent = _recent(url, query, status, deadline)
    if recent is not None:
        evidence["recent"] = recent
        summary += f"; last {RECENT_SECONDS // 60}m: {fmt(recent['value'], query.unit)}"
        if recent["status"] == "ok":
            window = longest_window(promql) // 60
            summary += f", under the thresholds (the {window}m window still holds earlier minutes)"
    trend = describe_trend(series, query.unit)
    if trend:
        summary += f"; {trend}"
    return CheckResult(
        query.check_id,
        query.title,
        "prometheus",
        status,
        summary,
        evidence=evidence,
        signals=signals,
        facts={"value": value},
        raw=raw,
    )


def _recent(
    url: str, query: PromQuery, status: Status, deadline: Deadline
) -> dict[str, Any] | None:
    """The value over the last two minutes, when the runbook's window says warn/critical.

    It reads the runbook's own PromQL, or the executed form when that only turns "no error
    series while there is traffic" into 0; never a bare `or vector(0)`, which reads 0 for a
    target nobody scraped in the window (a dead gateway would look recovered). An empty
    answer is no recent value. Its own short deadline: a slow Prometheus costs this line,
    never the finding."""
    from somactl.clients.prometheus import PromClient, PromTarget
    from somactl.core.errors import SomactlError

    promql = query.executed or query.promql
    if promql.rstrip().endswith("or vector(0)"):
        promql = query.promql
    budget = min(RECENT_BUDGET, deadline.remaining() - 0.5)
    if status is Status.ok or longest_window(promql) <= RECENT_SECONDS or budget < 0.2:
        return None
    try:
        client = PromClient(PromTarget(url), Deadline(budget))
        value = _value(client.query(with_window(promql, RECENT_SECONDS)))
    except SomactlError:
        return None  # the runbook's value stands on its own; no time left is no reason to fail
    if value is None or not math.isfinite(value):
        return None
    return {"seconds": RECENT_SECONDS, "value": value, "status": str(query.level(value))}


def describe_trend(series: list[list[float]], unit: str = "") -> str:
    """A few words on the shape of the last 30 minutes (rising, steady, a spike)."""
    values = [v for _, v in series]
    if len(values) < 4:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return "steady for 30 min"
    first = sum(values[: len(values) // 3]) / max(1, len(values) // 3)
    last = sum(values[-(len(values) // 3) :]) / max(1, len(values) // 3)
    span = hi - lo
    if last - first > 0.5 * span:
        return "rising over 30 min"
    if first - last > 0.5 * span:
        return "falling over 30 min"
    return f"between {fmt(lo, unit)} and {fmt(hi, unit)} over 30 min"
