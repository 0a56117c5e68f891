"""Cross references and semantic checks of a Runbook the schema accepted.

Each problem carries the key path it is about, so the loader can point at the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from somactl.runbook.schema import (
    CRITICALITY_RANK,
    LEVELS,
    Condition,
    Runbook,
    SignalSpec,
    Step,
)
from somactl.runbook.templates import (
    COMMAND_FIELDS,
    MESSAGE_FIELDS,
    PIR_FIELDS,
    PROMQL_FIELDS,
    placeholders,
    promql_placeholders,
)

Loc = tuple[str | int, ...]


class Problem(NamedTuple):
    loc: Loc
    message: str


REQUIRED_TEMPLATES = ("declaration", "update", "resolution")
_MONOTONE_OPS: dict[str | bool, tuple[str, ...]] = {
    "higher": ("gt", "ge"),
    "lower": ("lt", "le"),
    True: ("is_true",),
    False: ("is_false",),
}
_NUMERIC = ("ratio", "seconds", "count")


def reference_problems(rb: Runbook) -> list[Problem]:
    return list(_all(rb))


def _all(rb: Runbook) -> Iterator[Problem]:
    yield from _severities(rb)
    yield from _signals(rb)
    yield from _rules(rb)
    yield from _services(rb)
    yield from _queries(rb)
    yield from _checks(rb)
    yield from _actions(rb)
    for pid, pattern in rb.mitigation_patterns.items():
        yield from _steps(rb, ("mitigation_patterns", pid, "steps"), pattern.steps, None)
    yield from _scenarios(rb)
    yield from _process(rb)
    yield from _escalation(rb)
    yield from _communication(rb)
    yield from _pir(rb)


def _unknown(loc: Loc, kind: str, name: str, known: Iterable[str]) -> Problem:
    return Problem(loc, f"unknown {kind} {name!r} (known: {', '.join(sorted(known))})")


def _severities(rb: Runbook) -> Iterator[Problem]:
    missing = [lvl for lvl in LEVELS if lvl not in rb.severities]
    if missing:
        yield Problem(("severities",), f"missing severities: {', '.join(missing)}")
    elif list(rb.severities) != list(LEVELS):
        yield Problem(("severities",), "severities must be listed in order P0, P1, P2, P3, P4")


def _signals(rb: Runbook) -> Iterator[Problem]:
    signals = rb.classification.signals
    for name, spec in signals.items():
        loc: Loc = ("classification", "signals", name)
        if spec.worse is not None:
            bools = spec.type == "bool"
            if bools != isinstance(spec.worse, bool) or spec.type in ("service", "services"):
                yield Problem(
                    (*loc, "worse"), f"worse: {spec.worse!r} does not fit type {spec.type}"
                )
        if spec.type == "criticality" and spec.derived_from is None:
            yield Problem(loc, "a criticality signal is derived_from a services signal")
        if spec.derived_from is not None:
            src = signals.get(spec.derived_from)
            if src is None:
                yield _unknown((*loc, "derived_from"), "signal", spec.derived_from, signals)
            elif src.type != "services" or spec.type != "criticality":
                yield Problem(
                    (*loc, "derived_from"),
                    "only a criticality signal can be derived, from a services signal",
                )


def _rules(rb: Runbook) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, rule in enumerate(rb.classification.rules):
        loc: Loc = ("classification", "rules", i)
        if rule.id in seen:
            yield Problem((*loc, "id"), f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        yield from _condition(rb, (*loc, "when"), rule.when, monotone=True)


def _condition(rb: Runbook, loc: Loc, cond: Condition, *, monotone: bool) -> Iterator[Problem]:
    if cond.all_ is not None or cond.any_ is not None:
        key = "all" if cond.all_ is not None else "any"
        for i, sub in enumerate(cond.all_ or cond.any_ or ()):
            yield from _condition(rb, (*loc, key, i), sub, monotone=monotone)
        return
    if cond.signal is None or cond.op is None:  # the schema's _one_form rules this out
        return
    signals = rb.classification.signals
    spec = signals.get(cond.signal)
    if spec is None:
        yield _unknown((*loc, "signal"), "signal", cond.signal, signals)
        return
    problem = _op_fits(rb, spec, cond)
    if problem:
        yield Problem((*loc, "op" if "op" in problem else "value"), problem)
        return
    if monotone:
        allowed = _MONOTONE_OPS.get(spec.worse) if spec.worse is not None else None
        if spec.type == "services" and cond.op == "eq":
            allowed = ("eq",)  # "includes": adding a down service can only fire more rules
        if not allowed or cond.op not in allowed:
            yield Problem(
                (*loc, "op"),
                f"{cond.op} on {cond.signal} (worse: {spec.worse}) would let a worse value lower "
                f"the severity; a rule may use {', '.join(allowed or ('nothing',))} here",
            )


def _op_fits(rb: Runbook, spec: SignalSpec, cond: Condition) -> str | None:
    op, value, kind = cond.op, cond.value, spec.type
    if kind == "bool":
        return (
            None if op in ("is_true", "is_false") else f"op {op} needs is_true/is_false on a bool"
        )
    if op in ("is_true", "is_false"):
        return f"op {op} is only for bool signals ({cond.signal} is {kind})"
    if kind in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"value must be a number for {kind} signal {cond.signal}"
        if kind == "ratio" and not 0 <= value <= 1:
            return f"value {value} is outside 0..1 for ratio signal {cond.signal}"
        if value < 0:
            return f"value {value} is negative for {kind} signal {cond.signal}"
        return None
    if kind == "criticality":
        if value not in CRITICALITY_RANK:
            return f"value must be one of {', '.join(CRITICALITY_RANK)}"
        return None
    # service / services: a service name
    if op not in ("eq", "ne"):
        return f"op {op} on a {kind} signal: use eq (is / includes) or ne"
    if not isinstance(value, str) or value not in rb.services:
        return f"value {value!r} is not a known service (known: {', '.join(rb.services)})"
    return None


def _services(rb: Runbook) -> Iterator[Problem]:
    for name, svc in rb.services.items():
        loc: Loc = ("services", name)
        for i, qid in enumerate(svc.queries):
            if qid not in rb.queries:
                yield _unknown((*loc, "queries", i), "query", qid, rb.queries)
        for i, cid in enumerate(svc.checks):
            check = rb.checks.get(cid)
            if check is None:
                yield _unknown((*loc, "checks", i), "check", cid, rb.checks)
            elif check.service is not None and check.service != name:
                yield Problem((*loc, "checks", i), f"check {cid} is only for {check.service}")
            elif (
                check.target == "service"
                and check.service is None
                and svc.kind not in check.applies_to
            ):
                yield Problem(
                    (*loc, "checks", i),
                    f"check {cid} applies to {', '.join(check.applies_to)}, not {svc.kind}",
                )
        for i, dep in enumerate(svc.depends_on):
            if dep == name:
                yield Problem((*loc, "depends_on", i), f"{name} cannot depend on itself")
            elif dep not in rb.services:
                yield _unknown((*loc, "depends_on", i), "service", dep, rb.services)
        if svc.health is not None and not svc.health.startswith("/"):
            yield Problem((*loc, "health"), "health is a path on the service, starting with /")
        if svc.kind == "tool-adapter":
            host = rb.services.get(svc.workload)
            if host is None or host.kind != "deployment":
                yield Problem(
                    (*loc, "workload"),
                    f"a tool adapter's workload names the deployment serving it; "
                    f"{svc.workload!r} is not a deployment service",
                )
            expected = f"/tools/{name}/health"
            if svc.health != expected:
                yield Problem((*loc, "health"), f"a tool adapter's health endpoint is {expected}")


def _queries(rb: Runbook) -> Iterator[Problem]:
    signals = rb.classification.signals
    units = {"ratio": "ratio", "seconds": "seconds"}
    for qid, query in rb.queries.items():
        loc: Loc = ("queries", qid)
        for field in promql_placeholders(query.template):
            if field not in PROMQL_FIELDS:
                yield Problem(
                    (*loc, "template"),
                    f"unknown placeholder {{{field}}} (known: {', '.join(sorted(PROMQL_FIELDS))})",
                )
        if query.signal is not None:
            spec = signals.get(query.signal)
            if spec is None:
                yield _unknown((*loc, "signal"), "signal", query.signal, signals)
            elif units.get(query.unit) != spec.type:
                yield Problem(
                    (*loc, "signal"),
                    f"a {query.unit} query cannot feed {spec.type} signal {query.signal}",
                )


def _command_templates(
    loc: Loc, fields: Mapping[str, str | None], allowed: Iterable[str]
) -> Iterator[Problem]:
    known = set(allowed)
    for key, text in fields.items():
        if text is None or key == "sql":
            continue
        try:
            names = placeholders(text)
        except ValueError as exc:
            yield Problem((*loc, key), f"invalid template: {exc}")
            continue
        for name in names:
            if name not in known:
                yield Problem(
                    (*loc, key),
                    f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})",
                )


def _target(
    rb: Runbook, loc: Loc, target: str, applies_to: tuple[str, ...], service: str | None
) -> Iterator[Problem]:
    if service is not None:
        svc = rb.services.get(service)
        if svc is None:
            yield _unknown((*loc, "service"), "service", service, rb.services)
        elif applies_to and svc.kind not in applies_to:
            yield Problem(
                (*loc, "service"), f"{service} is a {svc.kind}, not {', '.join(applies_to)}"
            )
    if target == "service" and not applies_to and service is None:
        yield Problem(loc, "a service-targeted entry needs applies_to (service kinds) or service")
    if target == "none" and (applies_to or service is not None):
        yield Problem((*loc, "target"), "target: none takes no applies_to/service")


def _checks(rb: Runbook) -> Iterator[Problem]:
    for cid, check in rb.checks.items():
        loc: Loc = ("checks", cid)
        yield from _target(rb, loc, check.target, check.applies_to, check.service)
        if check.query is not None and check.query not in rb.queries:
            yield _unknown((*loc, "query"), "query", check.query, rb.queries)
        if check.query is None and check.command is None and check.sql is None:
            yield Problem(loc, "a check needs a command, sql or query")
        if check.query is not None and check.backend != "prometheus":
            yield Problem((*loc, "backend"), "a check with a query runs on prometheus")
        yield from _command_templates(
            loc, {"command": check.command, "somactl": check.somactl}, COMMAND_FIELDS
        )


def _actions(rb: Runbook) -> Iterator[Problem]:
    for aid, action in rb.actions.items():
        loc: Loc = ("actions", aid)
        yield from _target(rb, loc, action.target, action.applies_to, action.service)
        if action.command is None and action.sql is None and action.somactl is None:
            yield Problem(loc, "an action needs a command, sql or somactl template")
        for key in action.params:
            if key in COMMAND_FIELDS:
                yield Problem((*loc, "params", key), f"{key} is set from the service, not a param")
        texts = {"command": action.command, "somactl": action.somactl}
        yield from _command_templates(loc, texts, COMMAND_FIELDS | set(action.params))


def _steps(rb: Runbook, loc: Loc, steps: Iterable[Step], service: str | None) -> Iterator[Problem]:
    comm = rb.communication
    refs: tuple[tuple[str, str, Mapping[str, object]], ...] = (
        ("pattern", "mitigation pattern", rb.mitigation_patterns),
        ("template", "message template", comm.templates),
        ("channel", "channel", comm.channels),
        ("tool", "tool", rb.tools),
        ("contact", "contact", rb.contacts),
        ("reference", "reference", rb.references),
        ("escalate", "external escalation", {e.id: e for e in rb.escalation.external}),
    )
    for i, step in enumerate(steps):
        sloc: Loc = (*loc, i)
        if step.check is not None and step.check not in rb.checks:
            yield _unknown((*sloc, "check"), "check", step.check, rb.checks)
        for j, cid in enumerate(step.checks):
            if cid not in rb.checks:
                yield _unknown((*sloc, "checks", j), "check", cid, rb.checks)
        if step.action is not None:
            action = rb.actions.get(step.action)
            if action is None:
                yield _unknown((*sloc, "action"), "action", step.action, rb.actions)
            else:
                for key in step.params:
                    if key not in action.params:
                        yield Problem(
                            (*sloc, "params", key),
                            f"action {step.action} has no param {key!r} "
                            f"(params: {', '.join(action.params) or 'none'})",
                        )
                svc = rb.services.get(service) if service is not None else None
                if (
                    svc is not None
                    and action.target == "service"
                    and action.service is None
                    and svc.kind not in action.applies_to
                ):
                    yield Problem(
                        (*sloc, "action"),
                        f"action {step.action} does not apply to {svc.kind} {service}",
                    )
        for key, kind, known in refs:
            value = getattr(step, key)
            if value is not None and value not in known:
                yield _unknown((*sloc, key), kind, value, known)


def _scenarios(rb: Runbook) -> Iterator[Problem]:
    for sid, scenario in rb.scenarios.items():
        loc: Loc = ("scenarios", sid)
        if scenario.service is not None and scenario.service not in rb.services:
            yield _unknown((*loc, "service"), "service", scenario.service, rb.services)
        if scenario.match is not None:
            yield from _condition(rb, (*loc, "match"), scenario.match, monotone=False)
        yield from _steps(rb, (*loc, "steps"), scenario.steps, scenario.service)


def _process(rb: Runbook) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, phase in enumerate(rb.process):
        if phase.id in seen:
            yield Problem(("process", i, "id"), f"duplicate phase id {phase.id!r}")
        seen.add(phase.id)
        yield from _steps(rb, ("process", i, "steps"), phase.steps, None)


def _escalation(rb: Runbook) -> Iterator[Problem]:
    esc = rb.escalation
    for i, level in enumerate(esc.on_call):
        if level.contact is not None and level.contact not in rb.contacts:
            yield _unknown(
                ("escalation", "on_call", i, "contact"), "contact", level.contact, rb.contacts
            )
    covered: dict[str, int] = {}
    for i, rule in enumerate(esc.incident_commander):
        for j, lvl in enumerate(rule.severities):
            if lvl in covered:
                yield Problem(
                    ("escalation", "incident_commander", i, "severities", j),
                    f"{lvl} already has an IC rule (entry {covered[lvl]})",
                )
            covered[lvl] = i
    ids: set[str] = set()
    for i, ext in enumerate(esc.external):
        if ext.id in ids:
            yield Problem(("escalation", "external", i, "id"), f"duplicate id {ext.id!r}")
        ids.add(ext.id)


def _template_fields(loc: Loc, text: str, known: frozenset[str]) -> Iterator[Problem]:
    try:
        names = placeholders(text)
    except ValueError as exc:
        yield Problem(loc, f"invalid template: {exc}")
        return
    for name in names:
        if name not in known:
            yield Problem(
                loc, f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})"
            )


def _communication(rb: Runbook) -> Iterator[Problem]:
    comm = rb.communication
    for cid, channel in comm.channels.items():
        yield from _template_fields(
            ("communication", "channels", cid, "name"), channel.name, MESSAGE_FIELDS
        )
    for i, cid in enumerate(comm.update_channels):
        if cid not in comm.channels:
            yield _unknown(("communication", "update_channels", i), "channel", cid, comm.channels)
    for name in REQUIRED_TEMPLATES:
        if name not in comm.templates:
            yield Problem(("communication", "templates"), f"missing template {name!r}")
    for tid, tmpl in comm.templates.items():
        loc: Loc = ("communication", "templates", tid)
        if tmpl.channel not in comm.channels:
            yield _unknown((*loc, "channel"), "channel", tmpl.channel, comm.channels)
        problems = list(_template_fields((*loc, "text"), tmpl.text, MESSAGE_FIELDS))
        yield from problems
        if tmpl.example and not problems:
            used = set(placeholders(tmpl.text))
            if set(tmpl.example) != used:
                yield Problem(
                    (*loc, "example"),
                    f"the example must fill exactly {', '.join(sorted(used))}",
                )


def _pir(rb: Runbook) -> Iterator[Problem]:
    pir = rb.pir
    yield from _template_fields(("pir", "title"), pir.title, PIR_FIELDS)
    ids: set[str] = set()
    for i, section in enumerate(pir.sections):
        loc: Loc = ("pir", "sections", i)
        if section.id in ids:
            yield Problem((*loc, "id"), f"duplicate section id {section.id!r}")
        ids.add(section.id)
        for j, line in enumerate(section.lines):
            yield from _template_fields((*loc, "lines", j), line, PIR_FIELDS)
        if section.item is not None:
            yield from _template_fields((*loc, "item"), section.item, PIR_FIELDS)
    if pir.example is not None:
        with_items = {s.id: s for s in pir.sections if s.item is not None}
        for sid in pir.example.items:
            if sid not in with_items:
                yield _unknown(
                    ("pir", "example", "items", sid), "PIR list section", sid, with_items
                )
