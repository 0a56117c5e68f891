"""A real Prometheus (Debian's /usr/bin/prometheus) scraping the lab's targets.

The caller names the jobs (gateway-api, orchestrator, kamachiq-service, postgres, redis, tools,
...). A short scrape interval (2 s by default) makes metrics appear quickly. The lifecycle API is
on, so `set_jobs` rewrites prometheus.yml and reloads it without a restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from somactl.lab.runtime import procs
from somactl.lab.runtime.launch import Launch, RunningService, owned_http_status
from somactl.lab.runtime.procs import LOOPBACK, ProcRecord, StartError, StateFile

PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    targets: tuple[str, ...]
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)


JobsSpec = Mapping[str, Sequence[str]] | Iterable[ScrapeJob]


def normalise_jobs(jobs: JobsSpec) -> list[ScrapeJob]:
    """Accept {job: [host:port, ...]} or ScrapeJob objects."""
    if isinstance(jobs, Mapping):
        return [ScrapeJob(name, tuple(targets)) for name, targets in jobs.items()]
    return list(jobs)


def render_config(jobs: Iterable[ScrapeJob], scrape_interval: str) -> str:
    """prometheus.yml as JSON (YAML is a superset, and json is already imported everywhere)."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            # The timeout may not exceed the interval (Prometheus's default timeout is 10 s).
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": job.name,
                "metrics_path": job.metrics_path,
                "static_configs": [{"targets": list(job.targets), "labels": dict(job.labels)}],
            }
            for job in jobs
        ],
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass(frozen=True)
class PrometheusInstance(RunningService):
    host: str
    port: int
    pid: int
    instance_dir: Path
    config_path: Path
    scrape_interval: str
    record: ProcRecord = field(repr=False)
    state: StateFile = field(repr=False)
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_jobs(self, jobs: JobsSpec, timeout: float = 10.0) -> None:
        """Replace the scrape jobs and reload (POST /-/reload; the lifecycle API is enabled)."""
        self.config_path.write_text(render_config(normalise_jobs(jobs), self.scrape_interval))
        status, body = procs.http_post(f"{self.url}/-/reload", timeout=timeout)
        if status != 200:
            raise StartError(
                f"prometheus rejected the new configuration (HTTP {status}): {body.strip()[:200]}",
                hint=f"see {self.record.log} and {self.config_path}",
            )

    def api(self, path: str, timeout: float = 5.0) -> Any:
        """GET /api/v1/<path>; the `data` member of a success envelope."""
        import httpx

        with httpx.Client(trust_env=False, timeout=timeout) as client:
            response = client.get(f"{self.url}/api/v1/{path.lstrip('/')}")
        payload = response.json()
        if payload.get("status") != "success":
            raise StartError(
                f"prometheus API {path}: {payload.get('errorType')}: {payload.get('error')}"
            )
        return payload["data"]

    def query(self, expr: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query; the vector's samples (empty list when there is no data yet)."""
        import httpx

        with httpx.Client(trust_env=False, timeout=timeout) as client:
            response = client.get(f"{self.url}/api/v1/query", params={"query": expr})
        payload = response.json()
        if payload.get("status") != "success":
            raise StartError(f"prometheus query failed: {payload.get('error')}")
        result = payload["data"]["result"]
        return list(result) if isinstance(result, list) else [{"value": result}]

    def targets_health(self) -> dict[str, list[str]]:
        """job -> health of each active target ("up", "down", "unknown")."""
        health: dict[str, list[str]] = {}
        for target in self.api("targets?state=active")["activeTargets"]:
            health.setdefault(str(target["labels"]["job"]), []).append(str(target["health"]))
        return health

    def wait_until_scraped(self, jobs: Iterable[str], timeout: float = 20.0) -> float:
        """Wait until every target of `jobs` has been scraped successfully; seconds taken.

        Prometheus applies new targets on a 5 s tick, so the first scrape comes 1-5 s after a
        start or reload whatever the scrape interval.
        """
        wanted = set(jobs)
        started = time.monotonic()
        deadline = started + timeout
        health: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            try:
                health = self.targets_health()
            except Exception:  # noqa: BLE001  # not answering yet counts as "not scraped yet"
                health = {}
            if all(health.get(job) and set(health[job]) == {"up"} for job in wanted):
                return time.monotonic() - started
            time.sleep(0.1)
        raise StartError(
            f"prometheus: targets not up within {timeout:g}s: "
            + ", ".join(f"{job}={health.get(job, ['absent'])}" for job in sorted(wanted)),
            hint=f"see {self.record.log} and the exporters' logs",
        )


def start_prometheus(
    directory: str | Path,
    jobs: JobsSpec = (),
    *,
    state: StateFile | None = None,
    scrape_interval: str = "2s",
    retention: str = "1d",
    binary: str = f"/usr/bin/{PROMETHEUS}",
    port: int | None = None,
    port_source: Callable[[], int] = procs.free_port,
    timeout: float = 20.0,
    name: str = "prometheus",
) -> PrometheusInstance:
    run = Launch.prepare(directory, state, timeout=timeout, port=port, port_source=port_source)
    instance_dir = run.directory
    exe = procs.which_or_hint(binary if Path(binary).exists() else PROMETHEUS, PROMETHEUS)
    config_path = instance_dir / "prometheus.yml"
    config_path.write_text(render_config(normalise_jobs(jobs), scrape_interval))
    tsdb = instance_dir / "data"

    record = run.start(
        name,
        lambda candidate: [
            exe,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tsdb}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address={LOOPBACK}:{candidate}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        lambda record, candidate: owned_http_status(record, candidate, "/-/ready") == 200,
        what="prometheus",
        port_key="web",
        meta={"kind": "prometheus", "config": str(config_path)},
    )
    return PrometheusInstance(
        host=LOOPBACK,
        port=record.ports["web"],
        pid=record.pid,
        instance_dir=instance_dir,
        config_path=config_path,
        scrape_interval=scrape_interval,
        record=record,
        state=run.state,
        timings={"total": run.elapsed()},
    )
