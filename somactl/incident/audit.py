"""The audit journal: append-only JSON Lines (`audit.jsonl` in the state dir), hash-chained.

Every action writes an `intent` record before it runs and a `result` (or `aborted`) record
after, linked by `event_id`. Each record carries `prev` (the previous record's hash) and `hash` =
sha256(prev + canonical JSON of the record without `hash`), is redacted before it is written,
written with one `write(2)` under an exclusive `flock`, and fsync'd before the action may run.
If the journal cannot be written the caller gets AuditUnavailableError (exit 8) *before* acting.

A torn tail (a partial last line: ENOSPC mid-write, power loss) is never silently accepted:
`verify()` reports it; the next writer closes it off with a `repair` record that names the torn
bytes (their sha256) and links to the last intact record, so the chain stays checkable.

Use it as:

    journal = AuditJournal(state_dir)
    with journal.action("mitigate.rollback", "deployment/web", plan) as rec:
        ...apply...
        rec.result("ok", {"revision": 6})

When an incident is open, `action()` also puts `action_planned` / `action_applied` on its timeline
(an action that started before any incident was open goes on the one declared while it ran, from
its result on). An intent names the runbook service acted on (`service`), so a declaration can put
the actions of the hour before it on the new incident's timeline (`actions_between`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from somactl.core.errors import (
    AuditUnavailableError,
    NotConfirmedError,
    PreconditionError,
    SomactlError,
    UnreachableError,
    UsageError,
)
from somactl.core.redact import redact, redact_obj
from somactl.incident.store import crash_point, default_actor, fmt_ts, utcnow

JOURNAL_NAME: Final = "audit.jsonl"
GENESIS: Final = "0" * 64
RECORD_VERSION: Final = 1
LOCK_TIMEOUT: Final = 5.0
TAIL_SCAN_LIMIT: Final = 8 * 1024 * 1024

Phase = Literal["intent", "result", "aborted", "repair"]
Outcome = Literal["ok", "failed", "unknown"]
OUTCOMES: Final = ("ok", "failed", "unknown")


def canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(prev: str, record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256((prev + canonical(body)).encode("utf-8")).hexdigest()


def _unavailable(path: Path, exc: OSError | str) -> AuditUnavailableError:
    reason = exc if isinstance(exc, str) else (exc.strerror or type(exc).__name__)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    return AuditUnavailableError(
        redact(f"cannot write audit record ({reason}: {path}); refusing to act")
    )


# Indirection so tests can inject ENOSPC / EIO exactly where the journal writes.
def _os_write(fd: int, data: bytes) -> int:
    return os.write(fd, data)


def _os_fsync(fd: int) -> None:
    os.fsync(fd)


@dataclass
class _Tail:
    last: dict[str, Any] | None  # the last intact record
    bad: bytes  # bytes after it that are not an intact record (torn or garbled)


def _read_tail(fd: int, path: Path) -> _Tail:
    """The last intact record and whatever follows it, reading backwards from the end."""
    size = os.fstat(fd).st_size
    if size == 0:
        return _Tail(None, b"")
    chunk = 64 * 1024
    pos = size
    buf = b""
    while True:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        # complete lines in buf: those followed by "\n"; the first piece may be partial (pos > 0)
        body, _, tail = buf.rpartition(b"\n")
        lines = body.split(b"\n") if body or buf.startswith(b"\n") else []
        start_partial = pos > 0
        bad = tail
        for i in range(len(lines) - 1, -1, -1):
            if i == 0 and start_partial:
                break
            rec = _parse(lines[i])
            if rec is not None:
                return _Tail(rec, bad)
            bad = lines[i] + b"\n" + bad
        if pos == 0:
            return _Tail(None, bad)
        if size - pos > TAIL_SCAN_LIMIT:
            raise _unavailable(path, "no intact record in the journal's last 8 MiB")
        chunk *= 2


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("hash"), str):
        return None
    return rec


class AuditJournal:
    """The journal in `state_dir`. Cheap to construct; every write opens, locks and fsyncs."""

    def __init__(self, state_dir: str | os.PathLike[str], *, actor: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / JOURNAL_NAME
        self.actor = actor or default_actor()

    # --- writing --------------------------------------------------------------------------------

    def _open(self) -> int:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise _unavailable(self.path, exc) from None
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _unavailable(self.path, exc) from None
        if created:
            try:
                dfd = os.open(self.state_dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:
                pass
        return fd

    def _lock(self, fd: int) -> None:
        end = time.monotonic() + LOCK_TIMEOUT
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= end:
                    raise _unavailable(
                        self.path, f"locked by another process for {LOCK_TIMEOUT:g}s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except OSError as exc:
                raise _unavailable(self.path, exc) from None

    def _write_line(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = _os_write(fd, view.tobytes())
            view = view[n:]

    def check_writable(self) -> None:
        """Raise AuditUnavailableError now if a record could not be appended (no write made)."""
        fd = self._open()
        try:
            self._lock(fd)
        finally:
            os.close(fd)
        if not os.access(self.path, os.W_OK):
            raise _unavailable(self.path, "permission denied")

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Chain, redact, write and fsync one record; return it as written."""
        fd = self._open()
        try:
            self._lock(fd)
            try:
                tail = _read_tail(fd, self.path)
            except OSError as exc:
                raise _unavailable(self.path, exc) from None
            prev = tail.last["hash"] if tail.last else GENESIS
            seq = int(tail.last.get("seq", 0)) + 1 if tail.last else 1
            out = b""
            if tail.bad:
                repair: dict[str, Any] = {
                    "v": RECORD_VERSION,
                    "seq": seq,
                    "ts": fmt_ts(utcnow()),
                    "event_id": uuid.uuid4().hex,
                    "phase": "repair",
                    "kind": "audit.torn-record",
                    "target": JOURNAL_NAME,
                    "actor": self.actor,
                    "details": {
                        "after_seq": seq - 1,
                        "torn_bytes": len(tail.bad),
                        "torn_sha256": hashlib.sha256(tail.bad).hexdigest(),
                        "terminated": not tail.bad.endswith(b"\n"),
                    },
                    "prev": prev,
                }
                repair["hash"] = record_hash(prev, repair)
                out += (b"" if tail.bad.endswith(b"\n") else b"\n") + (
                    canonical(repair).encode() + b"\n"
                )
                prev, seq = repair["hash"], seq + 1
            rec: dict[str, Any] = redact_obj(
                {
                    "v": RECORD_VERSION,
                    "seq": seq,
                    "ts": fmt_ts(utcnow()),
                    **fields,
                    "actor": fields.get("actor") or self.actor,
                    "prev": prev,
                }
            )
            rec.pop("hash", None)
            rec["hash"] = record_hash(prev, rec)
            out += canonical(rec).encode("utf-8") + b"\n"
            try:
                self._write_line(fd, out)
                _os_fsync(fd)
            except OSError as exc:
                raise _unavailable(self.path, exc) from None
            return rec
        finally:
            os.close(fd)  # closing releases the flock

    def intent(
        self,
        kind: str,
        target: str,
        plan: Mapping[str, Any] | None = None,
        *,
        incident: str | None = None,
        event_id: str | None = None,
        service: str | None = None,
    ) -> dict[str, Any]:
        return self.append(
            {
                "event_id": event_id or uuid.uuid4().hex,
                "phase": "intent",
                "kind": kind,
                "target": target,
                "incident": incident,
                **({"service": service} if service else {}),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "plan": dict(plan or {}),
            }
        )

    def result(
        self,
        event_id: str,
        outcome: Outcome,
        details: Mapping[str, Any] | None = None,
        *,
        kind: str,
        target: str,
        incident: str | None = None,
    ) -> dict[str, Any]:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        return self.append(
            {
                "event_id": event_id,
                "phase": "result",
                "kind": kind,
                "target": target,
                "incident": incident,
                "outcome": outcome,
                "details": dict(details or {}),
            }
        )

    def aborted(
        self,
        event_id: str,
        reason: str,
        *,
        kind: str,
        target: str,
        incident: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.append(
            {
                "event_id": event_id,
                "phase": "aborted",
                "kind": kind,
                "target": target,
                "incident": incident,
                "reason": reason,
                "details": dict(details or {}),
            }
        )

    def action(
        self,
        kind: str,
        target: str,
        plan: Mapping[str, Any] | None = None,
        *,
        incident: str | None = None,
        service: str | None = None,
        timeline: bool = True,
    ) -> ActionRecord:
        """A context manager around one action: intent on enter (AuditUnavailableError before
        anything runs), result/aborted on exit. `incident` pins the incident; by default the open
        one (for `service`, if given) is used when there is one; `timeline=False` skips the
        incident timeline (the journal is always written)."""
        return ActionRecord(self, kind, target, dict(plan or {}), incident, service, timeline)

    # --- reading --------------------------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        """Every parseable record, in order (use verify() to check the chain)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for line in fh:
                rec = _parse(line)
                if rec is not None:
                    yield rec

    def tail(self, n: int) -> list[dict[str, Any]]:
        from collections import deque

        return list(deque(self.records(), maxlen=max(0, n)))

    def records_since(self, since: datetime) -> list[dict[str, Any]]:
        """The parseable records stamped at or after `since`, oldest first.

        Records are appended in time order (stamped under the lock), so the file is read
        backwards from its end and the read stops at the first older record: the cost is the
        window's, not the journal's.
        """
        if not self.path.exists():
            return []
        cutoff = fmt_ts(since)  # the stamps' format sorts as time does
        newest_first: list[dict[str, Any]] = []
        with self.path.open("rb") as fh:
            pos = fh.seek(0, os.SEEK_END)
            carry = b""  # the start of a line whose beginning is in the part not read yet
            while pos > 0:
                step = min(64 * 1024, pos)
                pos -= step
                fh.seek(pos)
                lines = (fh.read(step) + carry).split(b"\n")
                carry = lines.pop(0) if pos > 0 else b""
                for line in reversed(lines):
                    rec = _parse(line)
                    if rec is None:
                        continue
                    if str(rec.get("ts", "")) < cutoff:
                        return newest_first[::-1]
                    newest_first.append(rec)
        return newest_first[::-1]

    def actions_between(
        self, since: datetime, until: datetime, *, service: str
    ) -> list[dict[str, Any]]:
        """Actions on runbook service `service` whose intent is stamped in [since, until], oldest
        first: each intent merged with how it ended by `until` (`outcome` ok / failed / unknown /
        aborted, or `running` when there is no result yet and its process is alive; `result`:
        the closing record or None)."""
        hi = fmt_ts(until)
        intents: dict[str, dict[str, Any]] = {}
        closing: dict[str, dict[str, Any]] = {}
        for rec in self.records_since(since):
            if str(rec.get("ts", "")) > hi:
                break
            eid = str(rec.get("event_id"))
            # an intent already recorded on an incident belongs to that one's timeline (a
            # resolved incident's rollback must not reappear on the next one's)
            if (
                rec.get("phase") == "intent"
                and rec.get("service") == service
                and not rec.get("incident")
            ):
                intents[eid] = rec
            elif rec.get("phase") in ("result", "aborted") and eid in intents:
                closing[eid] = rec
        out = []
        for eid, intent in intents.items():
            end = closing.get(eid)
            if end is None:
                outcome = "running" if _still_running(intent) else "unknown"
            elif end.get("phase") == "aborted":
                outcome = "aborted"
            else:
                outcome = str(end.get("outcome"))
            out.append({**intent, "outcome": outcome, "result": end})
        return out

    def last_action(self, kind: str, target: str | None = None) -> dict[str, Any] | None:
        """The latest intent of `kind` (on `target`), merged with how it ended.

        Returns the intent record plus `outcome` (ok / failed / unknown / aborted; `unknown` when
        no result was written) and `result` (the closing record, or None). None if never run.
        """
        intents: dict[str, dict[str, Any]] = {}
        closing: dict[str, dict[str, Any]] = {}
        last: str | None = None
        for rec in self.records():
            if rec.get("kind") != kind or (target is not None and rec.get("target") != target):
                continue
            eid = str(rec.get("event_id"))
            if rec.get("phase") == "intent":
                intents[eid] = rec
                last = eid
            elif rec.get("phase") in ("result", "aborted"):
                closing[eid] = rec
        if last is None:
            return None
        end = closing.get(last)
        outcome = (
            "unknown"
            if end is None
            else ("aborted" if end.get("phase") == "aborted" else str(end.get("outcome")))
        )
        return {**intents[last], "outcome": outcome, "result": end}

    def verify(self) -> VerifyReport:
        return verify(self.path)


# --- the action context manager ----------------------------------------------------------------


class ActionRecord:
    """One action's journal entry. Call `result(outcome, details)` or `abort(reason)`.

    Leaving the block with an exception writes the outcome for you: NotConfirmed, Precondition
    and Usage errors -> `aborted` (nothing was done); Unreachable or an interrupt -> `unknown`
    (the request may have taken effect); anything else -> `failed`. Leaving without either call
    records `unknown`. A result that cannot be written after the action ran does not raise: the
    dangling intent shows as `unknown` in `audit verify`, and `journal_error` says why.
    """

    def __init__(
        self,
        journal: AuditJournal,
        kind: str,
        target: str,
        plan: dict[str, Any],
        incident: str | None,
        service: str | None,
        timeline: bool,
    ) -> None:
        self.journal = journal
        self.kind = kind
        self.target = target
        self.plan = plan
        self.incident = incident
        self.service = service
        self.timeline = timeline
        self.event_id = uuid.uuid4().hex
        self.outcome: str | None = None
        self.details: dict[str, Any] = {}
        self.journal_error: str | None = None
        self.timeline_error: str | None = None

    def __enter__(self) -> ActionRecord:
        from somactl.incident.store import find_open_incident

        if self.incident is None and self.timeline:
            try:
                self.incident = find_open_incident(self.journal.state_dir, service=self.service)
            except OSError:
                self.incident = None
        self.journal.intent(
            self.kind,
            self.target,
            self.plan,
            incident=self.incident,
            event_id=self.event_id,
            service=self.service,
        )
        crash_point("audit:intent")
        self._timeline(
            "action_planned",
            f"planned: {self.kind} {self.target}",
            {
                "event_id": self.event_id,
                "kind": self.kind,
                "target": self.target,
                "plan": self.plan,
            },
        )
        return self

    def result(self, outcome: Outcome, details: Mapping[str, Any] | None = None) -> None:
        if self.outcome is not None:
            raise RuntimeError(f"action {self.event_id} already has its outcome ({self.outcome})")
        self.outcome = outcome
        self.details = dict(details or {})
        self._declared_meanwhile()
        crash_point("audit:before-result")
        try:
            self.journal.result(
                self.event_id,
                outcome,
                self.details,
                kind=self.kind,
                target=self.target,
                incident=self.incident,
            )
        except AuditUnavailableError as exc:
            self.journal_error = exc.message
        self._timeline(
            "action_applied",
            f"{self.kind} {self.target}: {outcome}",
            {
                "event_id": self.event_id,
                "kind": self.kind,
                "target": self.target,
                "outcome": outcome,
                "details": self.details,
            },
        )

    def abort(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        if self.outcome is not None:
            raise RuntimeError(f"action {self.event_id} already has its outcome ({self.outcome})")
        self.outcome = "aborted"
        self.details = {"reason": reason, **dict(details or {})}
        self._declared_meanwhile()
        try:
            self.journal.aborted(
                self.event_id,
                reason,
                kind=self.kind,
                target=self.target,
                incident=self.incident,
                details=details,
            )
        except AuditUnavailableError as exc:
            self.journal_error = exc.message
        self._timeline(
            "action_applied",
            f"{self.kind} {self.target}: aborted ({reason})",
            {
                "event_id": self.event_id,
                "kind": self.kind,
                "target": self.target,
                "outcome": "aborted",
                "reason": reason,
            },
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.outcome is not None:
            return
        if exc is None:
            self.result("unknown", {"note": "the action reported no result"})
        elif isinstance(exc, NotConfirmedError | PreconditionError | UsageError):
            self.abort(exc.message)
        elif isinstance(exc, UnreachableError | KeyboardInterrupt):
            message = exc.message if isinstance(exc, SomactlError) else "interrupted"
            self.result("unknown", {"error": message})
        else:
            message = exc.message if isinstance(exc, SomactlError) else type(exc).__name__
            self.result("failed", {"error": message})

    def _declared_meanwhile(self) -> None:
        """No incident was open when the action started: one declared for its service while it
        ran (its timeline lists this action as planned before the declaration) gets the
        outcome; an incident about another service never does."""
        if self.incident is not None or not self.timeline or not self.service:
            return
        from somactl.incident.store import find_open_incident

        try:
            self.incident = find_open_incident(
                self.journal.state_dir, service=self.service, strict=True
            )
        except OSError:
            self.incident = None

    def _timeline(self, kind: str, summary: str, details: dict[str, Any]) -> None:
        if not self.timeline or self.incident is None:
            return
        from somactl.incident.store import record_on_open_incident

        try:
            record_on_open_incident(
                self.journal.state_dir,
                kind,
                summary,
                details,
                incident=self.incident,
                actor=self.journal.actor,
            )
        except (SomactlError, OSError, FileNotFoundError) as exc:
            self.timeline_error = redact(str(exc))
        except Exception as exc:  # noqa: BLE001 -- the timeline must never break an action
            self.timeline_error = f"{type(exc).__name__}"


# --- verification -------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    path: str
    exists: bool
    records: int = 0
    intact: bool = True
    first_broken: dict[str, Any] | None = None
    dangling: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    last_hash: str = GENESIS

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "exists": self.exists,
            "records": self.records,
            "intact": self.intact,
            "first_broken": self.first_broken,
            "dangling": self.dangling,
            "repaired": self.repaired,
            "outcomes": self.outcomes,
            "last_hash": self.last_hash,
        }


def _pid_alive(host: Any, pid: Any) -> bool:
    if host != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _still_running(intent: Mapping[str, Any]) -> bool:
    """The process that wrote `intent` is alive (this one included: it is still in the action)."""
    if intent.get("host") == socket.gethostname() and intent.get("pid") == os.getpid():
        return True
    return _pid_alive(intent.get("host"), intent.get("pid"))


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Check the chain line by line; report the first broken line, torn records, dangling intents.

    Dangling intents (an intent with neither result nor aborted: the process was killed between
    the two, or is still running) are reported with outcome `unknown`; they do not break the chain.
    """
    p = Path(path)
    report = VerifyReport(path=str(p), exists=p.exists())
    if not report.exists:
        return report
    prev = GENESIS
    expect_seq = 1
    pending_bad = b""
    pending_line = 0
    open_intents: dict[str, dict[str, Any]] = {}

    def broken(line: int, problem: str) -> VerifyReport:
        report.intact = False
        report.first_broken = {"line": line, "problem": problem}
        return report

    with p.open("rb") as fh:
        lineno = 0
        for raw in fh:
            lineno += 1
            if not raw.endswith(b"\n"):
                _finish(report, open_intents)
                return broken(
                    lineno,
                    f"truncated last line ({len(raw)} bytes, no newline): an incomplete record",
                )
            rec = _parse(raw[:-1])
            if rec is None:
                if not pending_bad:
                    pending_line = lineno
                pending_bad += raw
                continue
            if rec.get("hash") != record_hash(str(rec.get("prev", "")), rec):
                _finish(report, open_intents)
                return broken(lineno, "hash mismatch: the record was modified")
            if rec.get("prev") != prev:
                _finish(report, open_intents)
                if pending_bad:
                    return broken(pending_line, "unreadable record (not JSON or no hash)")
                return broken(lineno, "chain broken: prev is not the previous record's hash")
            if pending_bad:
                det = rec.get("details") or {}
                torn = pending_bad[:-1] if det.get("terminated") else pending_bad
                if (
                    rec.get("phase") != "repair"
                    or det.get("torn_sha256") != hashlib.sha256(torn).hexdigest()
                ):
                    _finish(report, open_intents)
                    return broken(pending_line, "unreadable record (not JSON or no hash)")
                report.repaired.append(
                    {"line": pending_line, "bytes": det.get("torn_bytes"), "repair_line": lineno}
                )
                pending_bad = b""
            if rec.get("seq") != expect_seq:
                _finish(report, open_intents)
                return broken(lineno, f"sequence {rec.get('seq')} where {expect_seq} was expected")
            prev = rec["hash"]
            expect_seq += 1
            report.records += 1
            report.last_hash = prev
            phase = rec.get("phase")
            eid = str(rec.get("event_id", ""))
            if phase == "intent":
                open_intents[eid] = {**rec, "_line": lineno}
            elif phase in ("result", "aborted"):
                open_intents.pop(eid, None)
                key = str(rec.get("outcome")) if phase == "result" else "aborted"
                report.outcomes[key] = report.outcomes.get(key, 0) + 1
    if pending_bad:
        _finish(report, open_intents)
        return broken(pending_line, "unreadable record at the end of the journal")
    _finish(report, open_intents)
    return report


def _finish(report: VerifyReport, open_intents: dict[str, dict[str, Any]]) -> None:
    for eid, rec in open_intents.items():
        running = _pid_alive(rec.get("host"), rec.get("pid"))
        report.dangling.append(
            {
                "event_id": eid,
                "line": rec["_line"],
                "ts": rec.get("ts"),
                "kind": rec.get("kind"),
                "target": rec.get("target"),
                "incident": rec.get("incident"),
                "outcome": "unknown",
                "note": "its process is still running"
                if running
                else "no result record: the process ended between intent and result",
            }
        )
