"""Sparklines: the shape of the last 30 minutes in one line of block characters."""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """`values` (oldest first) as block characters, at most `width` of them (the latest).

    The floor is 0 for non-negative series, so a flat zero is a flat bottom line and a flat
    100% error rate a flat top line; gaps (None, NaN) are spaces.
    """
    vals = list(values)[-width:] if width > 0 else []
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    lo = min(0.0, *finite)
    hi = max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif span <= 0:
            out.append(BLOCKS[0])
        else:
            idx = round((v - lo) / span * (len(BLOCKS) - 1))
            out.append(BLOCKS[max(0, min(len(BLOCKS) - 1, idx))])
    return "".join(out)
