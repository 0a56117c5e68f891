"""Building the mitigation actions from the settings, the runbook and the incident store.

Each `prepare_*` resolves where (kube context and namespace, DSN, Redis URL, tools API), what
(the runbook's service and action entry: its confirmation, its params, the pattern's next step)
and who (the actor and the open incident, for `kubernetes.io/change-cause`), validates the flags
before any network call, and returns a `Prepared` the executor in `somactl.ui.actions` runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from somactl.actions.base import Action, Actor, Outcome, Plan, Verification
from somactl.actions.kube import Workload, check_name
from somactl.config.settings import Settings
from somactl.core.deadline import Deadline
from somactl.core.errors import UsageError
from somactl.core.options import GlobalOptions
from somactl.incident.audit import AuditJournal
from somactl.incident.manage import state_dir_of
from somactl.incident.store import default_actor, find_open_incident
from somactl.ops.verify import MEASURE_TIMEOUT, MIN_WINDOW, ServiceMetrics
from somactl.runbook.schema import Action as RunbookAction
from somactl.runbook.schema import Runbook
from somactl.runbook.templates import render_command

DEFAULT_VERIFY = 120.0
VERIFY_POLL = 5.0  # seconds between re-measurements while verifying


@dataclass
class Prepared:
    """An action with everything the executor needs around it."""

    action: Action
    kind: str  # the audit journal's kind: "mitigate.rollback"
    journal: AuditJournal
    service: str | None = None
    entry: str | None = None  # the runbook action id
    typed_name: str | None = None  # the runbook asks for the typed name (confirm: typed-name)
    verify_seconds: float = DEFAULT_VERIFY
    metrics: ServiceMetrics | None = None
    before_metrics: dict[str, Any] = field(default_factory=dict)
    next_step: str | None = None
    remains: str | None = None  # the runbook entry's `remains`: a recovery here only contains
    apply_extra_seconds: float = 0.0  # e.g. kill-queries' grace period
    server_dry_run: bool = False

    def set_deadline(self, deadline: Deadline) -> None:
        setter: Callable[[Deadline], None] | None = getattr(self.action, "set_deadline", None)
        if setter is not None:
            setter(deadline)

    def measure_before(self) -> None:
        if self.metrics is not None and self.verify_seconds > 0:
            self.before_metrics = self.metrics.measure()

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        """The action's own check (the rollout, the sessions, the keys), then the service's
        error rate and p95 against the runbook's thresholds, then the next step if needed."""
        started = time.monotonic()
        v = self.action.verify(plan, outcome)
        if self.metrics is not None and self.before_metrics:
            after = self._measure_after(time.monotonic(), started + self.verify_seconds)
            if v is None:
                v = Verification(None, "")
            v.before.update({k: v2 for k, v2 in self.before_metrics.items() if k != "levels"})
            v.after.update({k: v2 for k, v2 in after.items() if k != "levels"})
            healthy = ServiceMetrics.healthy(after)
            lines = []
            if after.get("error"):
                lines.append(f"metrics unavailable: {after['error']}")
            if healthy is False:
                v.recovered = False
                high = [k for k, lvl in (after.get("levels") or {}).items() if lvl != "ok"]
                lines.append(f"{', '.join(high)} still above the runbook's warn threshold")
            elif healthy is True and v.recovered is None:
                v.recovered = True
            v.message = "; ".join([m for m in [v.message, *lines] if m])
        if v is not None and v.recovered is True and self.remains:
            v.remains = self.remains
        if v is not None and (v.recovered is not True or v.contained):
            v.next_step = self.next_step
        return v

    def _measure_after(self, fixed_at: float, until: float) -> dict[str, Any]:
        """Re-measure over a window that starts when the action's own check passed, growing
        until the service is healthy or the --verify budget is spent."""
        if self.metrics is None:
            return {}
        while True:
            window = max(MIN_WINDOW, time.monotonic() - fixed_at)
            after = self.metrics.measure(window=window)
            after["window_seconds"] = round(window)
            left = until - time.monotonic()
            healthy = ServiceMetrics.healthy(after)
            # an unreachable Prometheus will not answer better in 5 s: say so now rather than
            # hold the on-call for the rest of --verify (it held them 50 s of 60)
            unreachable = healthy is None and bool(after.get("error"))
            if healthy is True or unreachable or left < VERIFY_POLL + MEASURE_TIMEOUT:
                return after
            time.sleep(VERIFY_POLL)


# --- resolution helpers --------------------------------------------------------------------------


def actor_for(state_dir: Path, service: str | None) -> Actor:
    try:
        incident = find_open_incident(state_dir, service=service)
    except OSError:
        incident = None
    return Actor(default_actor(), incident)


