"""somactl audit: the audit journal of every action (intent before, result after)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with, simple_table, warn

HELP = "The audit journal: show the last actions, verify the hash chain."

EPILOG = """\b
Examples:
  somactl audit show --last 20
  somactl -o json audit show | jq '.data.records[] | select(.phase == "result")'
  somactl audit verify

\b
The journal is $SOMACTL_STATE_DIR/audit.jsonl: append-only JSON Lines, fsync'd, each record
chained to the previous one by sha256. `verify` exits 0 when the chain is intact and 1 at the
first broken line (modified, removed or truncated records). Actions whose process died between
intent and result are listed with outcome `unknown`."""

app = typer.Typer(help=HELP, epilog=EPILOG, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """The audit journal: show the last actions, verify the hash chain."""


def _journal(opts: GlobalOptions) -> Any:
    from somactl.incident.audit import AuditJournal
    from somactl.incident.manage import state_dir_of
    from somactl.ui.settings import settings_for

    return AuditJournal(state_dir_of(settings_for(opts)))


@app.command("show")
def show(
    ctx: typer.Context,
    last: Annotated[
        int, typer.Option("--last", min=1, max=100000, help="The last N records.")
    ] = 20,
) -> None:
    """The last records of the journal, oldest first.

    Example: somactl audit show --last 50
    """
    opts = options(ctx)
    journal = _journal(opts)
    records = journal.tail(last)
    data = {"path": str(journal.path), "records": records}

    def table(d: dict[str, Any]) -> Any:
        if not d["records"]:
            return f"no audit records in {d['path']}"
        rows = []
        for r in d["records"]:
            result = r.get("outcome") or (r.get("reason") if r.get("phase") == "aborted" else "")
            rows.append(
                [
                    r.get("seq"),
                    str(r.get("ts", ""))[:19].replace("T", " "),
                    r.get("phase"),
                    r.get("kind"),
                    r.get("target"),
                    result or "",
                    r.get("incident") or "-",
                    r.get("actor"),
                    str(r.get("event_id", ""))[:8],
                ]
            )
        return simple_table(
            [
                "SEQ",
                "TIME (UTC)",
                "PHASE",
                "KIND",
                "TARGET",
                "OUTCOME",
                "INCIDENT",
                "ACTOR",
                "EVENT",
            ],
            rows,
        )

    exit_with(emit(opts, Result("audit show", data), table))


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check the hash chain; report the first broken line and actions with unknown outcome.

    Exit 0: intact (dangling intents are reported, not failures); 1: broken.
    Example: somactl audit verify
    """
    opts = options(ctx)
    report = _journal(opts).verify()
    data = report.to_dict()
    for d in report.dangling:
        warn(
            f"outcome unknown: {d['kind']} {d['target']} (event {d['event_id']}, line "
            f"{d['line']}, {d['ts']}): {d['note']}"
        )
    for r in report.repaired:
        warn(
            f"line {r['line']}: a torn record ({r['bytes']} bytes) was closed off by the "
            f"repair record on line {r['repair_line']}"
        )
    errors = []
    if not report.intact and report.first_broken:
        fb = report.first_broken
        errors.append(
            {
                "message": f"audit journal broken at line {fb['line']}: {fb['problem']}",
                "line": fb["line"],
            }
        )
    result = Result(
        "audit verify",
        data,
        exit_code=ExitCode.OK if report.intact else ExitCode.FAILED,
        status="ok" if report.intact else "broken",
        errors=errors,
    )

    def table(d: dict[str, Any]) -> str:
        if not d["exists"]:
            return f"no audit journal yet ({d['path']})"
        if d["intact"]:
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(d["outcomes"].items())) or "none"
            return (
                f"audit journal intact: {d['records']} records, chain head "
                f"{d['last_hash'][:12]} ({d['path']})\noutcomes: {outcomes}; unknown "
                f"(no result): {len(d['dangling'])}"
            )
        return f"audit journal BROKEN ({d['path']}): {d['records']} records verified before it"

    exit_with(emit(opts, result, table))
