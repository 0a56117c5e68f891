"""Sinks for incident messages: Slack incoming webhook, PagerDuty Events API v2, Statuspage.

Each sink turns a `Notice` into zero or more `Prepared` requests (nothing to do is fine: a note
does not page anyone), and sends them within the command's deadline. Sending never raises: every
outcome, failures included, is a `SinkResult` the caller records on the timeline and reports.
`Prepared.shown()` is what `--dry-run` prints: secrets masked, a webhook URL never shown.

httpx is imported only when a request is actually sent (through somactl.clients.http).
"""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from somactl.core.errors import SomactlError
from somactl.core.redact import MASK, redact, redact_obj, register_secret
from somactl.incident.store import Incident, fmt_ts, utcnow

if TYPE_CHECKING:
    from somactl.clients.http import HttpResponse
    from somactl.core.deadline import Deadline

NoticeEvent = Literal["declare", "update", "resolve", "acknowledge", "escalate", "severity"]

SLACK_SECTION_MAX: Final = 3000
SLACK_MAX_BLOCKS: Final = 50
SLACK_TEXT_MAX: Final = 40_000
PD_SUMMARY_MAX: Final = 1024
PD_DEDUP_MAX: Final = 255
# Statuspage's own vocabulary for an incident's status, from ours.
STATUSPAGE_STATUS: Final = {
    "declared": "investigating",
    "investigating": "investigating",
    "identified": "identified",
    "monitoring": "monitoring",
    "resolved": "resolved",
}
# PagerDuty's event severity -> Statuspage's impact (two vendors' vocabularies, not runbook data:
# the runbook picks the PagerDuty severity per level).
STATUSPAGE_IMPACT: Final = {
    "critical": "critical",
    "error": "major",
    "warning": "minor",
    "info": "none",
}


@dataclass(frozen=True)
class Page:
    """One PagerDuty alert to open: its dedup key and whom it is for."""

    dedup_key: str
    roles: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class Notice:
    """What to tell the sinks about one incident event."""

    event: NoticeEvent
    incident: Incident
    text: str  # the runbook's rendered message
    headline: str  # one line: "INCIDENT DECLARED - P0: Gateway API Down"
    pagerduty_severity: str | None = None  # for triggers (runbook: severities.Px)
    pages: tuple[Page, ...] = ()  # PagerDuty alerts to open (declare / escalate / severity)
    links: tuple[tuple[str, str], ...] = ()  # (text, href) for PagerDuty links
    details: dict[str, Any] = field(default_factory=dict)  # custom_details / extra context


@dataclass
class Prepared:
    sink: str
    action: str  # post, trigger, acknowledge, resolve, create, update
    method: str
    url: str  # never shown
    shown_url: str  # what may be printed
    body: dict[str, Any]
    headers: dict[str, str]
    idempotent: bool
    secret_url: bool = False
    dedup_key: str | None = None
    masked: tuple[str, ...] = ()  # body keys holding secrets

    def shown(self) -> dict[str, Any]:
        """The request as --dry-run prints it: no secret values, no webhook URL."""
        body = dict(self.body)
        for key in self.masked:
            if key in body:
                body[key] = MASK
        headers = {
            k: (MASK if k.lower() == "authorization" else v) for k, v in self.headers.items()
        }
        shown: dict[str, Any] = redact_obj(
            {
                "sink": self.sink,
                "action": self.action,
                "method": self.method,
                "url": self.shown_url,
                "headers": headers,
                "body": body,
            }
        )
        return shown


@dataclass
class SinkResult:
    sink: str
    action: str
    ok: bool
    status: Literal["sent", "failed", "unknown", "dry-run", "skipped"]
    message: str
    http_status: int | None = None
    attempts: int = 0
    dedup_key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] | None = None  # the shown request (dry-run)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sink": self.sink,
            "action": self.action,
            "ok": self.ok,
            "status": self.status,
            "message": redact(self.message),
            "http_status": self.http_status,
            "attempts": self.attempts,
        }
        if self.dedup_key:
            out["dedup_key"] = self.dedup_key
        if self.data:
            out["data"] = redact_obj(self.data)
        if self.request is not None:
            out["request"] = self.request
        return out


