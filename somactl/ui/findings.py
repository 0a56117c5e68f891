"""Rendering check results and verdicts for people: the tables of diagnose, status and the
single-check commands. Everything shown passes through `redact` (rich tables are built here,
not by `simple_table`, for the status colours)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from somactl.core.redact import redact
from somactl.ui.sparkline import sparkline

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

STYLE = {"ok": "green", "warn": "yellow", "critical": "bold red", "unknown": "magenta"}
LABEL = {"ok": "ok", "warn": "WARN", "critical": "CRITICAL", "unknown": "unknown"}


def status_text(status: str) -> Text:
    from rich.text import Text

    return Text(LABEL.get(status, status), style=STYLE.get(status, ""))


def _t(value: Any) -> str:
    return redact("" if value is None else str(value))


def checks_table(checks: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Any:
    from rich.table import Table
    from rich.text import Text

    tbl = Table(title=title, box=None, header_style="bold", pad_edge=False, expand=False)
    tbl.add_column("CHECK", no_wrap=True)
    tbl.add_column("STATUS", no_wrap=True)
    tbl.add_column("TIME", justify="right", no_wrap=True)
    tbl.add_column("FINDING", overflow="fold")
    tbl.add_column("LAST 30 MIN", no_wrap=True)
    for c in checks:
        ev = c.get("evidence") or {}
        spark = sparkline(ev.get("series") or []) if isinstance(ev, dict) else ""
        tbl.add_row(
            Text(_t(c.get("id"))),
            status_text(str(c.get("status"))),
            Text(f"{float(c.get('duration_ms') or 0):.0f} ms", style="dim"),
            Text(_t(c.get("summary"))),
            Text(spark, style=STYLE.get(str(c.get("status")), "")),
        )
    return tbl


def _rows(items: Any, keys: Sequence[str], limit: int = 5) -> list[str]:
    out = []
    for item in list(items or [])[:limit]:
        if isinstance(item, Mapping):
            out.append("  ".join(f"{k}={_t(item.get(k))}" for k in keys if item.get(k) is not None))
        else:
            out.append(_t(item))
    return out


def evidence_lines(check: Mapping[str, Any]) -> list[str]:
    """The few evidence lines worth showing under a check that is not ok."""
    ev = check.get("evidence") or {}
    base = str(check.get("id", "")).split(":", 1)[-1]
    lines: list[str] = []
    if base == "k8s.pods":
        pods = [
            p for p in ev.get("pods") or [] if not (p.get("ready") and p.get("status") == "Running")
        ]
        lines += _rows(pods, ("name", "status", "ready", "restarts", "last_termination", "age"))
        lines += [
            f"event {e}"
            for e in _rows(
                ev.get("warning_events"), ("reason", "object", "count", "last_seen", "message"), 3
            )
        ]
    elif base == "k8s.logs":
        lines += [f"| {_t(x)}" for x in (ev.get("last_errors") or [])[-5:]]
    elif base == "k8s.rollout-history":
        for r in (ev.get("revisions") or [])[-3:]:
            mark = "*" if r.get("current") else " "
            image = str(r.get("image") or "").rsplit("/", 1)[-1]
            lines.append(
                f"{mark} rev {r.get('revision')}  {r.get('created')} ago  {image}  "
                f"{_t(r.get('change_cause') or '')}"
            )
    elif base == "db.activity":
        lines += _rows(
            ev.get("idle_in_transaction"), ("pid", "user", "application", "xact_age", "query")
        )
    elif base == "db.slow-queries":
        lines += [
            f"long-running {r}"
            for r in _rows(ev.get("long_running"), ("pid", "user", "query_age", "wait", "query"))
        ]
        for chain in (ev.get("blocking_chains") or [])[:3]:
            blocker = chain.get("blocker")
            who = blocker.get("pid") if isinstance(blocker, Mapping) else blocker
            q = blocker.get("query") if isinstance(blocker, Mapping) else ""
            lines.append(
                f"pid {who} blocks {len(chain.get('blocked') or [])} session(s) "
                f"(longest wait {chain.get('longest_wait')}): {_t(q)[:100]}"
            )
        lines += [
            f"idle in transaction {r}"
            for r in _rows(ev.get("idle_in_transaction"), ("pid", "user", "xact_age"))
        ]
    elif base == "tools.health":
        lines += _rows(
            [
                a
                for a in ev.get("adapters") or []
                if a.get("status") != "healthy" or a.get("breaker") == "open"
            ],
            ("tool", "status", "error_rate", "breaker", "rate_limit_remaining", "last_error"),
        )
    elif base == "tools.recent":
        lines += _rows(ev.get("top_errors"), ("count", "error"), 3)
    elif base == "redis.memory":
        keys = (
            "used_memory_human",
            "maxmemory",
            "maxmemory_policy",
            "evicted_keys",
            "rejected_writes_oom",
        )
        lines.append("  ".join(f"{k}={_t(ev.get(k))}" for k in keys))
    return [redact(line)[:200] for line in lines if line]


def verdict_block(data: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    v = data.get("verdict") or {}
    out: list[Any] = []
    head = Text("Verdict: ", style="bold")
    head.append(_t(v.get("summary")), style=STYLE.get(str(v.get("status")), ""))
    out.append(head)
    sev = v.get("severity")
    if sev:
        line = Text("Suggested severity: ", style="bold")
        line.append(
            f"{sev.get('level')} {sev.get('name')}",
            style="bold red" if sev.get("level") in ("P0", "P1") else "yellow",
        )
        line.append(f" - {_t(sev.get('response'))}; {_t(sev.get('paging'))}")
        rule = sev.get("rule")
        if rule:
            line.append(f" (rule {rule.get('id')}: {_t(rule.get('description'))})", style="dim")
        else:
            line.append(f" ({_t(sev.get('source'))})", style="dim")
        out.append(line)
    elif str(v.get("status")) in ("warn", "critical"):
        out.append(
            Text(
                "Suggested severity: none of the runbook's rules fired; judge by the findings",
                style="dim",
            )
        )
    sc = v.get("scenario")
    if sc:
        line = Text("Runbook scenario: ", style="bold")
        line.append(f"{_t(sc.get('title'))} ({sc.get('severity')})")
        others = v.get("other_scenarios") or []
        if others:
            line.append(
                "; also matches " + ", ".join(_t(o.get("title")) for o in others), style="dim"
            )
        out.append(line)
    steps = v.get("next_steps") or []
    if steps:
        out.append(Text("Next steps:", style="bold"))
        for i, s in enumerate(steps, 1):
            line = Text(f"  {i}. ")
            if s.get("command"):
                line.append(_t(s["command"]), style="bold cyan")
                line.append(f"  {_t(s.get('title'))}", style="dim")
            else:
                line.append(_t(s.get("title")))
            extra = s.get("why") or (f"if {s['when']}" if s.get("when") else None)
            if extra:
                line.append(f" - {_t(extra)}", style="dim")
            out.append(line)
    other = v.get("elsewhere")
    if other:
        line = Text("Elsewhere: ", style="bold")
        line.append(
            LABEL.get(other["status"], other["status"]), style=STYLE.get(other["status"], "")
        )
        line.append(
            f"  (not {_t(data.get('service'))}'s: not in its verdict or exit code", style="dim"
        )
        osev = other.get("severity")
        if osev:
            line.append(f"; would make it {osev.get('level')} {osev.get('name')}", style="dim")
            rule = osev.get("rule")
            line.append(f": {_t(rule.get('description'))}" if rule else "", style="dim")
        line.append(")", style="dim")
        out.append(line)
        for f in other.get("findings") or []:
            item = Text("  elsewhere: ")
            status = str(f.get("status"))
            item.append(f"{f.get('check')} {status}", style=STYLE.get(status, ""))
            if f.get("diagnose"):
                item.append(f" (see {f['diagnose']})", style="cyan")
            item.append(f": {_t(f.get('summary'))[:140]}")
            out.append(item)
    checked = v.get("steps_already_checked") or []
    if checked:
        out.append(Text("Already checked above: " + "; ".join(_t(c) for c in checked), style="dim"))
    for s in v.get("steps_not_suggested") or []:
        out.append(Text(f"Not suggested: {_t(s.get('title'))} ({_t(s.get('why'))})", style="dim"))
    for n in data.get("not_run") or []:
        out.append(Text(f"Not run: {n.get('check')}: {_t(n.get('why'))}", style="dim"))
    if data.get("incident"):
        out.append(Text(f"Recorded on {data['incident']}'s timeline.", style="dim"))
    if data.get("snapshot"):
        out.append(Text(f"Evidence bundle: {_t(data['snapshot'])}", style="dim"))
    return out


def diagnosis(data: Mapping[str, Any]) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    head = Text(f"{_t(data.get('service'))}", style="bold")
    head.append(
        f" ({_t(data.get('title'))}, {data.get('criticality')})"
        f"  context {_t(data.get('context') or '-')}  namespace {_t(data.get('namespace'))}",
        style="dim",
    )
    parts: list[Any] = [head, checks_table(data.get("checks") or [])]
    details: list[Any] = []
    for c in data.get("checks") or []:
        if c.get("status") in ("warn", "critical"):
            lines = evidence_lines(c)
            if lines:
                details.append(Text(f"{c.get('id')}:", style=STYLE.get(str(c.get("status")), "")))
                details.extend(Text(f"    {line}", style="dim") for line in lines)
    if details:
        parts.append(Text(""))
        parts.extend(details)
    parts.append(Text(""))
    parts.extend(verdict_block(data))
    return Group(*parts)


def contexts(data: Mapping[str, Any]) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    per: Mapping[str, Any] = data.get("contexts") or {}
    parts: list[Any] = []
    for ctx, d in per.items():
        parts.append(Text(f"== context {ctx} ==", style="bold"))
        parts.append(diagnosis(d))
        parts.append(Text(""))
    diffs = data.get("differences") or []
    names = list(per)
    tbl = Table(title="Differences between contexts", box=None, header_style="bold", pad_edge=False)
    tbl.add_column("CHECK", no_wrap=True)
    for n in names:
        tbl.add_column(n.upper(), overflow="fold")
    for d in diffs:
        cells: list[Any] = [Text(_t(d.get("check")), style="bold yellow")]
        for n in names:
            st = (d.get("statuses") or {}).get(n)
            summary = (d.get("summaries") or {}).get(n)
            cell = Text(
                LABEL.get(str(st), str(st)) if st is not None else "-", style=STYLE.get(str(st), "")
            )
            if summary:
                cell.append(f" {_t(summary)[:80]}", style="")
            cells.append(cell)
        tbl.add_row(*cells)
    if diffs:
        parts.append(tbl)
    else:
        parts.append(Text("No differences between contexts.", style="green"))
    return Group(*parts)


def emit_watch_round(opts: Any, result: Any, table: Any, rounds: int) -> int:
    """One round of --watch: a fresh screen on a terminal, one JSON document per line else."""
    import json
    import sys
    import time

    from somactl.core.options import OutputFormat
    from somactl.core.redact import redact_obj
    from somactl.ui.output import emit, out, write_stdout

    if opts.output is OutputFormat.json:
        write_stdout(json.dumps(redact_obj(result.envelope()), default=str))
        return int(result.exit_code)
    if opts.output is OutputFormat.yaml:
        write_stdout("---")
    if opts.output is OutputFormat.table and sys.stdout.isatty():
        out().clear()
    if opts.output is OutputFormat.table:
        out().print(f"round {rounds} at {time.strftime('%H:%M:%S')}", style="dim")
    return emit(opts, result, table)
