"""The runbooks.yaml schema: strict, frozen pydantic models, one per section.

Shapes only: cross references (a step naming a check, a service naming a query...) are resolved
by `somactl.runbook.references` after these models accept the file. The accessors at the bottom
of `Runbook` are what other layers use.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, model_validator

from somactl.core.errors import UsageError

if TYPE_CHECKING:
    from somactl.runbook.classify import Classification, SignalValue

Text = Annotated[str, Strict(), StringConstraints(min_length=1)]
Id = Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
SignalName = Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict(), Field(ge=0)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Flag = Annotated[bool, Strict()]

Level = Literal["P0", "P1", "P2", "P3", "P4"]
LEVELS: tuple[Level, ...] = ("P0", "P1", "P2", "P3", "P4")
Criticality = Literal["critical", "major", "minor"]
CRITICALITY_RANK: dict[str, int] = {"minor": 1, "major": 2, "critical": 3}
ServiceKind = Literal["deployment", "statefulset", "tool-adapter"]
SignalType = Literal["ratio", "seconds", "count", "bool", "criticality", "service", "services"]
Op = Literal["gt", "ge", "lt", "le", "eq", "ne", "is_true", "is_false"]


_OP_TEXT = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(Model):
    """A time target as the runbook says it (`label`) and in seconds (None: no fixed time)."""

    label: Text
    seconds: Count | None = None


class DatabaseDefaults(Model):
    host_env: Text
    port: Port
    user: Text
    dbname: Text


class RedisDefaults(Model):
    host_env: Text
    port: Port


class Defaults(Model):
    namespace: Text
    prometheus_url: Text
    tools_api_url: Text
    github_api_url: Text
    github_token_env: Text
    database: DatabaseDefaults
    redis: RedisDefaults
    log_tail_lines: Count
    recent_invocations_limit: Count
    recent_commits_since: Text
    long_running_query_seconds: Count
    rate_limit_reset_seconds: Count
    # `incident declare --service S` puts S's actions of this many minutes before on the timeline
    before_declaration_minutes: Count = 60


class Paging(Model):
    label: Text
    on_call: Flag
    incident_commander: Flag


class Severity(Model):
    name: Text
    response: Target
    paging: Paging
    updates: Target | None = None
    standups: Target | None = None
    pagerduty_severity: Literal["critical", "error", "warning", "info"]
    criteria: tuple[Text, ...]
    examples: tuple[Text, ...] = ()


class Condition(Model):
    """One comparison (`signal`, `op`, `value`) or a list under `all` / `any`."""

    signal: SignalName | None = None
    op: Op | None = None
    value: Number | Flag | Text | None = None
    all_: tuple[Condition, ...] | None = Field(default=None, alias="all")
    any_: tuple[Condition, ...] | None = Field(default=None, alias="any")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [self.signal is not None, self.all_ is not None, self.any_ is not None]
        if sum(forms) != 1:
            raise ValueError(
                "a condition is exactly one of: {signal, op, value}, all: [...], any: [...]"
            )
        if self.signal is None:
            if self.op is not None or self.value is not None:
                raise ValueError(
                    "op and value belong to a comparison (with signal), not to all/any"
                )
            if not (self.all_ or self.any_):
                raise ValueError("all/any needs at least one condition")
        elif self.op is None:
            raise ValueError(f"comparison on {self.signal} needs an op")
        elif self.op in ("is_true", "is_false"):
            if self.value is not None:
                raise ValueError(f"{self.op} takes no value")
        elif self.value is None:
            raise ValueError(f"{self.op} needs a value")
        return self

    def describe(self) -> str:
        """The condition as people read it: `availability <= 0 or error_rate >= 0.99`."""
        if self.signal is None:
            subs = self.all_ if self.all_ is not None else self.any_ or ()
            joiner = " and " if self.all_ is not None else " or "
            parts = [
                f"({s.describe()})" if s.signal is None and len(subs) > 1 else s.describe()
                for s in subs
            ]
            return joiner.join(parts)
        if self.op == "is_true":
            return self.signal
        if self.op == "is_false":
            return f"not {self.signal}"
        value = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        return f"{self.signal} {_OP_TEXT[str(self.op)]} {value}"

    def signals(self) -> Iterable[str]:
        if self.signal is not None:
            yield self.signal
        for sub in self.all_ or self.any_ or ():
            yield from sub.signals()


class SignalSpec(Model):
    type: SignalType
    help: Text
    # which value is bad: higher/lower numbers, or the bool value that is bad
    worse: Literal["higher", "lower", True, False] | None = None
    derived_from: SignalName | None = None


class Rule(Model):
    id: Id
    severity: Level
    description: Text
    when: Condition


class ClassificationSpec(Model):
    signals: dict[SignalName, SignalSpec]
    rules: tuple[Rule, ...]


class Service(Model):
    title: Text
    kind: ServiceKind
    workload: Text
    namespace: Text | None = None
    job: Text
    port: Port
    health: Text | None = None
    criticality: Criticality
    queries: tuple[Id, ...] = ()
    checks: tuple[Id, ...] = ()
    # The services it cannot work without (its database, its cache, the tool adapters it calls):
    # their checks are part of its diagnosis (verdict and exit code); whatever else a diagnosis
    # finds is reported as found elsewhere. A workload serving tool adapters depends on them.
    depends_on: tuple[Id, ...] = ()


class Query(Model):
    title: Text
    seed: Text
    template: Text
    unit: Literal["ratio", "seconds", "per-second", "connections", "count", "bytes"]
    direction: Literal["above", "below"]
    warn: Number
    critical: Number
    signal: SignalName | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Query:
        worse = (
            self.critical >= self.warn if self.direction == "above" else self.critical <= self.warn
        )
        if not worse:
            raise ValueError(
                f"critical ({self.critical:g}) must be {self.direction} warn ({self.warn:g})"
            )
        return self

    def level(self, value: float) -> Literal["ok", "warn", "critical"]:
        """Where a measured value falls against this query's thresholds."""
        if self.direction == "above":
            if value >= self.critical:
                return "critical"
            return "warn" if value >= self.warn else "ok"
        if value < self.critical:
            return "critical"
        return "warn" if value < self.warn else "ok"

    def for_job(self, job: str, namespace: str = "") -> str:
        from somactl.runbook.templates import render_promql

        return render_promql(self.template, job=job, namespace=namespace)