def entry_for(runbook: Runbook, verb: str, service: str | None) -> tuple[str, RunbookAction] | None:
    """The runbook's action entry whose `somactl` template is `somactl mitigate <verb> ...`,
    preferring one bound to `service`, else one whose applies_to has the service's kind."""
    kind = runbook.services[service].kind if service in runbook.services else None
    loose: tuple[str, RunbookAction] | None = None
    for aid, act in runbook.actions.items():
        words = (act.somactl or "").split()
        if words[:3] != ["somactl", "mitigate", verb]:
            continue
        if act.service is not None:
            if service is None or act.service == service:
                return aid, act
            continue
        if loose is None and (kind is None or not act.applies_to or kind in act.applies_to):
            loose = (aid, act)
    return loose


def next_step(runbook: Runbook, entry: str | None, service: str | None) -> str | None:
    """The step after `entry` in the runbook's mitigation pattern, as title + command."""
    if entry is None:
        return None
    for pattern in runbook.mitigation_patterns.values():
        steps = list(pattern.steps)
        for i, step in enumerate(steps):
            if step.action != entry:
                continue
            if i + 1 >= len(steps):
                return f"{pattern.title}: no further step in the runbook; escalate"
            nxt = steps[i + 1]
            text = f"{pattern.title}: {nxt.title}"
            if nxt.action is not None:
                act = runbook.actions.get(nxt.action)
                if act is not None and act.somactl:
                    params = {**act.params, **nxt.params}
                    with contextlib.suppress(UsageError, KeyError, ValueError):
                        cmd = render_command(act.somactl, runbook, act.service or service, **params)
                        text += f" (`{cmd}`)"
            elif nxt.instructions:
                text += f": {nxt.instructions}"
            return text
    return None


def _remains(entry: RunbookAction | None, service: str | None) -> str | None:
    if entry is None or not entry.remains:
        return None
    return entry.remains.replace("{service}", service or "the service")


def parse_dry_run(value: str | None) -> str | None:
    if value in (None, "", "none"):
        return None
    if value not in ("client", "server"):
        raise UsageError(
            f"--dry-run must be client or server (got {value!r})",
            "--dry-run (client: show the plan) or --dry-run=server (the API server validates)",
        )
    return value


@dataclass
class Env:
    """Where and with what a mitigation runs."""

    opts: GlobalOptions
    settings: Settings
    runbook: Runbook
    dry_run: str | None = None
    verify_seconds: float = DEFAULT_VERIFY

    @property
    def state_dir(self) -> Path:
        return state_dir_of(self.settings)

    def journal(self) -> AuditJournal:
        return AuditJournal(self.state_dir)

    def deadline(self) -> Deadline:
        return Deadline(self.opts.timeout)

    def service(self, name: str, verb: str, kinds: tuple[str, ...]) -> tuple[Workload, str]:
        """(workload, namespace) of a runbook service that is a deployment/statefulset."""
        svc = self.runbook.service(name)
        if svc.kind not in kinds:
            raise UsageError(
                f"{verb} applies to {' and '.join(k + 's' for k in kinds)}; {name} is a {svc.kind}",
                "see `somactl runbook show services`",
            )
        check_name(svc.workload, "workload")
        ns = self.opts.namespace or svc.namespace or self.settings.get("namespace") or "default"
        return Workload(svc.kind, svc.workload), ns

    def kube(self, namespace: str) -> Any:
        from somactl.clients.kube import KubeClient, KubeTarget

        target = KubeTarget(
            kubeconfig=self.settings.get("kube.kubeconfig"),
            context=self.settings.get("kube.context"),
            namespace=namespace,
        )
        return KubeClient(target, self.deadline())

    def entry(
        self, verb: str, service: str | None, *, required: bool = True
    ) -> tuple[str, RunbookAction] | None:
        found = entry_for(self.runbook, verb, service)
        if found is None and required:
            raise UsageError(
                f"the runbook has no `mitigate {verb}` action for {service}",
                "see `somactl runbook show actions`",
            )
        return found

    def prepared(
        self,
        action: Action,
        verb: str,
        *,
        service: str | None,
        entry: tuple[str, RunbookAction] | None,
        typed_name: str | None = None,
        metrics: ServiceMetrics | None = None,
        apply_extra: float = 0.0,
    ) -> Prepared:
        eid = entry[0] if entry else None
        typed = typed_name
        if typed is None and entry is not None and entry[1].confirm == "typed-name":
            typed = service
        p = Prepared(
            action=action,
            kind=f"mitigate.{verb}",
            journal=self.journal(),
            service=service,
            entry=eid,
            typed_name=typed,
            verify_seconds=self.verify_seconds,
            metrics=metrics,
            next_step=next_step(self.runbook, eid, service),
            remains=_remains(entry[1] if entry else None, service),
            apply_extra_seconds=apply_extra,
            server_dry_run=self.dry_run == "server",
        )
        return p


