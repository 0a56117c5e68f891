"""Pod behaviours: how a container in the simulator lives, fails and what it logs.

A behaviour is picked per pod from the `somactl.lab/behavior` annotation (pod or pod template)
or, failing that, from the container image (`app:bad`, `app:1.2-crashloop`, `app:1.2-oom`, ...).
Both the registry and the image rules are extensible: `register_behavior()`,
`register_image_rule()`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from somactl.lab.kube.util import rfc3339

BEHAVIOR_ANNOTATION = "somactl.lab/behavior"
MEMORY_ANNOTATION = "somactl.lab/memory-working-set-bytes"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Behavior:
    name: str
    description: str
    start_delay: float = 1.0  # ContainerCreating -> Running
    ready_delay: float | None = 2.0  # Running -> Ready (None: never ready)
    crash_after: float | None = None  # Running -> terminated
    crash_reason: str = "Error"
    exit_code: int = 1
    base_memory_mib: float = 96.0
    leak_mib_per_sec: float = 0.0
    log_style: str = "access"
    probe_failures: bool = False  # emit "Readiness probe failed" warnings while not ready


BEHAVIORS: dict[str, Behavior] = {}
ImageRule = Callable[[str], bool]
IMAGE_RULES: list[tuple[ImageRule, str]] = []


def register_behavior(behavior: Behavior) -> None:
    BEHAVIORS[behavior.name] = behavior


def register_image_rule(rule: ImageRule, behavior: str) -> None:
    """Images for which `rule(image)` is true get `behavior` (checked in registration order)."""
    IMAGE_RULES.append((rule, behavior))


def _tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


for _b in (
    Behavior("healthy", "starts in ~3 s and serves traffic"),
    Behavior(
        "crashloop",
        "exits with an error 3 s after each start: CrashLoopBackOff",
        ready_delay=None,
        crash_after=3.0,
        log_style="crash",
        base_memory_mib=40,
    ),
    Behavior(
        "oom",
        "allocates past its memory limit within seconds: OOMKilled",
        ready_delay=None,
        crash_after=4.0,
        crash_reason="OOMKilled",
        exit_code=137,
        log_style="oom",
        base_memory_mib=200,
    ),
    Behavior(
        "slow-start",
        "needs 90 s before its readiness probe passes",
        ready_delay=90.0,
        log_style="slow",
        probe_failures=True,
    ),
    Behavior(
        "leak",
        "healthy, but leaks 2 MiB/s until the memory limit OOMKills it",
        leak_mib_per_sec=2.0,
        log_style="leak",
    ),
    Behavior(
        "error-logs",
        "ready, but a third of its requests fail with 5xx and stack traces",
        log_style="errors",
    ),
):
    register_behavior(_b)

register_image_rule(
    lambda image: _tag(image) == "bad" or _tag(image).endswith("crashloop"), "crashloop"
)
register_image_rule(lambda image: _tag(image).endswith("-oom") or _tag(image) == "oom", "oom")
register_image_rule(lambda image: _tag(image).endswith("-slow"), "slow-start")
register_image_rule(lambda image: _tag(image).endswith("-leak"), "leak")
register_image_rule(lambda image: _tag(image).endswith("-errors"), "error-logs")


def behavior_for(annotations: dict[str, str], image: str) -> Behavior:
    name = annotations.get(BEHAVIOR_ANNOTATION)
    if name and name in BEHAVIORS:
        return BEHAVIORS[name]
    for rule, bname in IMAGE_RULES:
        if rule(image) and bname in BEHAVIORS:
            return BEHAVIORS[bname]
    return BEHAVIORS["healthy"]


def memory_bytes(behavior: Behavior, pod_name: str, running_for: float) -> int:
    """Working-set bytes of a running container (deterministic per pod)."""
    jitter = (zlib.crc32(pod_name.encode()) % 2000) / 100.0  # 0-20 MiB
    mib = behavior.base_memory_mib + jitter + behavior.leak_mib_per_sec * max(0.0, running_for)
    if behavior.name == "oom" and behavior.crash_after:
        mib += 900.0 * min(1.0, running_for / behavior.crash_after)
    return int(mib * MIB)


def oom_after(behavior: Behavior, pod_name: str, limit_bytes: float | None) -> float | None:
    """Seconds of running before a leaking container passes its memory limit."""
    if behavior.leak_mib_per_sec <= 0 or not limit_bytes:
        return None
    start = memory_bytes(behavior, pod_name, 0.0)
    if start >= limit_bytes:
        return 1.0
    return (limit_bytes - start) / (behavior.leak_mib_per_sec * MIB)


# ---- logs ----------------------------------------------------------------------------------------

_PATHS = [
    ("GET", "/v1/sessions"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/healthz"),
    ("GET", "/v1/agents"),
    ("POST", "/v1/tools/invoke"),
    ("GET", "/metrics"),
    ("GET", "/v1/conversations"),
    ("POST", "/v1/sessions"),
]
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
MAX_LOG_LINES = 5000
LogLine = tuple[float, str]


def _h(*parts: Any) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def _startup(service: str, t: float) -> list[LogLine]:
    return [
        (t, "INFO:     Started server process [1]"),
        (t, "INFO:     Waiting for application startup."),
        (t + 0.2, f"INFO:     {service}: loaded configuration (env=production)"),
        (t + 0.4, "INFO:     Application startup complete."),
        (t + 0.4, "INFO:     Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)"),
    ]


def _access(pod: str, k: int, t: float, error_rate: float) -> list[LogLine]:
    h = _h(pod, k)
    method, path = _PATHS[h % len(_PATHS)]
    client = f"10.244.{h % 3}.{(h >> 8) % 250 + 2}:{40000 + (h >> 16) % 20000}"
    fail = (h % 1000) / 1000.0 < error_rate
    status = (500, 502, 503)[h % 3] if fail else (200 if method == "GET" else 201)
    lines: list[LogLine] = []
    if fail:
        lines.extend(
            [
                (t, "ERROR:    Exception in ASGI application"),
                (t, "Traceback (most recent call last):"),
                (t, '  File "/app/somagent/handlers.py", line 88, in dispatch'),
                (t, "    result = await upstream.call(request)"),
                (t, '  File "/app/somagent/upstream.py", line 41, in call'),
                (t, '    raise UpstreamError(f"upstream {self.name}: connection refused")'),
                (t, "somagent.upstream.UpstreamError: upstream orchestrator: connection refused"),
            ]
        )
    lines.append(
        (t, f'INFO:     {client} - "{method} {path} HTTP/1.1" {status} {_STATUS_TEXT[status]}')
    )
    return lines


def _crash(service: str, t: float, end: float) -> list[LogLine]:
    lines = _startup(service, t)[:2]
    lines += [
        (t + 0.5, f"WARNING:  {service}: connecting to postgres-0.postgres:5432 (attempt 1/3)"),
        (t + 1.0, f"WARNING:  {service}: connecting to postgres-0.postgres:5432 (attempt 2/3)"),
        (t + 1.5, f"WARNING:  {service}: connecting to postgres-0.postgres:5432 (attempt 3/3)"),
        (end, "ERROR:    Traceback (most recent call last):"),
        (end, '  File "/app/somagent/main.py", line 42, in lifespan'),
        (end, "    await db.connect(settings.database_url)"),
        (
            end,
            '  File "/usr/local/lib/python3.11/site-packages/asyncpg/connection.py", line 2329,'
            " in connect",
        ),
        (end, "    return await connect_utils._connect("),
        (end, "ConnectionRefusedError: [Errno 111] Connection refused"),
        (end, "ERROR:    Application startup failed. Exiting."),
    ]
    return [ln for ln in lines if ln[0] <= end]


def _oom(service: str, t: float, end: float) -> list[LogLine]:
    lines = _startup(service, t)
    step = max(0.5, (end - t) / 4)
    rss = 256
    cur = t + 0.5
    while cur < end:
        lines.append((cur, f"WARNING:  {service}: loading embeddings cache, rss={rss}MiB"))
        rss *= 2
        cur += step
    return [ln for ln in lines if ln[0] <= end]


def render_logs(
    pod: str,
    service: str,
    behavior: Behavior,
    start: float,
    end: float,
) -> list[LogLine]:
    """All log lines of one container instance that ran from `start` until `end`."""
    if end < start:
        return []
    if behavior.log_style == "crash":
        return _crash(service, start, end)
    if behavior.log_style == "oom":
        return _oom(service, start, end)
    lines: list[LogLine] = []
    serving_from = start + 0.5
    if behavior.log_style == "slow":
        lines += _startup(service, start)[:2]
        ready_at = start + (behavior.ready_delay or 0.0)
        n = 0
        t = start + 1.0
        while t < min(end, ready_at):
            n += 1
            lines.append((t, f"INFO:     {service}: warming caches ({n * 5}%)"))
            t += 5.0
        if end < ready_at:
            return lines
        lines.append((ready_at, "INFO:     Application startup complete."))
        serving_from = ready_at
    else:
        lines += _startup(service, start)
    error_rate = 0.33 if behavior.log_style == "errors" else 0.0
    total = int(max(0.0, end - serving_from))
    first = max(0, total - MAX_LOG_LINES)
    for k in range(first, total):
        t = serving_from + k + 0.25
        lines.extend(_access(pod, k, t, error_rate))
        if behavior.log_style == "leak" and k % 30 == 29:
            rss = int(memory_bytes(behavior, pod, t - start) / MIB)
            lines.append(
                (t, f"WARNING:  {service}: gc pressure, rss={rss}MiB heap objects growing")
            )
    return lines


def format_logs(
    lines: list[LogLine],
    *,
    timestamps: bool,
    tail: int | None,
    since: float | None,
    limit_bytes: int | None,
) -> str:
    if since is not None:
        lines = [ln for ln in lines if ln[0] >= since]
    if tail is not None and tail >= 0:
        lines = lines[-tail:] if tail else []
    from somactl.lab.kube.util import rfc3339_nano

    text = "".join(
        (f"{rfc3339_nano(ts)} {line}\n" if timestamps else f"{line}\n") for ts, line in lines
    )
    if limit_bytes is not None and limit_bytes >= 0:
        text = text.encode()[:limit_bytes].decode(errors="ignore")
    return text


__all__ = [
    "BEHAVIORS",
    "BEHAVIOR_ANNOTATION",
    "MEMORY_ANNOTATION",
    "Behavior",
    "behavior_for",
    "format_logs",
    "register_behavior",
    "register_image_rule",
    "render_logs",
    "rfc3339",
]