Backend = Literal["kubernetes", "postgres", "redis", "prometheus", "tools-api", "github", "git"]


class Check(Model):
    title: Text
    group: Text
    backend: Backend
    target: Literal["none", "service"]
    applies_to: tuple[ServiceKind, ...] = ()
    service: Id | None = None
    query: Id | None = None
    command: Text | None = None
    sql: Text | None = None
    somactl: Text | None = None


class Action(Model):
    title: Text
    group: Text
    target: Literal["none", "service"]
    applies_to: tuple[ServiceKind, ...] = ()
    service: Id | None = None
    mutates: Flag
    confirm: Literal["yes", "typed-name", "none"]
    last_resort: Flag = False
    params: dict[SignalName, Annotated[int, Strict()] | Text] = Field(default_factory=dict)
    command: Text | None = None
    sql: Text | None = None
    somactl: Text | None = None
    note: Text | None = None
    # Set on an action that contains an incident without removing its cause (a breaker, a
    # flush, a restart): what it leaves in place. Its verification then says CONTAINED, not
    # RECOVERED, and `runbook run` goes on to the next mitigation. {service} is filled in.
    remains: Text | None = None

    @model_validator(mode="after")
    def _consent(self) -> Action:
        if self.mutates and self.confirm == "none":
            raise ValueError("a mutating action needs confirm: yes or typed-name")
        return self


class Step(Model):
    """A step of a scenario, pattern or process phase: a check, an action, or manual work."""

    title: Text
    who: Text | None = None
    check: Id | None = None
    action: Id | None = None
    params: dict[SignalName, Annotated[int, Strict()] | Text] = Field(default_factory=dict)
    checks: tuple[Id, ...] = ()
    pattern: Id | None = None
    template: Id | None = None
    channel: Id | None = None
    tool: Id | None = None
    contact: Id | None = None
    escalate: Id | None = None
    reference: Id | None = None
    severities: tuple[Level, ...] = ()
    when: Text | None = None
    instructions: Text | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if self.check is not None and self.action is not None:
            raise ValueError("a step is a check or an action, not both")
        if self.params and self.action is None:
            raise ValueError("params belong to an action step")
        return self

    @property
    def kind(self) -> Literal["check", "action", "pattern", "manual"]:
        if self.action is not None:
            return "action"
        if self.check is not None or self.checks:
            return "check"
        if self.pattern is not None:
            return "pattern"
        return "manual"


