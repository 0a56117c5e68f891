"""Placeholders in runbooks.yaml: message and command templates (str.format) and PromQL ({job}).

Templates come from a file, so only plain named fields are allowed: no positional `{}`, no
attribute or index access (`{x.__class__}`), no conversions or format specs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from somactl.core.errors import UsageError

if TYPE_CHECKING:
    from somactl.runbook.schema import Pir, Runbook

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_PROMQL_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Fields the incident layer fills in messages (declaration, update, resolution, channel names).
MESSAGE_FIELDS = frozenset(
    {
        "severity", "severity_name", "title", "impact", "assigned", "war_room", "status_page",
        "number", "time", "next_time", "status", "actions", "root_cause", "fix", "duration",
        "service", "incident_id",
    }
)  # fmt: skip
PIR_FIELDS = frozenset(
    {
        "title", "date", "start_time", "duration", "severity", "impact", "root_cause",
        "time", "event", "text", "task", "owner", "due", "number",
    }
)  # fmt: skip
# Fields `Runbook.command_fields` provides, plus an action's own params.
COMMAND_FIELDS = frozenset(
    {"service", "tool", "namespace", "kind", "workload", "job", "tools_api_url", "prometheus_url",
     "tail", "limit"}
)  # fmt: skip
PROMQL_FIELDS = frozenset({"job", "namespace"})


def placeholders(text: str) -> tuple[str, ...]:
    """The named fields of a str.format template, in order; ValueError if it is not plain."""
    names: list[str] = []
    for _literal, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if not _IDENT.match(field):
            raise ValueError(f"placeholder {{{field}}} is not a plain lower-case name")
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} may not carry a format spec or conversion")
        if field not in names:
            names.append(field)
    return tuple(names)


def promql_placeholders(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_PROMQL_FIELD.findall(text)))


def render_promql(template: str, **fields: str) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            raise UsageError(f"PromQL template needs {{{name}}}", "pass it to render_promql")
        return fields[name]

    return _PROMQL_FIELD.sub(sub, template)


def fill(text: str, fields: Mapping[str, object], *, what: str) -> str:
    """str.format `text` with `fields`; a missing field is a UsageError naming all of them."""
    missing = [name for name in placeholders(text) if name not in fields]
    if missing:
        raise UsageError(
            f"{what} needs {', '.join(missing)}",
            f"pass {', '.join(f'{m}=...' for m in missing)}",
        )
    return text.format_map({k: "" if v is None else v for k, v in fields.items()})


def render_template(name: str, /, *, runbook: Runbook | None = None, **fields: object) -> str:
    """A message of `communication.templates` (declaration, update, resolution) filled in.

    Fields not used by the template are ignored; a missing one is a UsageError.
    """
    if runbook is None:
        from somactl.runbook.loader import load_runbook

        runbook = load_runbook()
    templates = runbook.communication.templates
    if name not in templates:
        raise UsageError(
            f"unknown message template {name!r}", f"known templates: {', '.join(sorted(templates))}"
        )
    return fill(templates[name].text, fields, what=f"template {name}")


def render_channel(channel_id: str, /, *, runbook: Runbook, **fields: object) -> str:
    """A channel's name filled in (e.g. the war room `#incident-{number}`)."""
    channels = runbook.communication.channels
    if channel_id not in channels:
        raise UsageError(
            f"unknown channel {channel_id!r}", f"known channels: {', '.join(sorted(channels))}"
        )
    return fill(channels[channel_id].name, fields, what=f"channel {channel_id}")


def render_command(
    template: str, runbook: Runbook, service: str | None = None, **params: object
) -> str:
    """A check's or action's command line for `service`, e.g. its `somactl` template."""
    return fill(template, runbook.command_fields(service, **params), what="command template")


def render_pir(
    pir: Pir,
    fields: Mapping[str, object],
    items: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
) -> str:
    """The post-incident review document (Markdown) from the runbook's PIR template."""
    items = items or {}
    out = [fill(pir.title, fields, what="PIR title")]
    for section in pir.sections:
        out.append("")
        out.append(f"## {section.heading}")
        out.extend(fill(line, fields, what=f"PIR {section.id}") for line in section.lines)
        if section.item is not None:
            for entry in items.get(section.id, ()):
                out.append(fill(section.item, {**fields, **entry}, what=f"PIR {section.id} item"))
    return "\n".join(out) + "\n"
