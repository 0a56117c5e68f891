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
    """`45s`, `5m30s`, `3h5m`, `2d3h`: the shape kubectl prints for ages."""
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    minutes, sec = divmod(s, 60)
    if minutes < 10:
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 3:
        return f"{hours * 60 + minutes}m" if hours == 0 else f"{hours}h{minutes}m"
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes and hours < 8 else f"{hours}h"
    days, hours = divmod(hours, 24)
    if days < 8:
        return f"{days}d{hours}h" if hours else f"{days}d"
    return f"{days}d"
