"""Read-only views of the store: status (overdue updates, reviews due), list, show, timeline.

They never create the database: with no `incidents.db` there is simply nothing to show.
`status` reads only the incidents table through its partial indexes (open incidents, resolved
incidents without a review), so it stays fast however long the timelines grow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from somactl.incident import messages as msg
from somactl.incident.store import DB_NAME, Incident, IncidentStore, fmt_ts, utcnow
from somactl.runbook.schema import Runbook

PIR_LIST_LIMIT = 20


def _store(state_dir: Path) -> IncidentStore | None:
    if not (state_dir / DB_NAME).exists():
        return None
    return IncidentStore(state_dir, create=False)


def update_state(runbook: Runbook, inc: Incident, now: datetime) -> dict[str, Any]:
    """When the next update is due (last update + the severity's cadence) and whether it's late."""
    cadence = msg.update_cadence(runbook, inc.severity)
    updates = runbook.severity(inc.severity).updates
    last = inc.last_update_at or inc.declared_at
    if cadence is None:
        return {"cadence": None, "due": None, "overdue": False, "overdue_seconds": 0}
    due = last + cadence
    late = max(0.0, (now - due).total_seconds())
    return {
        "cadence": updates.label if updates else None,
        "cadence_seconds": int(cadence.total_seconds()),
        "due": fmt_ts(due),
        "overdue": now > due,
        "overdue_seconds": int(late),
    }


def status(state_dir: Path, runbook: Runbook, *, now: datetime | None = None) -> dict[str, Any]:
    """Open incidents (age, update cadence, overdue flag) and reviews due or late."""
    now = now or utcnow()
    store = _store(state_dir)
    if store is None:
        return {"now": fmt_ts(now), "open": [], "pir": [], "pir_total": 0, "overdue": 0}
    with store:
        open_ = store.open_incidents()
        pending, total = store.pir_pending(PIR_LIST_LIMIT)
    rows = []
    for inc in open_:
        upd = update_state(runbook, inc, now)
        rows.append(
            {
                "id": inc.id,
                "severity": inc.severity,
                "status": inc.status,
                "title": inc.title,
                "service": inc.service,
                "commander": inc.commander,
                "declared_at": fmt_ts(inc.declared_at),
                "age_seconds": int((now - inc.declared_at).total_seconds()),
                "acknowledged": inc.acknowledged_at is not None,
                "updates": inc.update_count,
                "last_update_at": fmt_ts(inc.last_update_at or inc.declared_at),
                "next_update_due": upd["due"],
                "update_cadence": upd["cadence"],
                "overdue": upd["overdue"],
                "overdue_seconds": upd["overdue_seconds"],
                "war_room": msg.war_room(runbook, inc.num),
            }
        )
    due_after = timedelta(seconds=runbook.pir.due.seconds or 0)
    pir_rows = []
    for inc in pending:
        if inc.resolved_at is None:
            continue
        due = inc.resolved_at + due_after
        pir_rows.append(
            {
                "id": inc.id,
                "severity": inc.severity,
                "title": inc.title,
                "resolved_at": fmt_ts(inc.resolved_at),
                "pir_due": fmt_ts(due),
                "late": now > due,
                "seconds_left": int((due - now).total_seconds()),
            }
        )
    return {
        "now": fmt_ts(now),
        "open": rows,
        "overdue": sum(1 for r in rows if r["overdue"]),
        "pir": pir_rows,
        "pir_total": total,
        "pir_due_label": runbook.pir.due.label,
    }


def list_incidents(state_dir: Path, *, include_resolved: bool, limit: int) -> list[dict[str, Any]]:
    store = _store(state_dir)
    if store is None:
        return []
    with store:
        return [
            i.to_dict()
            for i in store.list_incidents(include_resolved=include_resolved, limit=limit)
        ]


def show(state_dir: Path, ref: str | None, runbook: Runbook) -> dict[str, Any]:
    from somactl.core.errors import UsageError

    store = _store(state_dir)
    if store is None:
        raise UsageError(f"no incidents yet in {state_dir}")
    with store:
        inc = store.resolve_ref(ref)
        events = store.timeline(inc.num)
    now = utcnow()
    data = inc.to_dict()
    data["war_room"] = msg.war_room(runbook, inc.num)
    data["duration"] = msg.duration_words(inc.duration(now))
    data["duration_seconds"] = int(inc.duration(now).total_seconds())
    if inc.is_open:
        data["update"] = update_state(runbook, inc, now)
    data["events"] = len(events)
    data["recent"] = [e.to_dict() for e in events[-5:]]
    data["sinks"] = _last_sink_results(events)
    return data


def _last_sink_results(events: Sequence[Any]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if e.kind == "notified":
            key = (str(e.details.get("sink")), str(e.details.get("action")))
            seen[key] = {**e.details, "at": fmt_ts(e.at)}
    return list(seen.values())


def timeline(
    state_dir: Path, ref: str | None, *, kinds: Sequence[str] | None = None
) -> dict[str, Any]:
    from somactl.core.errors import UsageError

    store = _store(state_dir)
    if store is None:
        raise UsageError(f"no incidents yet in {state_dir}")
    with store:
        inc = store.resolve_ref(ref)
        events = store.timeline(inc.num, kinds=kinds)
    return {"incident": inc.id, "title": inc.title, "events": [e.to_dict() for e in events]}