def _no_server_dry_run(env: Env, verb: str) -> None:
    if env.dry_run == "server":
        raise UsageError(
            f"--dry-run=server is for Kubernetes actions; {verb} has no server-side dry run",
            "use --dry-run to see the plan without acting",
        )


# --- Kubernetes ----------------------------------------------------------------------------------


def _kube_common(
    env: Env, service: str, verb: str, kinds: tuple[str, ...]
) -> tuple[Workload, Any, Actor, ServiceMetrics | None]:
    wl, ns = env.service(service, verb, kinds)
    client = env.kube(ns)
    actor = actor_for(env.state_dir, service)
    metrics = (
        ServiceMetrics.for_service(env.runbook, service, ns, env.settings.get("prometheus.url"))
        if env.verify_seconds > 0
        else None
    )
    return wl, client, actor, metrics


def earlier_rollback(journal: AuditJournal, target: str) -> Any:
    """The last rollback the journal recorded for `target` (not aborted), or None."""
    from somactl.actions.rollback import EarlierRollback

    intents: dict[str, dict[str, Any]] = {}
    outcome: dict[str, str] = {}
    for rec in journal.records():
        if rec.get("kind") != "mitigate.rollback" or rec.get("target") != target:
            continue
        eid = str(rec.get("event_id"))
        phase = rec.get("phase")
        if phase == "intent":
            pins = (rec.get("plan") or {}).get("pins") or {}
            if pins.get("target_rs"):
                intents[eid] = rec
        elif phase == "aborted":
            intents.pop(eid, None)
        elif phase == "result":
            outcome[eid] = str(rec.get("outcome"))
    if not intents:
        return None
    eid, rec = list(intents.items())[-1]
    pins = rec["plan"]["pins"]
    return EarlierRollback(
        target_rs=str(pins["target_rs"]),
        revision=int(pins.get("target_revision") or 0),
        ts=str(rec.get("ts")),
        outcome=outcome.get(eid, "unknown"),
    )


def prepare_rollback(env: Env, service: str, to_revision: int | None) -> Prepared:
    from somactl.actions.rollback import RollbackAction

    entry = env.entry("rollback", service)
    wl, client, actor, metrics = _kube_common(env, service, "rollback", ("deployment",))
    earlier = earlier_rollback(env.journal(), wl.target(client)) if to_revision is None else None
    action = RollbackAction(
        client,
        wl.name,
        to_revision=to_revision,
        actor=actor,
        server_dry_run=env.dry_run == "server",
        earlier=earlier,
    )
    return env.prepared(action, "rollback", service=service, entry=entry, metrics=metrics)


def prepare_scale(env: Env, service: str, replicas: int, override_hpa: bool) -> Prepared:
    from somactl.actions.scale import ScaleAction, check_replicas

    check_replicas(replicas)
    entry = env.entry("scale", service)
    wl, client, actor, metrics = _kube_common(env, service, "scale", ("deployment", "statefulset"))
    action = ScaleAction(
        client,
        wl,
        replicas=replicas,
        actor=actor,
        override_hpa=override_hpa,
        server_dry_run=env.dry_run == "server",
    )
    return env.prepared(action, "scale", service=service, entry=entry, metrics=metrics)


def prepare_restart(env: Env, service: str, verb: str = "restart") -> Prepared:
    from somactl.actions.restart import RestartAction

    entry = env.entry(verb, service)
    wl, client, actor, metrics = _kube_common(env, service, verb, ("deployment", "statefulset"))
    typed = entry is not None and entry[1].confirm == "typed-name"
    action = RestartAction(
        client, wl, actor=actor, typed_name=typed, server_dry_run=env.dry_run == "server"
    )
    return env.prepared(action, verb, service=service, entry=entry, metrics=metrics)


def prepare_redis_restart(env: Env) -> Prepared:
    found = env.entry("redis-restart", None)
    service = (found[1].service if found else None) or "redis"
    return prepare_restart(env, service, "redis-restart")


def autoscale_params(
    env: Env, min_r: int | None, max_r: int | None, cpu: int | None
) -> tuple[int, int, int]:
    found = entry_for(env.runbook, "autoscale", None)
    params: dict[str, Any] = dict(found[1].params) if found else {}

    def pick(value: int | None, key: str, default: int) -> int:
        if value is not None:
            return value
        raw = params.get(key, default)
        return int(raw)

    return pick(min_r, "min", 1), pick(max_r, "max", 10), pick(cpu, "cpu_percent", 80)


