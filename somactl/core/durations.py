"""Durations as people type them at 3 a.m.: `90`, `90s`, `5m`, `1h30m`, `2d`."""

from __future__ import annotations

import math
import re

from somactl.core.errors import UsageError

_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds in `text`; a bare number means seconds. Raises UsageError naming the option."""
    raw = text.strip().lower()
    if not raw:
        raise UsageError(f"{option}: empty duration", "use e.g. 30s, 5m, 1h30m")
    try:
        value = float(raw)
    except ValueError:
        pos = 0
        total = 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise UsageError(
                f"{option}: cannot read {text!r} as a duration", "use e.g. 30s, 5m, 1h30m"
            ) from None
        value = total
    if value < 0 or math.isnan(value) or value > 10 * 365 * 86400:
        raise UsageError(f"{option}: {text!r} is out of range", "use a positive duration")
    return value


def human_duration(seconds: float) -> str:
    """Age as kubectl prints it (apimachinery `duration.HumanDuration`): 45s, 5m30s, 95m, 3h5m."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h{m}m" if m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d{h}h" if h else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y{dy}d" if dy else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"