class MitigationPattern(Model):
    title: Text
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]


class Scenario(Model):
    title: Text
    service: Id | None = None
    severity: Level
    match: Condition | None = None
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]


class Phase(Model):
    id: Id
    title: Text
    who: Text
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]


class OnCallLevel(Model):
    level: Literal["primary", "secondary", "escalation", "final"]
    who: Text
    via: Text | None = None
    after: Target | None = None
    contact: Id | None = None


class IcRule(Model):
    severities: Annotated[tuple[Level, ...], Field(min_length=1)]
    who: Text
    self_ic: Flag


class ExternalEscalation(Model):
    id: Id
    who: Text
    when: Text


class Escalation(Model):
    on_call: tuple[OnCallLevel, ...]
    incident_commander: tuple[IcRule, ...]
    external: tuple[ExternalEscalation, ...]


class Person(Model):
    name: Text
    handle: Annotated[str, Strict(), StringConstraints(pattern=r"^@[A-Za-z0-9._-]+$")] | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.handle})" if self.handle else self.name


class Contact(Model):
    role: Text
    primary: Person
    secondary: Person | None = None


class Channel(Model):
    name: Text
    purpose: Text


class MessageTemplate(Model):
    channel: Id
    text: Text
    # the runbook's filled-in example: rendering `text` with it gives the runbook's message
    example: dict[SignalName, Text] = Field(default_factory=dict)


class Communication(Model):
    status_page: Text
    channels: dict[Id, Channel]
    update_channels: tuple[Id, ...]
    templates: dict[Id, MessageTemplate]


class PirSection(Model):
    id: Id
    heading: Text
    lines: tuple[Text, ...] = ()
    item: Text | None = None


class PirExample(Model):
    fields: dict[SignalName, Text]
    items: dict[Id, tuple[dict[SignalName, Text], ...]] = Field(default_factory=dict)


class Pir(Model):
    due: Target
    participants: tuple[Text, ...]
    title: Text
    sections: tuple[PirSection, ...]
    example: PirExample | None = None


class Link(Model):
    title: Text
    url: Text
    command: Text | None = None


class Reference(Model):
    title: Text
    path: Text


def _unknown(kind: str, name: str, known: Iterable[str]) -> UsageError:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return UsageError(f"unknown {kind} {name!r}", f"{hint}known {kind}s: {', '.join(names)}")


