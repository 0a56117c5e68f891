"""`somactl incident status` over a big store: 1,000 incidents and 100,000 timeline events.

    .venv/bin/python -m bench.incidents              # 15 rounds, prints ratios
    .venv/bin/python -m bench.incidents --rounds 5 --json out.json

Budget (x R = `python -c pass`, printed, never gated): `incident status` <= 30.
The store is built once in a temp dir (25 open incidents, 975 resolved of which 75 still await
their review; 100 events each) straight through SQLite, then the real console script is timed.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import VENV_BIN, Case, measure, report

SOMACTL = str(VENV_BIN / "somactl")
KINDS = ["note", "check_run", "action_planned", "action_applied", "notified", "status_update"]


def build(state: Path, incidents: int = 1000, events: int = 100_000) -> tuple[int, int]:
    from somactl.incident.store import IncidentStore, fmt_ts

    rng = random.Random(42)
    now = datetime.now(UTC).replace(microsecond=0)
    with IncidentStore(state) as st:
        db = st.db
        db.execute("BEGIN IMMEDIATE")
        per = events // incidents
        open_from = incidents - 25
        for num in range(1, incidents + 1):
            declared = now - timedelta(hours=(incidents - num) * 3 + 1)
            sev = rng.choice(["P0", "P1", "P2", "P3"])
            resolved = declared + timedelta(minutes=45) if num <= open_from else None
            pir = resolved + timedelta(hours=20) if resolved and num <= open_from - 75 else None
            db.execute(
                "INSERT INTO incidents (num, severity, title, impact, service, status, "
                "commander, declared_at, resolved_at, last_update_at, update_count, root_cause, "
                "fix, pir_written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    num,
                    sev,
                    f"incident {num}",
                    "some users",
                    "gateway-api",
                    "resolved" if resolved else "investigating",
                    "@alice",
                    fmt_ts(declared),
                    fmt_ts(resolved) if resolved else None,
                    fmt_ts(declared + timedelta(minutes=rng.randint(0, 40))),
                    3,
                    "r" if resolved else None,
                    "f" if resolved else None,
                    fmt_ts(pir) if pir else None,
                ),
            )
            rows = [(num, fmt_ts(declared), "declared", "bench", "declared", "{}")]
            rows += [
                (
                    num,
                    fmt_ts(declared + timedelta(seconds=20 * i)),
                    rng.choice(KINDS),
                    "bench",
                    f"event {i} of incident {num}",
                    json.dumps({"i": i, "verdict": "ok"}),
                )
                for i in range(1, per)
            ]
            db.executemany(
                "INSERT INTO events (incident, at, kind, actor, summary, details) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return st.event_counts()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="somactl-bench-") as tmp:
        state = Path(tmp) / "state"
        t0 = time.perf_counter()
        n_inc, n_ev = build(state)
        print(
            f"store: {n_inc} incidents, {n_ev} events, built in "
            f"{time.perf_counter() - t0:.1f}s ({(state / 'incidents.db').stat().st_size >> 20}"
            " MiB)"
        )
        env = {
            "SOMACTL_STATE_DIR": str(state),
            "SOMACTL_CONFIG": str(Path(tmp) / "none.yaml"),
            "HOME": tmp,
        }
        plan = (
            sqlite3.connect(state / "incidents.db")
            .execute(
                "EXPLAIN QUERY PLAN SELECT num FROM incidents WHERE status <> 'resolved' "
                "ORDER BY declared_at, num"
            )
            .fetchall()
        )
        print("open-incidents query plan:", "; ".join(str(r[-1]) for r in plan))
        cases = [
            Case("somactl incident status", [SOMACTL, "incident", "status"], env=env, limit=30),
            Case(
                "somactl -o json incident status",
                [SOMACTL, "-o", "json", "incident", "status"],
                env=env,
                limit=30,
            ),
            Case("somactl incident list", [SOMACTL, "incident", "list"], env=env),
            Case(
                "somactl incident timeline INC-990 (100 events)",
                [SOMACTL, "incident", "timeline", "INC-990"],
                env=env,
            ),
            Case("somactl --help", [SOMACTL, "--help"], env=env),
        ]
        rows = measure(cases, args.rounds)
        report("somactl incidents (1,000 incidents, 100,000 events)", rows, args.rounds, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
