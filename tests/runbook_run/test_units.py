"""The pure parts of `runbook run`: step resolution, --skip, applicability, outcomes, exit codes,
the timeline records and the PIR's "Runbook Followed", and the store's v1 -> v2 migration."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from somactl.checks.base import CheckResult, Status
from somactl.core.errors import NotConfirmedError, PreconditionError, UsageError
from somactl.core.exitcodes import ExitCode
from somactl.core.options import GlobalOptions
from somactl.incident import pir
from somactl.incident import store as S
from somactl.ops import runbook_run as rr
from somactl.ops.targets import Targets
from somactl.runbook.loader import load_runbook
from somactl.ui.actions import Executed

RB = load_runbook()


def ctx_for(state: Path, scenario: str, service: str, incident: str | None) -> rr.RunContext:
    sc = RB.scenario(scenario)
    return rr.RunContext(
        opts=GlobalOptions(),
        runbook=RB,
        scenario_id=scenario,
        scenario=sc,
        service=service,
        steps=rr.resolve_steps(RB, sc, service),
        skips={},
        targets=Targets(None, "ns", None, None, None, None, None, None, None, None, str(state)),
        incident=incident,
        run_id="run1",
        verify_seconds=0,
    )


def rollout(recent: bool) -> CheckResult:
    return CheckResult(
        "k8s.rollout-history",
        "Rollout",
        "kubernetes",
        Status.ok,
        "revision 3 (1.9.0), since 2d",
        facts={"recent_deploy": recent},
    )


# -- steps -----------------------------------------------------------------------------------


def test_steps_of_another_kind_of_service_do_not_apply() -> None:
    steps = rr.resolve_steps(RB, RB.scenario("memory-leak"), "postgres")
    restart = steps[2]
    assert (restart.kind, restart.action) == ("action", "restart")
    assert restart.not_applicable == "restart applies to deployment; postgres is a statefulset"
    assert steps[1].kind == "manual" and steps[1].not_applicable is None
    gw = rr.resolve_steps(RB, RB.scenario("gateway-api-down"), "gateway-api")
    assert all(s.not_applicable is None for s in gw)


def test_an_action_bound_to_its_own_service_keeps_it() -> None:
    steps = rr.resolve_steps(RB, RB.scenario("database-performance"), "postgres")
    kill = steps[1]
    assert (kill.action, kill.service, kill.verb) == ("kill-queries", "postgres", "kill-queries")
    assert kill.commands == ["somactl mitigate kill-queries --older-than 5m"]


def test_skip_by_number_or_id_with_a_reason() -> None:
    steps = rr.resolve_steps(RB, RB.scenario("gateway-api-down"), "gateway-api")
    skips = rr.parse_skips(["4=no deploy today", "db.connectivity", "5"], steps)
    assert skips == {4: "no deploy today", 3: "skipped with --skip", 5: "skipped with --skip"}
    with pytest.raises(UsageError, match="--skip 'restart': no such step"):
        rr.parse_skips(["restart"], steps)


def test_rollback_does_not_apply_without_a_recent_rollout(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, "gateway-api-down", "gateway-api", None)
    rollback = ctx.steps[3]
    assert rr.not_applicable(ctx, rollback) is None  # nothing known yet: ask
    ctx.results.append(rollout(recent=True))
    assert rr.not_applicable(ctx, rollback) is None
    ctx.results[:] = [rollout(recent=False)]
    why = rr.not_applicable(ctx, rollback)
    assert why == (
        "no rollout of gateway-api in the last hour "
        "(k8s.rollout-history: revision 3 (1.9.0), since 2d)"
    )
    assert rr.not_applicable(ctx, ctx.steps[4]) is None  # scale does not depend on it


def test_a_mitigation_after_a_verified_recovery_is_not_needed(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, "gateway-api-down", "gateway-api", None)
    check, rollback, scale = ctx.steps[0], ctx.steps[3], ctx.steps[4]
    assert (rollback.verb, scale.verb) == ("rollback", "scale")

    def verified(
        recovered: bool | None, remains: str | None = None, after: Any = None
    ) -> rr.StepRecord:
        v = {
            "recovered": recovered,
            "contained": bool(recovered and remains),
            "remains": remains,
            "message": "ok",
            "after": {"error_rate": 0.001, "p95_seconds": 0.2} if after is None else after,
        }
        return rr.StepRecord(rollback, "executed", action={"verification": v})

    assert rr.not_needed(ctx, scale) is None  # nothing ran yet
    for rec in (
        verified(False),
        verified(None),
        verified(True, "the cause is still there"),
        verified(True, after={}),  # a finished rollout, no metrics: errors never measured
        verified(True, after={"error_rate": None, "error": "prometheus: no response"}),
    ):
        ctx.records[:] = [rec]
        assert rr.not_needed(ctx, scale) is None, rec  # not recovered, unknown, or only contained
    ctx.records[:] = [
        rr.StepRecord(rollback, "failed", action={"verification": {"recovered": True}})
    ]
    assert rr.not_needed(ctx, scale) is None  # a failed step recovered nothing
    ctx.records[:] = [verified(True)]
    assert rr.not_needed(ctx, scale) == (
        "gateway-api recovered after step 4 (rollback: ok); "
        "to run it anyway: somactl mitigate scale gateway-api --replicas 5"
    )
    assert rr.not_needed(ctx, check) is None  # checks and manual steps still run
    kill = rr.resolve_steps(RB, RB.scenario("database-performance"), "postgres")[1]
    other = ctx_for(tmp_path, "database-performance", "postgres", None)
    other.records[:] = [verified(True)]  # gateway-api recovered: postgres is another service
    assert rr.not_needed(other, kill) is None


def test_yes_does_not_decide_a_condition_somactl_cannot_check(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, "redis-memory-pressure", "redis", None)
    flush = next(s for s in ctx.steps if s.verb == "redis-flush")
    assert flush.when == "the cache is corrupted"
    assert rr.unchecked_condition(ctx, flush) == (
        "only when the cache is corrupted: somactl cannot check that and --yes does not "
        "decide it; if it holds, run: somactl mitigate redis-flush"
    )
    restart = next(s for s in ctx.steps if s.verb == "redis-restart")
    assert restart.when is None and rr.unchecked_condition(ctx, restart) is None
    gw = ctx_for(tmp_path, "gateway-api-down", "gateway-api", None)
    rollback = gw.steps[3]
    assert rr.unchecked_condition(gw, rollback) is not None  # no rollout seen yet: not decided
    gw.results.append(rollout(recent=True))
    assert rr.unchecked_condition(gw, rollback) is None  # checked: a rollout in the last hour


# -- outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executed", "outcome", "detail"),
    [
        (Executed(4, "not-confirmed", error=rr.StepSkipped("no deploy")), "skipped", "no deploy"),
        (
            Executed(4, "not-confirmed", error=rr.RunStopped()),
            "stopped",
            "stopped by the responder",
        ),
        (
            Executed(4, "not-confirmed", error=NotConfirmedError("stdin is not a terminal")),
            "refused",
            "not confirmed: stdin is not a terminal",
        ),
        (
            Executed(0, "applied", {"outcome": {"message": "rolled back to revision 3"}}),
            "executed",
            "rolled back to revision 3",
        ),
        (
            Executed(5, "refused", error=PreconditionError("refused: no previous revision")),
            "failed",
            "refused: no previous revision",
        ),
        (
            Executed(1, "failed", errors=[{"message": "pods not ready"}]),
            "failed",
            "pods not ready",
        ),
    ],
)
def test_the_executor_end_becomes_the_step_outcome(
    executed: Executed, outcome: str, detail: str
) -> None:
    step = rr.resolve_steps(RB, RB.scenario("gateway-api-down"), "gateway-api")[3]
    rec = rr.action_record(step, executed, 0.1)
    assert rec.outcome == outcome
    assert (rec.reason or rec.error) == detail


def test_exit_code_failed_beats_not_confirmed_beats_ok() -> None:
    step = rr.resolve_steps(RB, RB.scenario("gateway-api-down"), "gateway-api")[0]

    def recs(*outcomes: str) -> list[rr.StepRecord]:
        return [rr.StepRecord(step, o) for o in outcomes]

    assert rr.exit_code(recs("executed", "skipped", "not-applicable", "pending")) == ExitCode.OK
    assert rr.exit_code(recs("executed", "refused", "not-run")) == ExitCode.NOT_CONFIRMED
    assert rr.exit_code(recs("stopped", "not-run")) == ExitCode.NOT_CONFIRMED
    assert rr.exit_code(recs("failed", "refused")) == ExitCode.PARTIAL


def test_a_check_that_could_not_run_fails_its_step() -> None:
    step = rr.resolve_steps(RB, RB.scenario("gateway-api-down"), "gateway-api")[2]
    bad = CheckResult(
        "db.connectivity",
        "Database connectivity",
        "postgres",
        Status.unknown,
        "could not run: postgres: no answer from 127.0.0.1:1 within 2s",
        error="postgres: no answer from 127.0.0.1:1 within 2s",
        error_code=6,
    )
    rec = rr.check_record(step, [bad], 2.0)
    assert (rec.outcome, rec.exit_code) == ("failed", 6)
    assert rec.error == "postgres: no answer from 127.0.0.1:1 within 2s"
    ok = rr.check_record(step, [rollout(True)], 0.1)
    assert ok.outcome == "executed" and ok.findings[0]["status"] == "ok"


# -- the timeline and the PIR ----------------------------------------------------------------


def test_steps_land_on_the_timeline_and_the_pir_lists_them(tmp_path: Path) -> None:
    t0 = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
    with S.IncidentStore(tmp_path) as st:
        st.declare(severity="P2", title="Orchestrator leaking", impact="slow", now=t0)
    ctx = ctx_for(tmp_path, "memory-leak", "orchestrator", "INC-1")
    check, heap, restart, bug = ctx.steps
    rr.record(
        ctx,
        rr.StepRecord(
            check,
            "executed",
            findings=[{"id": "k8s.memory", "status": "critical", "summary": "97% of its limit"}],
        ),
    )
    rr.record(ctx, rr.StepRecord(heap, "executed", reason="done (confirmed by the responder)"))
    rr.record(ctx, rr.StepRecord(restart, "skipped", reason="waiting for the heap dump review"))
    rr.record(ctx, rr.StepRecord(bug, "failed", error="tracker unreachable"))
    with S.IncidentStore(tmp_path) as st:
        events = st.timeline(1)
        inc = st.get(1)
    steps = [e for e in events if e.kind == "runbook_step"]
    assert [e.details["runbook_step"]["outcome"] for e in steps] == [
        "executed",
        "executed",
        "skipped",
        "failed",
    ]
    assert steps[2].summary == (
        "Runbook memory-leak step 3/4 (Restart affected pods): skipped - "
        "waiting for the heap dump review"
    )
    doc = pir.build(RB, inc, events)
    md: str = doc["markdown"]
    section = md[md.index("## Runbook Followed") : md.index("## Root Cause")]
    assert "**Memory Leak (memory-leak)** for orchestrator" in section
    assert "- Step 1 - Identify service with high memory: **executed** (critical: 97%" in section
    assert "- Step 2 - Capture heap dump: **executed** (done (confirmed by" in section
    assert (
        "- Step 3 - Restart affected pods: **skipped** (reason: waiting for the heap dump "
        "review)" in section
    )
    assert "Skipped steps: 3 (Restart affected pods)" in section
    assert md.index("## Timeline") < md.index("## Runbook Followed")
    assert (
        "- [ ] Follow up: runbook memory-leak step 4 (File bug with heap dump) failed: "
        "tracker unreachable" in md
    )
    runs: list[dict[str, Any]] = doc["runbooks_followed"]
    assert [s["outcome"] for s in runs[0]["steps"]] == [
        "executed",
        "executed",
        "skipped",
        "failed",
    ]


def test_no_runbook_no_section(tmp_path: Path) -> None:
    with S.IncidentStore(tmp_path) as st:
        st.declare(severity="P2", title="x", impact="y")
        doc = pir.build(RB, st.get(1), st.timeline(1))
    assert "Runbook Followed" not in doc["markdown"]
    assert doc["runbooks_followed"] == []


def test_a_v1_store_is_migrated_and_keeps_its_events(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / S.DB_NAME, isolation_level=None)
    v1 = S._SCHEMA.replace(", 'runbook_step'", "")
    assert v1 != S._SCHEMA
    db.execute("PRAGMA journal_mode = WAL")
    for stmt in v1.split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO incidents (num, severity, title, impact, status, declared_at) "
        "VALUES (1, 'P1', 'old', 'x', 'declared', '2024-01-15T14:00:00Z')"
    )
    db.execute(
        "INSERT INTO events (incident, at, kind, actor, summary) "
        "VALUES (1, '2024-01-15T14:00:00Z', 'declared', 'alice', 'declared')"
    )
    with pytest.raises(sqlite3.IntegrityError):  # what a v1 store says to a runbook step
        db.execute(
            "INSERT INTO events (incident, at, kind, actor, summary) "
            "VALUES (1, '2024-01-15T14:01:00Z', 'runbook_step', 'alice', 'step')"
        )
    db.close()
    with S.IncidentStore(tmp_path) as st:
        st.append(1, "runbook_step", "Runbook x step 1/1 (y): executed")
        assert [(e.kind, e.actor) for e in st.timeline(1)] == [
            ("declared", "alice"),
            ("runbook_step", S.default_actor()),
        ]
        assert st.db.execute("PRAGMA user_version").fetchone()[0] == S.SCHEMA_VERSION == 2
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
