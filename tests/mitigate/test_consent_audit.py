"""Consent and the audit journal around a real action (reliability cases 1, 2, 3, 4, 32, 33).

The rollback against the simulator is the action; "nothing changed" is the simulator's request
log (no mutating request) plus the deployment compared byte for byte.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable

import pytest

from somactl.incident import audit
from somactl.incident.audit import verify
from somactl.lab.kube import KubeSimulator
from tests.mitigate.conftest import (
    Env,
    Pty,
    Run,
    deployment,
    last_seq,
    mutations_since,
    run_process,
)

GW = "gateway-api"
ROLLBACK = ("mitigate", "rollback", GW, "--verify", "0")


def snapshot(sim: KubeSimulator) -> str:
    return json.dumps(deployment(sim, GW), sort_keys=True)


def assert_nothing_changed(sim: KubeSimulator, seq: int, before: str) -> None:
    assert mutations_since(sim, seq) == []
    assert snapshot(sim) == before


@pytest.mark.parametrize(
    "stdin", [None, b"y\n", b"yes\n"], ids=["case1-dev-null", "case2-pipe-y", "pipe-yes"]
)
def test_cases_1_2_no_terminal_is_never_consent(
    sim: KubeSimulator, kenv: Env, stdin: bytes | None
) -> None:
    before, seq = snapshot(sim), last_seq(sim)
    r = run_process(kenv, *ROLLBACK, stdin=stdin)
    assert r.rc == 4, (r.out, r.err)
    assert "PLAN: roll back deployment gateway-api from revision 4 to revision 3" in r.out
    assert "error: confirmation required: stdin is not a terminal; re-run with --yes" in r.err
    assert_nothing_changed(sim, seq, before)
    recs = kenv.records("mitigate.rollback")
    assert [x["phase"] for x in recs] == ["aborted"]
    assert "stdin is not a terminal" in recs[0]["reason"]
    assert verify(kenv.journal().path).intact


@pytest.mark.parametrize("answer", ["n\n", "\n", "yes please\n"])
def test_case3_anything_but_yes_at_a_terminal_aborts(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty], answer: str
) -> None:
    before, seq = snapshot(sim), last_seq(sim)
    p = spawn(kenv, *ROLLBACK)
    p.expect("Type 'yes' to roll back deployment gateway-api to revision 3: ")
    p.send(answer)
    r = p.finish()
    assert r.rc == 4, r.err
    assert "aborted by user" in r.err
    assert_nothing_changed(sim, seq, before)
    assert [x["phase"] for x in kenv.records("mitigate.rollback")] == ["aborted"]


def test_typed_yes_at_a_terminal_applies(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty]
) -> None:
    seq = last_seq(sim)
    p = spawn(kenv, *ROLLBACK)
    p.expect("Type 'yes' to")
    p.send("yes\n")
    r = p.finish()
    assert r.rc == 0, r.err
    assert "APPLIED: deployment.apps/gateway-api rolled back to revision 3" in r.out
    assert [m[0] for m in mutations_since(sim, seq)] == ["PATCH"]
    recs = kenv.records("mitigate.rollback")
    assert [x["phase"] for x in recs] == ["intent", "result"]
    assert recs[0]["plan"]["consent"] == "typed yes" and recs[1]["outcome"] == "ok"


def test_case4_json_output_without_yes_is_refused_with_a_json_error(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    before, seq = snapshot(sim), last_seq(sim)
    r = cli("-o", "json", *ROLLBACK)
    assert r.rc == 4
    env = json.loads(r.out)  # exactly one document on stdout
    assert env["status"] == "not-confirmed" and env["exit_code"] == 4
    assert "--output json never prompts" in env["errors"][0]["message"]
    assert env["data"]["plan"]["pins"]["target_revision"] == 3  # the plan is still there
    assert_nothing_changed(sim, seq, before)
    ok = cli("-o", "json", *ROLLBACK, "--yes")
    assert ok.rc == 0, ok.err
    assert json.loads(ok.out)["data"]["outcome"]["status"] == "applied"


def test_case32_disk_full_journal_refuses_before_acting(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit, "_os_write", full)
    before, seq = snapshot(sim), last_seq(sim)
    r = cli(*ROLLBACK, "--yes")
    assert r.rc == 8
    assert "cannot write audit record (no space left on device" in r.err
    assert "refusing to act" in r.err
    assert_nothing_changed(sim, seq, before)


def test_case32_unwritable_state_dir_refuses_before_asking(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a state dir below a regular file can never be created, even by root
    blocker = kenv.tmp / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("SOMACTL_STATE_DIR", str(blocker / "state"))
    before, seq = snapshot(sim), last_seq(sim)
    r = cli(*ROLLBACK)  # no --yes: the journal is checked before anyone is asked
    assert r.rc == 8, r.err
    assert "cannot write audit record" in r.err and "confirmation required" not in r.err
    assert_nothing_changed(sim, seq, before)


@pytest.mark.parametrize("point", ["audit:intent", "audit:before-result"])
def test_case33_killed_between_intent_and_result(
    sim: KubeSimulator, kenv: Env, point: str, cli: Callable[..., Run]
) -> None:
    """SIGKILL after the intent (before acting) or after acting (before the result): the
    journal stays intact, the dangling intent is reported `unknown`, and a re-run never flips
    the deployment back."""
    kenv.vars["SOMACTL_CRASH_AT"] = point
    r = run_process(kenv, *ROLLBACK, "--yes")
    assert r.rc == -9, (r.rc, r.err)
    del kenv.vars["SOMACTL_CRASH_AT"]
    report = verify(kenv.journal().path)
    assert report.intact, report.first_broken
    assert [d["outcome"] for d in report.dangling] == ["unknown"]
    assert report.dangling[0]["kind"] == "mitigate.rollback"
    shown = run_process(kenv, "audit", "verify")
    assert shown.rc == 0
    assert "outcome unknown: mitigate.rollback" in shown.err
    applied = point == "audit:before-result"
    sim.tick(60)
    again = cli(*ROLLBACK, "--yes")
    assert again.rc == 0, again.err
    if applied:  # the first run's PATCH landed: the re-run sees its target
        assert "nothing to do: already at target" in again.out
    else:  # killed before acting: the re-run does the (same, explicit) rollback
        assert "rolled back to revision 3" in again.out
    assert verify(kenv.journal().path).intact