def _chunks(text: str, size: int) -> list[str]:
    out: list[str] = []
    rest = text
    while rest:
        if len(rest) <= size:
            out.append(rest)
            break
        cut = rest.rfind("\n", 0, size)
        if cut <= 0:
            cut = size
        out.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    return out or [""]


class Sink(abc.ABC):
    name: str = "sink"

    @abc.abstractmethod
    def prepare(self, notice: Notice) -> list[Prepared]: ...

    @abc.abstractmethod
    def interpret(self, prep: Prepared, resp: HttpResponse) -> SinkResult: ...

    def send(self, prep: Prepared, deadline: Deadline) -> SinkResult:
        """Send one prepared request; never raises (the outcome is the result)."""
        from somactl.clients import http

        try:
            resp = http.request(
                prep.method,
                prep.url,
                service=self.name,
                deadline=deadline,
                idempotent=prep.idempotent,
                json=prep.body,
                headers=prep.headers,
                secret_url=prep.secret_url,
            )
        except http.HttpUnreachableError as exc:
            unknown = exc.maybe_delivered and not prep.idempotent
            return SinkResult(
                self.name,
                prep.action,
                ok=False,
                status="unknown" if unknown else "failed",
                message=exc.message + ("; it may have been delivered" if unknown else ""),
                attempts=exc.attempts,
                dedup_key=prep.dedup_key,
            )
        except SomactlError as exc:
            return SinkResult(
                self.name,
                prep.action,
                ok=False,
                status="failed",
                message=exc.message,
                dedup_key=prep.dedup_key,
            )
        result = self.interpret(prep, resp)
        result.attempts = resp.attempts
        result.http_status = resp.status
        result.dedup_key = prep.dedup_key
        if resp.attempts > 1:
            result.data.setdefault("statuses", resp.statuses)
        return result


# --- Slack --------------------------------------------------------------------------------------

_SLACK_ERROR = re.compile(r"^[a-z][a-z_]{1,60}$")


class SlackSink(Sink):
    """A Slack incoming webhook: the URL is the secret and is never shown or logged."""

    name = "slack"

    def __init__(self, webhook_url: str) -> None:
        self.url = webhook_url
        register_secret(webhook_url)

    def prepare(self, notice: Notice) -> list[Prepared]:
        inc = notice.incident
        text = notice.text[:SLACK_TEXT_MAX]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for chunk in _chunks(text, SLACK_SECTION_MAX)
        ][: SLACK_MAX_BLOCKS - 1]
        context = f"{inc.id} · {inc.severity} · {inc.status} · war room {inc.war_room}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
        body = {"text": text, "blocks": blocks, "mrkdwn": True}
        return [
            Prepared(
                sink=self.name,
                action="post",
                method="POST",
                url=self.url,
                shown_url="slack webhook (configured; URL not shown)",
                body=body,
                headers={"content-type": "application/json"},
                idempotent=False,  # a repeat would post twice
                secret_url=True,
            )
        ]

    def interpret(self, prep: Prepared, resp: HttpResponse) -> SinkResult:
        text = resp.text.strip()
        if resp.status == 200 and text == "ok":
            return SinkResult(self.name, prep.action, ok=True, status="sent", message="slack: sent")
        code = text if _SLACK_ERROR.match(text) else ""
        msg = f"slack webhook rejected ({resp.status})" + (f": {code}" if code else "")
        return SinkResult(self.name, prep.action, ok=False, status="failed", message=msg)


# --- PagerDuty ----------------------------------------------------------------------------------


