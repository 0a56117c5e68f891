"""`somactl runbook run` against the lab: real checks, real mitigations through the one executor,
a responder at a pseudo-terminal, and the incident's timeline and PIR afterwards.

Each test has its own state dir (incident store + audit journal); the lab is shared, so every
test heals it (and puts gateway-api's replicas back) in `finally`."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from somactl.incident.audit import AuditJournal
from somactl.incident.store import IncidentStore
from somactl.lab import scenarios
from tests.helpers import wait_until
from tests.lab_fixture import Lab


def state_env(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return {"SOMACTL_STATE_DIR": str(state), "SOMACTL_ACTOR": "oncall-tester"}


def declare(lab: Lab, env: dict[str, str], severity: str, service: str) -> None:
    proc = lab.somactl(
        "incident", "declare", "-s", severity, "-t", f"{service} in trouble",
        "--impact", "users see errors", "--service", service, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def timeline(env: dict[str, str]) -> list[Any]:
    with IncidentStore(env["SOMACTL_STATE_DIR"], create=False) as st:
        return st.timeline(1)


def steps_on_timeline(env: dict[str, str]) -> list[tuple[int, str, str | None]]:
    return [
        (
            e.details["runbook_step"]["step"],
            e.details["runbook_step"]["outcome"],
            e.details["runbook_step"]["reason"],
        )
        for e in timeline(env)
        if e.kind == "runbook_step"
    ]


def deployment(lab: Lab, name: str) -> dict[str, Any]:
    return scenarios._deployment(lab.info, name)


def image(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def restore(lab: Lab, name: str, replicas: int) -> None:
    lab.heal()
    if int(deployment(lab, name)["spec"].get("replicas", 1)) != replicas:
        scenarios._smp(lab.info, name, {"spec": {"replicas": replicas}})


# -- --yes: the whole scenario, for real ------------------------------------------------------


def test_gateway_api_down_with_yes_rolls_back_for_real(lab: Lab, tmp_path: Path) -> None:
    lab.heal()
    env = state_env(tmp_path)
    replicas = int(deployment(lab, "gateway-api")["spec"]["replicas"])
    try:
        declare(lab, env, "P0", "gateway-api")
        broke = lab.break_scenario("gateway-down")
        assert image(deployment(lab, "gateway-api")).endswith("-crashloop")
        proc = lab.somactl(
            "-o", "json", "runbook", "run", "gateway-api-down", "--yes", "--verify", "60s",
            env=env, timeout=240,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr  # exit 0: every needed step executed
        envelope = json.loads(proc.stdout)  # stdout is only the envelope
        data = envelope["data"]
        assert envelope["exit_code"] == 0 and envelope["status"] == "ok"
        assert [(s["n"], s["outcome"]) for s in data["steps"]] == [
            *[(n, "executed") for n in range(1, 5)],
            (5, "not-needed"),  # the rollback's verification found gateway-api recovered
        ]
        assert data["steps"][3]["action_result"]["verification"]["recovered"] is True
        assert data["steps"][4]["reason"].startswith("gateway-api recovered after step 4 (rollback")
        assert data["steps"][4]["reason"].endswith(
            "to run it anyway: somactl mitigate scale gateway-api --replicas 5"
        )
        assert "SOMA-447" in data["steps"][1]["findings"][0]["summary"]  # the bad deploy
        rollback = data["steps"][3]["action_result"]
        assert rollback["consent"] == "--yes"
        assert rollback["outcome"]["status"] == "applied"
        assert data["incident"] == "INC-1" and data["state"]["summary"]
        # the rollback really happened: the healthy image is back and the pods come up
        good = lab.info.data["healthy_images"]["gateway-api"]
        assert image(deployment(lab, "gateway-api")) == good != broke["details"]["image"]
        wait_until(
            lambda: scenarios.is_fixed(lab.info, "gateway-down")[0],
            timeout=60,
            message="gateway-api healthy again",
        )
        assert int(deployment(lab, "gateway-api")["spec"]["replicas"]) == replicas  # no scale
        # every step on the timeline, the action with its audit records
        assert steps_on_timeline(env) == [(s["n"], s["outcome"], s["reason"])
                                          for s in data["steps"]]  # fmt: skip
        kinds = [e.kind for e in timeline(env)]
        assert kinds.count("action_applied") == 1
        with IncidentStore(env["SOMACTL_STATE_DIR"], create=False) as st:
            assert st.get(1).runbook == "gateway-api-down"
        records = list(AuditJournal(Path(env["SOMACTL_STATE_DIR"])).records())
        results = [(r["kind"], r.get("outcome")) for r in records if r.get("phase") == "result"]
        assert results == [("mitigate.rollback", "ok")]
        intent = next(r for r in records if r.get("phase") == "intent")
        assert "(INC-1)" in json.dumps(intent)  # change-cause names the incident
    finally:
        restore(lab, "gateway-api", replicas)


# -- no terminal, no --yes: checks run, the first action is refused, nothing changes ------------


def test_no_terminal_no_yes_runs_the_checks_and_refuses_the_action(
    lab: Lab, tmp_path: Path
) -> None:
    lab.heal()
    env = state_env(tmp_path)
    replicas = int(deployment(lab, "gateway-api")["spec"]["replicas"])
    try:
        declare(lab, env, "P0", "gateway-api")
        lab.break_scenario("gateway-down")
        before = deployment(lab, "gateway-api")
        proc = lab.somactl("runbook", "run", "gateway-api-down", env=env, timeout=120)
        assert proc.returncode == 4, proc.stderr  # not confirmed
        out = proc.stdout
        for check in ("k8s.pods:", "k8s.rollout-history:", "db.connectivity:"):
            assert check in out  # the checks ran and showed their findings
        assert "PLAN: roll back deployment gateway-api" in out
        assert "-> refused: not confirmed: confirmation required: stdin is not a terminal" in out
        assert "error: step 4 (Rollback if recent deployment): not confirmed" in proc.stderr
        after = deployment(lab, "gateway-api")
        assert image(after) == image(before) and image(after).endswith("-crashloop")
        assert after["spec"]["replicas"] == before["spec"]["replicas"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        outcomes = [(n, o) for n, o, _ in steps_on_timeline(env)]
        assert outcomes == [(1, "executed"), (2, "executed"), (3, "executed"), (4, "refused"),
                            (5, "not-run")]  # fmt: skip
        records = list(AuditJournal(Path(env["SOMACTL_STATE_DIR"])).records())
        assert [r["phase"] for r in records] == ["aborted"]  # no intent: nothing was attempted
        # the same as JSON: still no prompt, still exit 4, stdout only the envelope
        proc = lab.somactl("-o", "json", "runbook", "run", "gateway-api-down", env=env)
        envelope = json.loads(proc.stdout)
        assert proc.returncode == 4 and envelope["exit_code"] == 4
        assert envelope["status"] == "not-confirmed"
        assert [s["outcome"] for s in envelope["data"]["steps"]] == [
            "executed", "executed", "executed", "refused", "not-run",
        ]  # fmt: skip
        assert image(deployment(lab, "gateway-api")) == image(before)
    finally:
        restore(lab, "gateway-api", replicas)


def test_a_check_that_cannot_run_is_exit_9(lab: Lab, tmp_path: Path) -> None:
    """Postgres behind a port that accepts and never answers: db.connectivity cannot run."""
    lab.heal()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever answers
    port = silent.getsockname()[1]
    env = {**state_env(tmp_path), "SOMACTL_PG_DSN": f"host=127.0.0.1 port={port} user=oncall "
           "dbname=somagent"}  # fmt: skip
    try:
        proc = lab.somactl(
            "-o", "json", "--timeout", "3s", "runbook", "run", "gateway-api-down",
            "--skip", "rollback=no deploy", "--skip", "5=enough replicas", env=env, timeout=120,
        )  # fmt: skip
    finally:
        silent.close()
    assert proc.returncode == 9, proc.stderr  # partial: a check could not run
    data = json.loads(proc.stdout)["data"]
    assert [(s["n"], s["outcome"]) for s in data["steps"]] == [
        (1, "executed"), (2, "executed"), (3, "failed"), (4, "skipped"), (5, "skipped"),
    ]  # fmt: skip
    assert data["steps"][2]["exit_code"] == 6  # unreachable
    assert f"127.0.0.1:{port}" in data["steps"][2]["error"]
    assert data["steps"][3]["reason"] == "no deploy"
    assert data["incident"] is None  # no incident: said so, the run went on
    assert "no open incident" in proc.stderr and "somactl incident declare" in proc.stderr


# -- a responder at a terminal: skip an action with a reason, mark manual steps ------------------


class Terminal:
    """somactl on a pseudo-terminal (stdin and stderr); stdout collected on a pipe."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "somactl", *argv],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        self.buf = b""
        self.screen = b""
        self.stdout = b""
        assert self.proc.stdout is not None
        pipe = self.proc.stdout
        self._reader = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._reader.start()

    def _drain(self, pipe: Any) -> None:
        for chunk in iter(lambda: pipe.read1(4096), b""):
            self.stdout += chunk

    def expect(self, text: str, timeout: float = 60.0) -> None:
        want = text.encode()
        deadline = time.monotonic() + timeout
        while want not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on the terminal; saw {self.screen[-1500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(
                    f"terminal closed before {text!r}; saw {self.screen[-1500:]!r}"
                )
            self.buf += chunk
            self.screen += chunk
        self.buf = self.buf[self.buf.index(want) + len(want) :]

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def wait(self, timeout: float = 120.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        os.close(self.master)
        return rc


def test_responder_skips_an_action_with_a_reason_and_marks_manual_steps(
    lab: Lab, tmp_path: Path
) -> None:
    lab.heal()
    env = state_env(tmp_path)
    try:
        declare(lab, env, "P2", "orchestrator")
        before = deployment(lab, "orchestrator")
        term = Terminal(
            ["runbook", "run", "memory-leak", "orchestrator", "--verify", "0"],
            {**lab.env, **env},
        )
        term.expect("Type 'done' when it is done, 'skip' to skip it, 'stop' to end the runbook: ")
        term.send("done")  # step 2: the heap dump was captured
        term.expect("Type 'yes' to ")  # step 3: the restart's plan, then the question
        term.expect("'skip' to skip this step, 'stop' to end the runbook: ")
        term.send("skip")
        term.expect("Why skip it? (recorded on the incident timeline): ")
        term.send("heap dump under review first")
        term.expect("Type 'done' when it is done")  # step 4
        term.send("skip")
        term.expect("Why skip it?")
        term.send("owning team already filed SOMA-512")
        rc = term.wait()
        out = term.stdout.decode()
        assert rc == 0, term.screen.decode(errors="replace")  # executed or skipped by the responder
        assert "[1/4] Identify service with high memory  (check k8s.memory)" in out
        assert "k8s.memory: " in out  # step 1's finding (stdout: the terminal is stderr)
        assert "PLAN: " in out and "deployment/orchestrator" in out  # step 3's plan
        assert "-> skipped: heap dump under review first" in out
        # nothing was restarted
        after = deployment(lab, "orchestrator")
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"]["template"] == before["spec"]["template"]
        # the timeline has each step, the skips with their reasons
        assert steps_on_timeline(env) == [
            (1, "executed", None),
            (2, "executed", "done (confirmed by the responder)"),
            (3, "skipped", "heap dump under review first"),
            (4, "skipped", "owning team already filed SOMA-512"),
        ]
        records = list(AuditJournal(Path(env["SOMACTL_STATE_DIR"])).records())
        aborted = [r for r in records if r.get("phase") == "aborted"]
        assert len(aborted) == 1 and aborted[0]["kind"] == "mitigate.restart"
        assert "heap dump under review first" in json.dumps(aborted[0])
        # and the PIR says which runbook was followed and what was skipped, and why
        proc = lab.somactl("pir", "INC-1", env=env)
        assert proc.returncode == 0, proc.stderr
        md = proc.stdout
        section = md[md.index("## Runbook Followed") : md.index("## Root Cause")]
        assert "**Memory Leak (memory-leak)** for orchestrator" in section
        assert "- Step 2 - Capture heap dump: **executed**" in section
        assert (
            "- Step 3 - Restart affected pods: **skipped** (reason: heap dump under review first)"
            in section
        )
        assert "Skipped steps: 3 (Restart affected pods), 4 (File bug with heap dump)" in section
        assert "Runbook memory-leak step 3/4 (Restart affected pods): skipped" in md  # timeline
    finally:
        lab.heal()
