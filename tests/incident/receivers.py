"""Loopback HTTP receivers standing in for Slack, PagerDuty and Statuspage.

Each receiver is a stdlib ThreadingHTTPServer on 127.0.0.1 port 0 in a thread. It records every
request, checks its payload against the shapes in shared/reference/integrations.md (violations
are collected, tests assert there are none), and answers from a script of replies (then the
service's normal answer). The PagerDuty receiver also keeps alerts by dedup_key, as PagerDuty
does, so "exactly one alert" can be asserted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
SP_STATUSES = {"investigating", "identified", "monitoring", "resolved"}
SP_IMPACTS = {"none", "minor", "major", "critical"}
SP_COMPONENT_STATUSES = {"degraded_performance", "partial_outage", "major_outage", "operational"}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0  # seconds between body bytes (slow-drip server)
    # status 0: close the connection without any response (a lost answer)


def _bytes(body: Any) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "text/plain"
    if isinstance(body, str):
        return body.encode(), "text/plain"
    return json.dumps(body).encode(), "application/json"


class Receiver:
    kind = "generic"

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.violations: list[str] = []
        self.script: deque[Reply] = deque()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with receiver.lock:
                    receiver.requests.append(req)
                    scripted = receiver.script.popleft() if receiver.script else None
                try:
                    receiver.validate(req)
                except Exception as exc:  # noqa: BLE001 -- a shape problem is a test finding
                    receiver.violations.append(f"{req.method} {req.path}: {exc!r}")
                reply = scripted or receiver.answer(req)
                if reply.status == 0:  # drop the connection without answering
                    self.close_connection = True
                    return
                data, ctype = _bytes(reply.body)
                self.send_response(reply.status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    if reply.drip:
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(reply.drip)  # the fault being simulated: a slow drip
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_POST = _handle
            do_PATCH = _handle
            do_GET = _handle
            do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def queue(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.json() for r in self.requests]

    def validate(self, req: Received) -> None:
        return None

    def answer(self, req: Received) -> Reply:
        return Reply(200, "ok")


class SlackReceiver(Receiver):
    kind = "slack"

    def validate(self, req: Received) -> None:
        assert req.method == "POST", req.method
        body = req.json()
        assert isinstance(body, dict)
        text = body.get("text")
        assert isinstance(text, str) and text.strip(), "text (the fallback) is required"
        assert len(text) <= 40_000, "text over 40,000 characters"
        for key in ("channel", "username", "icon_emoji", "icon_url"):
            assert key not in body, f"app webhooks cannot override {key}"
        blocks = body.get("blocks", [])
        assert len(blocks) <= 50, "more than 50 blocks"
        for block in blocks:
            assert block.get("type") in ("section", "context", "header", "divider"), block
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000, "section text over 3000"
                assert block["text"]["type"] in ("mrkdwn", "plain_text")
                for f in block.get("fields", []):
                    assert len(f["text"]) <= 2000
                assert len(block.get("fields", [])) <= 10

    def answer(self, req: Received) -> Reply:
        return Reply(200, "ok")


class PagerDutyReceiver(Receiver):
    kind = "pagerduty"

    def __init__(self) -> None:
        super().__init__()
        self.alerts: dict[str, dict[str, Any]] = {}  # dedup_key -> {"state", "triggers"}
        self.alert_count = 0

    def validate(self, req: Received) -> None:
        assert req.method == "POST" and req.path == "/v2/enqueue", (req.method, req.path)
        assert len(req.body) <= 512 * 1024, "payload over 512 KB"
        ev = req.json()
        assert isinstance(ev.get("routing_key"), str) and len(ev["routing_key"]) == 32
        assert ev.get("event_action") in PD_ACTIONS, ev.get("event_action")
        key = ev.get("dedup_key")
        assert isinstance(key, str) and 0 < len(key) <= 255
        if ev["event_action"] == "trigger":
            p = ev["payload"]
            assert isinstance(p["summary"], str) and 0 < len(p["summary"]) <= 1024
            assert isinstance(p["source"], str) and p["source"]
            assert p["severity"] in PD_SEVERITIES, p["severity"]
            if "timestamp" in p:
                datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
            if "custom_details" in p:
                assert isinstance(p["custom_details"], dict)
            for link in ev.get("links", []):
                assert link["href"]
            for img in ev.get("images", []):
                assert img["src"].startswith("https://")

    def answer(self, req: Received) -> Reply:
        ev = req.json() or {}
        key = ev.get("dedup_key", "")
        with self.lock:
            alert = self.alerts.get(key)
            action = ev.get("event_action")
            if action == "trigger":
                if alert is None or alert["state"] == "resolved":
                    self.alert_count += 1
                    self.alerts[key] = {"state": "triggered", "triggers": 1}
                else:
                    alert["triggers"] += 1
            elif alert is not None and alert["state"] != "resolved":
                alert["state"] = "acknowledged" if action == "acknowledge" else "resolved"
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})


class StatuspageReceiver(Receiver):
    kind = "statuspage"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.incidents: dict[str, dict[str, Any]] = {}

    def validate(self, req: Received) -> None:
        assert req.headers.get("authorization") == f"OAuth {self.api_key}", "OAuth header"
        parts = req.path.strip("/").split("/")
        assert parts[:2] == ["v1", "pages"] and parts[3] == "incidents", req.path
        body = req.json()["incident"]
        if req.method == "POST":
            assert len(parts) == 4
            assert isinstance(body["name"], str) and body["name"]
        else:
            assert req.method == "PATCH" and len(parts) == 5
        assert body["status"] in SP_STATUSES, body["status"]
        assert isinstance(body.get("body"), str)
        if "impact_override" in body:
            assert body["impact_override"] in SP_IMPACTS
        for v in body.get("components", {}).values():
            assert v in SP_COMPONENT_STATUSES
        if "deliver_notifications" in body:
            assert isinstance(body["deliver_notifications"], bool)

    def answer(self, req: Received) -> Reply:
        parts = req.path.strip("/").split("/")
        body = (req.json() or {}).get("incident", {})
        with self.lock:
            if req.method == "POST":
                iid = f"sp{len(self.incidents) + 1:04d}"
                self.incidents[iid] = {"id": iid, **body, "updates": 1}
                return Reply(201, self.incidents[iid])
            iid = parts[4] if len(parts) > 4 else ""
            if iid not in self.incidents:
                return Reply(404, {"error": "The requested resource could not be found."})
            self.incidents[iid].update(body)
            self.incidents[iid]["updates"] += 1
            return Reply(200, self.incidents[iid])


def start_all(api_key: str) -> tuple[SlackReceiver, PagerDutyReceiver, StatuspageReceiver]:
    s = SlackReceiver()
    p = PagerDutyReceiver()
    sp = StatuspageReceiver(api_key)
    for r in (s, p, sp):
        r.start()
    return s, p, sp