class PagerDutySink(Sink):
    """PagerDuty Events API v2: trigger / acknowledge / resolve, dedup_key = the incident id."""

    name = "pagerduty"

    def __init__(self, base_url: str, routing_key: str) -> None:
        self.url = base_url.rstrip("/") + "/v2/enqueue"
        self.routing_key = routing_key
        register_secret(routing_key)

    def _prep(self, action: str, body: dict[str, Any], dedup_key: str) -> Prepared:
        from somactl.clients.http import safe_target

        return Prepared(
            sink=self.name,
            action=action,
            method="POST",
            url=self.url,
            shown_url=safe_target(self.url) + "/v2/enqueue",
            body={
                "routing_key": self.routing_key,
                "event_action": action,
                "dedup_key": dedup_key[:PD_DEDUP_MAX],
                **body,
            },
            headers={"content-type": "application/json"},
            idempotent=True,  # the dedup_key makes a repeat land on the same alert
            dedup_key=dedup_key[:PD_DEDUP_MAX],
            masked=("routing_key",),
        )

    def prepare(self, notice: Notice) -> list[Prepared]:
        inc = notice.incident
        if notice.event in ("declare", "escalate", "severity"):
            out = []
            for page in notice.pages:
                payload: dict[str, Any] = {
                    "summary": page.summary[:PD_SUMMARY_MAX],
                    "source": inc.service or "somactl",
                    "severity": notice.pagerduty_severity or "critical",
                    "timestamp": fmt_ts(utcnow()),
                    "component": inc.service or "somagent",
                    "group": "somagent",
                    "class": f"incident/{inc.severity}",
                    "custom_details": {
                        "incident": inc.id,
                        "severity": inc.severity,
                        "title": inc.title,
                        "impact": inc.impact,
                        "commander": inc.commander,
                        "war_room": inc.war_room,
                        "page": list(page.roles),
                        **notice.details,
                    },
                }
                body: dict[str, Any] = {"payload": payload, "client": "somactl"}
                links = [
                    {"href": href, "text": text}
                    for text, href in notice.links
                    if href.startswith(("http://", "https://"))
                ]
                if links:
                    body["links"] = links
                out.append(self._prep("trigger", body, page.dedup_key))
            return out
        if notice.event in ("acknowledge", "resolve"):
            keys = list(inc.pagerduty_keys) or [inc.id]
            return [self._prep(notice.event, {}, key) for key in keys]
        return []

    def interpret(self, prep: Prepared, resp: HttpResponse) -> SinkResult:
        data = resp.json()
        if resp.status == 202:
            return SinkResult(
                self.name,
                prep.action,
                ok=True,
                status="sent",
                message=f"pagerduty: {prep.action} accepted (dedup_key {prep.dedup_key})",
            )
        if resp.status == 400:
            errors = data.get("errors") if isinstance(data, dict) else None
            what = (
                "; ".join(str(e) for e in errors)
                if isinstance(errors, list) and errors
                else (
                    str(data.get("message"))
                    if isinstance(data, dict) and data.get("message")
                    else "invalid event"
                )
            )
            return SinkResult(
                self.name,
                prep.action,
                ok=False,
                status="failed",
                message=redact(f"pagerduty rejected the {prep.action} (400, not retried): {what}"),
            )
        attempts = f" after {resp.attempts} attempts" if resp.attempts > 1 else ""
        after = f" (last Retry-After {resp.retry_after:g}s)" if resp.retry_after is not None else ""
        return SinkResult(
            self.name,
            prep.action,
            ok=False,
            status="failed",
            message=f"pagerduty: HTTP {resp.status}{attempts}{after}",
        )


# --- Statuspage ---------------------------------------------------------------------------------


