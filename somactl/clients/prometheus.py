"""Prometheus through prometheus-api-client: instant and range queries, bounded, no retries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from somactl.core.deadline import Deadline
from somactl.core.errors import ActionFailedError, SomactlError, UnreachableError
from somactl.core.netfail import CLOSED, network_problem
from somactl.core.redact import redact


@dataclass(frozen=True)
class PromTarget:
    url: str

    def describe(self) -> str:
        return urlsplit(self.url).netloc or self.url


class PromClient:
    def __init__(self, target: PromTarget, deadline: Deadline) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.target = target
        self.deadline = deadline
        self._prom = PrometheusConnect(
            url=target.url.rstrip("/"), disable_ssl=False, retry=Retry(total=0)
        )

    def _translate(self, exc: BaseException) -> SomactlError:
        import requests

        text = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        low = str(exc).lower()
        if isinstance(exc, requests.ConnectionError) and (
            "resolve" in low or "name or service not known" in low
        ):
            return UnreachableError(
                f"prometheus: host name not resolved ({self.target.describe()})",
                "check prometheus.url in `somactl config show`",
            )
        if isinstance(exc, requests.ConnectionError) and "refused" in low:
            return UnreachableError(
                f"prometheus: connection refused ({self.target.describe()})",
                "is Prometheus up? check prometheus.url in `somactl config show`",
            )
        if isinstance(exc, requests.ConnectionError) and network_problem(exc, "") == CLOSED:
            return UnreachableError(
                f"prometheus: {CLOSED} ({self.target.describe()})",
                "is Prometheus up? check prometheus.url in `somactl config show`",
            )
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return UnreachableError(
                f"prometheus: no response within {self.deadline.seconds:g}s "
                f"({self.target.describe()})",
                "is Prometheus up? check prometheus.url in `somactl config show`",
            )
        return ActionFailedError(f"prometheus ({self.target.describe()}): {text}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result list (vector samples: {"metric": {...}, "value": [t, "v"]})."""
        try:
            result: list[dict[str, Any]] = self._prom.custom_query(
                promql, timeout=self.deadline.timeout(10.0)
            )
        except Exception as exc:  # noqa: BLE001 - translated, never swallowed
            raise self._translate(exc) from None
        return result

    def query_range(
        self, promql: str, minutes: int = 30, step: str = "60s"
    ) -> list[dict[str, Any]]:
        end = datetime.now(UTC)
        start = end - timedelta(minutes=minutes)
        try:
            result: list[dict[str, Any]] = self._prom.custom_query_range(
                promql,
                start_time=start,
                end_time=end,
                step=step,
                timeout=self.deadline.timeout(10.0),
            )
        except Exception as exc:  # noqa: BLE001 - translated, never swallowed
            raise self._translate(exc) from None
        return result


def scalar(result: list[dict[str, Any]]) -> float | None:
    """The first sample's value as a float (None when the vector is empty or NaN)."""
    if not result:
        return None
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