class Runbook(Model):
    version: Literal[1]
    title: Text
    overview: Text
    defaults: Defaults
    severities: dict[Level, Severity]
    classification: ClassificationSpec
    services: dict[Id, Service]
    queries: dict[Id, Query]
    checks: dict[Id, Check]
    actions: dict[Id, Action]
    mitigation_patterns: dict[Id, MitigationPattern]
    scenarios: dict[Id, Scenario]
    process: tuple[Phase, ...]
    escalation: Escalation
    contacts: dict[Id, Contact]
    communication: Communication
    pir: Pir
    tools: dict[Id, Link]
    references: dict[Id, Reference]

    # -- accessors: unknown names are usage errors that list the known ones --

    def service(self, name: str) -> Service:
        if name not in self.services:
            raise _unknown("service", name, self.services)
        return self.services[name]

    def severity(self, level: str) -> Severity:
        key: Any = level.upper()
        if key not in self.severities:
            raise _unknown("severity", level, self.severities)
        return self.severities[key]

    def query(self, query_id: str) -> Query:
        if query_id not in self.queries:
            raise _unknown("query", query_id, self.queries)
        return self.queries[query_id]

    def check(self, check_id: str) -> Check:
        if check_id not in self.checks:
            raise _unknown("check", check_id, self.checks)
        return self.checks[check_id]

    def action(self, action_id: str) -> Action:
        if action_id not in self.actions:
            raise _unknown("action", action_id, self.actions)
        return self.actions[action_id]

    def scenario(self, scenario_id: str) -> Scenario:
        if scenario_id not in self.scenarios:
            raise _unknown("scenario", scenario_id, self.scenarios)
        return self.scenarios[scenario_id]

    def contact(self, contact_id: str) -> Contact:
        if contact_id not in self.contacts:
            raise _unknown("contact", contact_id, self.contacts)
        return self.contacts[contact_id]

    def rule(self, rule_id: str) -> Rule:
        for rule in self.classification.rules:
            if rule.id == rule_id:
                return rule
        raise _unknown("rule", rule_id, (r.id for r in self.classification.rules))

    def tool_adapters(self) -> tuple[str, ...]:
        return tuple(n for n, s in self.services.items() if s.kind == "tool-adapter")

    def workloads(self) -> tuple[str, ...]:
        """Services that are Kubernetes workloads (deployments and statefulsets)."""
        return tuple(n for n, s in self.services.items() if s.kind != "tool-adapter")

    def namespace_of(self, name: str) -> str:
        return self.service(name).namespace or self.defaults.namespace

    def ic_rule(self, level: str) -> IcRule | None:
        for rule in self.escalation.incident_commander:
            if level in rule.severities:
                return rule
        return None

    def external(self, escalation_id: str) -> ExternalEscalation:
        for ext in self.escalation.external:
            if ext.id == escalation_id:
                return ext
        raise _unknown(
            "external escalation", escalation_id, (e.id for e in self.escalation.external)
        )

    def command_fields(self, service: str | None = None, **params: object) -> dict[str, str]:
        """The fields a check/action command template may use, for `service` (if any)."""
        fields: dict[str, str] = {
            "namespace": self.defaults.namespace,
            "tools_api_url": self.defaults.tools_api_url.rstrip("/"),
            "prometheus_url": self.defaults.prometheus_url.rstrip("/"),
            "tail": str(self.defaults.log_tail_lines),
            "limit": str(self.defaults.recent_invocations_limit),
        }
        if service is not None:
            svc = self.service(service)
            fields.update(
                service=service,
                namespace=self.namespace_of(service),
                workload=svc.workload,
                kind=svc.kind if svc.kind != "tool-adapter" else "deployment",
                job=svc.job,
                tool=service if svc.kind == "tool-adapter" else "",
            )
        fields.update({k: str(v) for k, v in params.items()})
        return fields

    def settings_defaults(self) -> dict[str, str]:
        """`defaults` keyed like the config layer's settings (the lowest-precedence source)."""
        d = self.defaults
        return {
            "namespace": d.namespace,
            "prometheus.url": d.prometheus_url,
            "tools.url": d.tools_api_url,
            "github.url": d.github_api_url,
        }

    def classify(self, signals: Mapping[str, SignalValue | None]) -> Classification:
        from somactl.runbook.classify import classify

        return classify(signals, self)

    def render_template(self, name: str, /, **fields: object) -> str:
        from somactl.runbook.templates import render_template

        return render_template(name, runbook=self, **fields)

    def severity_summary(self, level: str) -> dict[str, Any]:
        """One severity as a flat record: response target, paging, IC rule, update cadence."""
        sev = self.severity(level)
        ic = self.ic_rule(level.upper())
        return {
            "level": level.upper(),
            "name": sev.name,
            "response": sev.response.label,
            "response_seconds": sev.response.seconds,
            "paging": sev.paging.label,
            "page_on_call": sev.paging.on_call,
            "page_incident_commander": sev.paging.incident_commander,
            "incident_commander": ic.who if ic else None,
            "self_ic": ic.self_ic if ic else None,
            "updates": sev.updates.label if sev.updates else None,
            "update_seconds": sev.updates.seconds if sev.updates else None,
            "standups": sev.standups.label if sev.standups else None,
            "pagerduty_severity": sev.pagerduty_severity,
            "criteria": list(sev.criteria),
            "examples": list(sev.examples),
        }

    def counts(self) -> dict[str, int]:
        return {
            "services": len(self.services),
            "queries": len(self.queries),
            "scenarios": len(self.scenarios),
            "rules": len(self.classification.rules),
            "checks": len(self.checks),
            "actions": len(self.actions),
            "signals": len(self.classification.signals),
        }

    def dump(self, section: str | None = None) -> Any:
        """JSON-ready data of the whole runbook or one top-level section."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data if section is None else data[section]