class StatuspageSink(Sink):
    """Atlassian Statuspage: create the page incident on declare, PATCH it afterwards."""

    name = "statuspage"

    def __init__(self, base_url: str, page_id: str, api_key: str) -> None:
        self.base = base_url.rstrip("/")
        self.page_id = page_id
        self.api_key = api_key
        register_secret(api_key)

    def prepare(self, notice: Notice) -> list[Prepared]:
        from somactl.clients.http import safe_target

        if notice.event not in ("declare", "update", "resolve", "severity"):
            return []
        inc = notice.incident
        if notice.event == "severity" and not inc.statuspage_id:
            return []
        status = STATUSPAGE_STATUS[inc.status]
        incident: dict[str, Any] = {
            "name": inc.title,
            "status": status,
            "body": notice.text,
            "deliver_notifications": True,
        }
        if notice.pagerduty_severity in STATUSPAGE_IMPACT:
            incident["impact_override"] = STATUSPAGE_IMPACT[notice.pagerduty_severity or ""]
        headers = {"authorization": f"OAuth {self.api_key}", "content-type": "application/json"}
        path = f"/pages/{self.page_id}/incidents"
        if inc.statuspage_id:
            path += f"/{inc.statuspage_id}"
            return [
                Prepared(
                    sink=self.name,
                    action="update",
                    method="PATCH",
                    url=self.base + path,
                    shown_url=safe_target(self.base) + _path_of(self.base) + path,
                    body={"incident": incident},
                    headers=headers,
                    idempotent=True,
                )
            ]
        return [
            Prepared(
                sink=self.name,
                action="create",
                method="POST",
                url=self.base + path,
                shown_url=safe_target(self.base) + _path_of(self.base) + path,
                body={"incident": incident},
                headers=headers,
                idempotent=False,  # a repeated POST would open a second page incident
            )
        ]

    def interpret(self, prep: Prepared, resp: HttpResponse) -> SinkResult:
        data = resp.json()
        if resp.ok:
            page_id = str(data.get("id")) if isinstance(data, dict) and data.get("id") else None
            res = SinkResult(
                self.name,
                prep.action,
                ok=True,
                status="sent",
                message=f"statuspage: {prep.action}d" + (f" ({page_id})" if page_id else ""),
            )
            if page_id:
                res.data["statuspage_id"] = page_id
            return res
        detail = ""
        if isinstance(data, dict):
            err = data.get("error") or data.get("message")
            if isinstance(err, str):
                detail = ": " + err[:200]
            elif isinstance(err, list):
                detail = ": " + "; ".join(str(e) for e in err)[:200]
        attempts = f" after {resp.attempts} attempts" if resp.attempts > 1 else ""
        return SinkResult(
            self.name,
            prep.action,
            ok=False,
            status="failed",
            message=redact(f"statuspage: HTTP {resp.status}{attempts}{detail}"),
        )


def _path_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.rstrip("/")


# --- fan-out ------------------------------------------------------------------------------------


def dispatch(
    sinks: Sequence[Sink], notice: Notice, deadline: Deadline, *, dry_run: bool = False
) -> list[SinkResult]:
    """Prepare every sink's requests; print-only in a dry run, else send them concurrently.

    Requests of one sink go in order (a Statuspage create before anything else of that sink);
    sinks run side by side, each request capped by the shared deadline. A sink still running at
    the deadline (plus a short grace) is reported as `unknown`.
    """
    plans = [(sink, sink.prepare(notice)) for sink in sinks]
    results: list[SinkResult] = []
    if dry_run:
        for _sink, preps in plans:
            results += [
                SinkResult(
                    p.sink,
                    p.action,
                    ok=True,
                    status="dry-run",
                    message=f"{p.sink}: would {p.action} (dry run, nothing sent)",
                    dedup_key=p.dedup_key,
                    request=p.shown(),
                )
                for p in preps
            ]
        return results
    slots: list[list[SinkResult]] = [[] for _ in plans]

    def run(i: int, sink: Sink, preps: list[Prepared]) -> None:
        for prep in preps:
            slots[i].append(sink.send(prep, deadline))

    threads = []
    for i, (sink, preps) in enumerate(plans):
        if not preps:
            continue
        t = threading.Thread(
            target=run, args=(i, sink, preps), name=f"sink-{sink.name}", daemon=True
        )
        t.start()
        threads.append((i, t))
    for i, t in threads:
        t.join(deadline.remaining() + 1.0)
        if t.is_alive():
            preps = plans[i][1]
            done = len(slots[i])
            slots[i] = list(slots[i]) + [
                SinkResult(
                    p.sink,
                    p.action,
                    ok=False,
                    status="unknown",
                    message=f"{p.sink}: no answer within {deadline.seconds:g}s",
                    dedup_key=p.dedup_key,
                )
                for p in preps[done:]
            ]
    for slot in slots:
        results += slot
    return results