def prepare_autoscale(
    env: Env, service: str, min_r: int | None, max_r: int | None, cpu: int | None, replace: bool
) -> Prepared:
    from somactl.actions.autoscale import AutoscaleAction, check_bounds

    lo, hi, pct = autoscale_params(env, min_r, max_r, cpu)
    check_bounds(lo, hi, pct)
    entry = env.entry("autoscale", service)
    wl, client, actor, _metrics = _kube_common(
        env, service, "autoscale", ("deployment", "statefulset")
    )
    action = AutoscaleAction(
        client,
        wl,
        min_replicas=lo,
        max_replicas=hi,
        cpu_percent=pct,
        actor=actor,
        replace=replace,
        server_dry_run=env.dry_run == "server",
    )
    return env.prepared(action, "autoscale", service=service, entry=entry)


def prepare_isolate(env: Env, service: str) -> Prepared:
    from somactl.actions.isolate import IsolateAction

    entry = env.entry("isolate", service)
    wl, client, actor, _m = _kube_common(env, service, "isolate", ("deployment", "statefulset"))
    typed = entry is not None and entry[1].confirm == "typed-name"
    action = IsolateAction(
        client,
        wl,
        actor=actor,
        evidence_root=env.state_dir / "evidence",
        typed_name=typed,
        server_dry_run=env.dry_run == "server",
    )
    # the evidence snapshot (every pod's logs) comes first and may take a while
    return env.prepared(action, "isolate", service=service, entry=entry, apply_extra=30.0)


def prepare_unisolate(env: Env, service: str) -> Prepared:
    from somactl.actions.isolate import UnisolateAction

    wl, client, actor, _m = _kube_common(env, service, "unisolate", ("deployment", "statefulset"))
    action = UnisolateAction(client, wl, actor=actor, server_dry_run=env.dry_run == "server")
    return env.prepared(action, "unisolate", service=service, entry=None)


# --- Postgres, Redis, tools API -------------------------------------------------------------------


def prepare_kill_queries(
    env: Env,
    *,
    older_than: float,
    database: str | None,
    user: str | None,
    state: str,
    limit: int | None,
    grace: float,
) -> Prepared:
    from somactl.actions.postgres import Filters, KillQueriesAction
    from somactl.clients.postgres import PgTarget

    _no_server_dry_run(env, "kill-queries")
    filters = Filters(
        older_than=older_than,
        database=database or env.runbook.defaults.database.dbname,
        user=user,
        state=state,
        limit=limit,
        grace=grace,
    ).check()
    entry = env.entry("kill-queries", "postgres", required=False)
    dsn = env.settings.require("postgres.dsn")
    target = PgTarget(dsn=dsn, password=env.settings.secret("postgres.password"))
    action = KillQueriesAction(target, filters, env.deadline())
    service = entry[1].service if entry else None
    return env.prepared(
        action, "kill-queries", service=service, entry=entry, apply_extra=grace + 10.0
    )


def prepare_redis_flush(env: Env) -> Prepared:
    from somactl.actions.redis import RedisFlushAction
    from somactl.clients.redis import RedisTarget

    _no_server_dry_run(env, "redis-flush")
    entry = env.entry("redis-flush", None, required=False)
    url = env.settings.require("redis.url")
    target = RedisTarget(url=url, password=env.settings.secret("redis.password"))
    instance = target.describe()
    action = RedisFlushAction(target, env.deadline(), instance=instance)
    service = entry[1].service if entry else None
    return env.prepared(action, "redis-flush", service=service, entry=entry, typed_name=instance)


def prepare_circuit_breaker(env: Env, verb: str, tool: str) -> Prepared:
    from somactl.actions.tools import CircuitBreakerAction

    _no_server_dry_run(env, "circuit-breaker")
    if verb not in ("enable", "disable"):
        raise UsageError(f"circuit-breaker takes enable or disable (got {verb!r})")
    adapters = env.runbook.tool_adapters()
    if tool not in adapters:
        raise UsageError(
            f"unknown tool adapter {tool!r}", f"the runbook's tool adapters: {', '.join(adapters)}"
        )
    entry = env.entry("circuit-breaker", tool, required=False) if verb == "enable" else None
    url = env.settings.require("tools.url")
    action = CircuitBreakerAction(url, tool, enable=verb == "enable", deadline=env.deadline())
    return env.prepared(action, "circuit-breaker", service=tool, entry=entry)
