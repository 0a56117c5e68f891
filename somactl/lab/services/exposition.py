"""Prometheus text exposition format 0.0.4: counters, gauges and histograms, nothing more.

Written by hand (a few lines) rather than pulling prometheus_client into the lab: the stand-ins
simulate traffic, so their numbers are set wholesale rather than incremented by instrumented
code, which a client library does not model well.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# prometheus_client's defaults, which histogram_quantile over `le` expects to be cumulative.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

LabelSet = tuple[tuple[str, str], ...]


def labelset(labels: Mapping[str, str]) -> LabelSet:
    return tuple(sorted(labels.items()))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class Exposition:
    """Accumulates metric families and renders them in the text format."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name in self._families:
            raise ValueError(f"metric family {name} written twice")
        self._families.add(name)
        self._lines.append(f"# HELP {name} {escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Iterable[tuple[str, str]], value: float) -> None:
        pairs = list(labels)
        if pairs:
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs)
            self._lines.append(f"{name}{{{inner}}} {format_value(value)}")
        else:
            self._lines.append(f"{name} {format_value(value)}")

    def simple(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self.family(name, kind, help_text)
        for labels, value in samples:
            self.sample(name, labels.items(), value)

    def histogram(
        self, name: str, help_text: str, series: Iterable[tuple[Mapping[str, str], Histogram]]
    ) -> None:
        self.family(name, "histogram", help_text)
        for labels, hist in series:
            buckets, total, count = hist.snapshot()
            base = list(labels.items())
            for bound, cum in buckets:
                self.sample(f"{name}_bucket", [*base, ("le", format_le(bound))], cum)
            self.sample(f"{name}_sum", base, total)
            self.sample(f"{name}_count", base, count)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


class Histogram:
    """A cumulative histogram (thread-safe)."""

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.bounds = (*sorted(buckets), math.inf)
        self._counts = [0] * len(self.bounds)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    self._counts[i] += 1
                    break
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        with self._lock:
            out: list[tuple[float, int]] = []
            cum = 0
            for bound, n in zip(self.bounds, self._counts, strict=True):
                cum += n
                out.append((bound, cum))
            return out, self._sum, cum

    def quantile(self, q: float) -> float:
        """histogram_quantile() as Prometheus computes it (linear within the bucket)."""
        buckets, _, total = self.snapshot()
        if total == 0:
            return math.nan
        rank = q * total
        prev_bound, prev_cum = 0.0, 0
        for bound, cum in buckets:
            if cum >= rank:
                if math.isinf(bound):
                    return prev_bound
                in_bucket = cum - prev_cum
                if in_bucket == 0:
                    return bound
                return prev_bound + (bound - prev_bound) * (rank - prev_cum) / in_bucket
            prev_bound, prev_cum = bound, cum
        return prev_bound


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict-enough parser of the text format (samples only), for tests and `lab status`.

    Raises ValueError on a line that is not a comment, blank, or `name{labels} value`.
    """
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, labels, rest = _split_sample(line, lineno)
        value_text = rest.split()[0] if rest.split() else ""
        try:
            value = float(value_text.replace("+Inf", "inf").replace("-Inf", "-inf"))
        except ValueError:
            raise ValueError(f"line {lineno}: bad value {value_text!r}") from None
        out.setdefault(name, []).append((labels, value))
    return out


def _split_sample(line: str, lineno: int) -> tuple[str, dict[str, str], str]:
    i = 0
    while i < len(line) and (line[i].isalnum() or line[i] in "_:"):
        i += 1
    name = line[:i]
    if not name or name[0].isdigit():
        raise ValueError(f"line {lineno}: bad metric name in {line!r}")
    labels: dict[str, str] = {}
    if i < len(line) and line[i] == "{":
        i += 1
        while True:
            while i < len(line) and line[i] in " ,":
                i += 1
            if i < len(line) and line[i] == "}":
                i += 1
                break
            j = line.find("=", i)
            if j < 0 or j + 1 >= len(line) or line[j + 1] != '"':
                raise ValueError(f"line {lineno}: bad label in {line!r}")
            key = line[i:j].strip()
            k = j + 2
            val: list[str] = []
            while k < len(line) and line[k] != '"':
                if line[k] == "\\" and k + 1 < len(line):
                    nxt = line[k + 1]
                    val.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, nxt))
                    k += 2
                    continue
                val.append(line[k])
                k += 1
            if k >= len(line):
                raise ValueError(f"line {lineno}: unterminated label value in {line!r}")
            labels[key] = "".join(val)
            i = k + 1
    rest = line[i:]
    if not rest.startswith(" "):
        raise ValueError(f"line {lineno}: expected a space before the value in {line!r}")
    return name, labels, rest.strip()
