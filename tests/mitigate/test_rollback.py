"""`somactl mitigate rollback` against the simulated API, refereed by the real kubectl.

Reliability cases 5, 6, 7, 8, 9 (and the no-ping-pong promise) live here; 1-4 are in
test_consent_audit.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from somactl.actions.kube import CHANGE_CAUSE, REVISION, normalize
from somactl.incident.store import IncidentStore
from somactl.lab.kube import KubeSimulator, write_kubeconfig
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE
from tests.helpers import missing
from tests.kube.conftest import Kubectl, kubectl_path
from tests.mitigate.conftest import (
    ACTOR,
    Env,
    PromStub,
    Pty,
    Run,
    deployment,
    last_seq,
    make_sim,
    mutations_since,
    set_env,
    writes_since,
)
from tests.mitigate.proxy import LossyProxy

GW = "gateway-api"
GOOD = "registry.somagent.dev/somagent/gateway-api:1.9.0"
BAD = "registry.somagent.dev/somagent/gateway-api:1.9.0-crashloop"


def image(sim: KubeSimulator, name: str = GW) -> str:
    return str(deployment(sim, name)["spec"]["template"]["spec"]["containers"][0]["image"])


def revisions(sim: KubeSimulator, name: str = GW) -> dict[str, int]:
    """ReplicaSet name -> revision for the deployment."""
    out = {}
    for rs in sim.cluster.store.select(R.REPLICASETS.key, NAMESPACE):
        if rs["metadata"]["name"].startswith(name + "-"):
            out[rs["metadata"]["name"]] = int(rs["metadata"]["annotations"][REVISION])
    return out


def make_kubectl(sim: KubeSimulator, tmp: Path) -> Kubectl:
    binary = kubectl_path()
    if binary is None:
        missing("kubectl is not installed; it is the referee for rollbacks")
    kc = write_kubeconfig(tmp / "kubeconfig", sim.url, NAMESPACE)
    return Kubectl(
        binary,
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp / "home"),
            "KUBECONFIG": str(kc),
            "KUBECACHEDIR": str(tmp / "kubecache"),
            "TZ": "UTC",
        },
    )


# --- the plan ----------------------------------------------------------------------------------


def test_plan_resolves_an_explicit_revision_and_shows_diff_and_renumbering(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    # a revision 5 that also changes env and resources, so the diff has all three kinds
    sim.cluster.patch(
        R.DEPLOYMENTS,
        NAMESPACE,
        GW,
        "strategic",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "api",
                                "image": GOOD + "-debug",
                                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                                "resources": {"limits": {"memory": "1Gi"}},
                            }
                        ]
                    }
                }
            }
        },
    )
    sim.tick(60)
    seq = last_seq(sim)
    r = cli("mitigate", "rollback", GW, "--dry-run")
    assert r.rc == 0, r.err
    out = r.out
    assert "PLAN (dry run): roll back deployment gateway-api from revision 5 to revision 4" in out
    assert f"container api: image {GOOD}-debug → {BAD}" in out
    assert "container api: env LOG_LEVEL debug → info" in out
    assert "container api: resources.limits.memory 1Gi → 512Mi" in out
    assert "revision 4 comes back as revision 6 (history after: 1, 2, 3, 5, 6)" in out
    assert "dry run: nothing was changed" in out
    assert writes_since(sim, seq) == []

    j = cli("-o", "json", "mitigate", "rollback", GW, "--dry-run", "--to-revision", "3")
    assert j.rc == 0, j.err
    env = json.loads(j.out)
    assert env["status"] == "dry-run" and env["exit_code"] == 0
    plan = env["data"]["plan"]
    assert plan["pins"]["target_revision"] == 3
    assert plan["details"]["renumbering"] == {"from": 3, "to": 6, "history_after": [1, 2, 4, 5, 6]}
    assert plan["details"]["diff"]["containers"]["api"]["image"] == [GOOD + "-debug", GOOD]
    assert "_template" not in plan["details"]  # working data is not shown
    assert writes_since(sim, seq) == []


# --- the referee: kubectl rollout undo on a twin -------------------------------------------------


@pytest.fixture
def twin(sim: KubeSimulator) -> Iterator[KubeSimulator]:
    """A second simulator built exactly like `sim` (same seed, same clock)."""
    other = make_sim(end_at=sim_end(sim))
    try:
        yield other
    finally:
        other.stop()


def sim_end(sim: KubeSimulator) -> float:
    # make_sim seeds with end_at, then bad-deploys and ticks 60 s: recover end_at from the clock
    return sim.cluster.now() - 60


@pytest.mark.kubectl
@pytest.mark.parametrize("revision", [None, 2])
def test_rollback_equals_kubectl_rollout_undo_on_a_twin(
    sim: KubeSimulator,
    twin: KubeSimulator,
    kenv: Env,
    cli: Callable[..., Run],
    tmp_path: Path,
    revision: int | None,
) -> None:
    assert normalize(deployment(sim, GW)["spec"]) == normalize(deployment(twin, GW)["spec"])
    assert revisions(sim) == revisions(twin)
    kubectl = make_kubectl(twin, tmp_path / "twin")
    flag = [] if revision is None else ["--to-revision", str(revision)]
    r = cli("mitigate", "rollback", GW, "--yes", "--verify", "0", *flag)
    assert r.rc == 0, r.err
    # kubectl is always given the revision somactl resolved (3 = the second-highest)
    k = kubectl("rollout", "undo", f"deployment/{GW}", f"--to-revision={revision or 3}")
    assert k.rc == 0, k.err
    assert k.out.strip() == f"deployment.apps/{GW} rolled back"
    sim.tick(60)
    twin.tick(60)
    ours, theirs = deployment(sim, GW), deployment(twin, GW)
    assert normalize(ours["spec"]["template"]) == normalize(theirs["spec"]["template"])
    a_ours = dict(ours["metadata"]["annotations"])
    a_theirs = dict(theirs["metadata"]["annotations"])
    cause = a_ours.pop(CHANGE_CAUSE)
    a_theirs.pop(CHANGE_CAUSE, None)
    assert a_ours == a_theirs
    assert cause == f"somactl: rollback to revision {revision or 3} by {ACTOR}"
    assert revisions(sim) == revisions(twin)  # same ReplicaSets, same renumbering
    assert ours["metadata"]["annotations"][REVISION] == "5"
    # `kubectl rollout history` tells the story on our cluster
    ours_kubectl = make_kubectl(sim, tmp_path / "ours")
    h = ours_kubectl("rollout", "history", f"deployment/{GW}")
    assert h.rc == 0, h.err
    rows = {ln.split(None, 1)[0]: ln.split(None, 1)[1] for ln in h.out.splitlines()[2:] if ln}
    assert rows["5"] == cause
    assert str(revision or 3) not in rows  # renumbered away, as kubectl's controller does


# --- retries never roll forward ----------------------------------------------------------------


def test_rerun_is_already_at_target_never_a_ping_pong(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    """Reliability case 9 (user re-runs the same command): a bare `rollout undo` would now pick
    revision 4 (the bad one); somactl sees the template its rollback restored."""
    first = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert first.rc == 0, first.err
    assert "APPLIED: deployment.apps/gateway-api rolled back to revision 3" in first.out
    sim.tick(60)
    assert image(sim) == GOOD
    revs = revisions(sim)
    seq = last_seq(sim)
    again = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert again.rc == 0, again.err
    assert "nothing to do: already at target" in again.out
    assert "rolling back again would roll forward" in again.out
    assert mutations_since(sim, seq) == []
    sim.tick(60)
    assert image(sim) == GOOD and revisions(sim) == revs
    results = [r for r in kenv.records("mitigate.rollback") if r["phase"] == "result"]
    assert [r["outcome"] for r in results] == ["ok", "ok"]
    assert results[1]["details"]["status"] == "noop"


def test_restored_revision_without_journal_is_refused_not_rolled_forward(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], tmp_path: Path
) -> None:
    """Someone else rolled back (kubectl): "previous" would be the bad revision again."""
    first = cli("mitigate", "rollback", GW, "--yes", "--verify", "0", "--to-revision", "3")
    assert first.rc == 0, first.err
    sim.tick(60)
    (kenv.state_dir / "audit.jsonl").unlink()  # another person's machine: no journal
    seq = last_seq(sim)
    r = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert r.rc == 5
    assert "is revision 3 restored" in r.err and "would roll forward" in r.err
    assert "--to-revision N (available: 1,2,4,5)" in r.err
    assert mutations_since(sim, seq) == []
    ok = cli("mitigate", "rollback", GW, "--yes", "--verify", "0", "--to-revision", "2")
    assert ok.rc == 0, ok.err


@pytest.fixture
def proxied(sim: KubeSimulator, kenv: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[LossyProxy]:
    proxy = LossyProxy(sim.url).start()
    kc = write_kubeconfig(kenv.tmp / "kubeconfig-proxy", proxy.url, NAMESPACE)
    set_env(kenv, monkeypatch, SOMACTL_KUBECONFIG=str(kc))
    try:
        yield proxy
    finally:
        proxy.stop()


def test_case9_lost_answer_is_confirmed_by_a_reread_not_resent_blindly(
    sim: KubeSimulator, kenv: Env, proxied: LossyProxy, cli: Callable[..., Run]
) -> None:
    """Reliability case 9: the PATCH took effect, its answer was lost."""
    proxied.drop_response_of("PATCH", f"/deployments/{GW}")
    seq = last_seq(sim)
    r = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert r.rc == 0, r.err
    assert proxied.dropped and proxied.dropped[0][2] == 200
    assert "rolled back to revision 3 (the answer was lost; a re-read confirms" in r.out
    assert mutations_since(sim, seq) == [
        ("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{GW}")
    ]
    result = [x for x in kenv.records("mitigate.rollback") if x["phase"] == "result"][-1]
    assert result["outcome"] == "ok" and result["details"]["response_lost"] is True


def test_case9_unknown_outcome_then_rerun_is_a_noop_not_a_flip(
    sim: KubeSimulator, kenv: Env, proxied: LossyProxy, cli: Callable[..., Run]
) -> None:
    """Reliability case 9: answer lost and the API unreachable -> outcome unknown (exit 6);
    the re-run of the same command resolves to the same revision: already at target, exit 0."""
    proxied.drop_response_of("PATCH", f"/deployments/{GW}", then_down=True)
    seq = last_seq(sim)
    first = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert first.rc == 6, (first.out, first.err)
    assert "was sent but no answer came back" in first.err
    assert "it resolves to the same explicit revision (3)" in first.err
    proxied.down = False
    sim.tick(60)
    second = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert second.rc == 0, second.err
    assert "nothing to do: already at target" in second.out
    assert "rollback to revision 3" in second.out and "(unknown)" in second.out
    assert [m[0] for m in mutations_since(sim, seq)] == ["PATCH"]  # exactly one write, ever
    sim.tick(60)
    assert image(sim) == GOOD
    outcomes = [x["outcome"] for x in kenv.records("mitigate.rollback") if x["phase"] == "result"]
    assert outcomes == ["unknown", "ok"]


# --- refusals ----------------------------------------------------------------------------------


def test_case6_missing_revision_is_refused_like_kubectl(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    before = json.dumps(deployment(sim, GW), sort_keys=True)
    seq = last_seq(sim)
    r = cli("mitigate", "rollback", GW, "--to-revision", "42", "--yes")
    assert r.rc == 5
    assert "unable to find revision 42 (available: 1,2,3,4)" in r.err
    assert mutations_since(sim, seq) == []
    assert json.dumps(deployment(sim, GW), sort_keys=True) == before
    j = cli("-o", "json", "mitigate", "rollback", GW, "--to-revision", "42", "--yes")
    assert j.rc == 5
    env = json.loads(j.out)  # one envelope: the plan and the refusal
    assert (env["status"], env["exit_code"]) == ("refused", 5)
    assert env["data"]["plan"]["blocked"] == "unable to find revision 42 (available: 1,2,3,4)"
    assert env["errors"][0]["exit_code"] == 5


@pytest.mark.parametrize("verb", ["rollback", "restart"])
def test_case7_paused_deployment_is_refused(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], verb: str
) -> None:
    sim.cluster.patch(R.DEPLOYMENTS, NAMESPACE, GW, "merge", {"spec": {"paused": True}})
    seq = last_seq(sim)
    r = cli("mitigate", verb, GW, "--yes", "--verify", "0")
    assert r.rc == 5
    assert f"deployment {GW} is paused; run resume first" in r.err
    assert f"kubectl rollout resume deployment/{GW}" in r.err
    assert mutations_since(sim, seq) == []


def test_case5_server_dry_run_sends_dryrun_all_and_changes_nothing(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    before = json.dumps(deployment(sim, GW), sort_keys=True)
    seq = last_seq(sim)
    r = cli("mitigate", "rollback", GW, "--dry-run=server")
    assert r.rc == 0, r.err
    assert "PLAN (server dry run)" in r.out
    assert "(server dry run) deployment.apps/gateway-api rolled back to revision 3" in r.out
    writes = writes_since(sim, seq)
    assert len(writes) == 1 and "dryRun=All" in writes[0][2]
    assert mutations_since(sim, seq) == []
    assert json.dumps(deployment(sim, GW), sort_keys=True) == before
    assert kenv.records() == []  # nothing was done, nothing to journal


def test_case8_another_actor_edits_between_plan_and_consent(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty]
) -> None:
    seq = last_seq(sim)
    p = spawn(kenv, "mitigate", "rollback", GW, "--verify", "0")
    p.expect("Type 'yes' to roll back deployment gateway-api to revision 3")
    rv_before = deployment(sim, GW)["metadata"]["resourceVersion"]
    # another actor annotates the deployment meanwhile (like `kubectl annotate`)
    sim.cluster.patch(
        R.DEPLOYMENTS, NAMESPACE, GW, "merge", {"metadata": {"annotations": {"team": "edge"}}}
    )
    rv_after = deployment(sim, GW)["metadata"]["resourceVersion"]
    edited = json.dumps(deployment(sim, GW), sort_keys=True)
    p.send("yes\n")
    r = p.finish()
    assert r.rc == 5, r.err
    assert f"state changed since plan (rv {rv_before}→{rv_after}): annotations changed" in r.err
    assert "re-run to re-plan" in r.err
    assert mutations_since(sim, seq) == []
    assert json.dumps(deployment(sim, GW), sort_keys=True) == edited
    phases = [x["phase"] for x in kenv.records("mitigate.rollback")]
    assert phases == ["intent", "aborted"]


def test_status_churn_is_not_a_change_of_the_approved_object(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Controllers rewrite status (new resourceVersions) all the time during an incident; only
    an edit of spec/labels/annotations stops the action."""
    import somactl.ui.actions as ui_actions

    real = ui_actions.require_consent

    def consent_then_tick(*a: Any, **k: Any) -> str:
        sim.tick(30)  # pods crash-loop: status writes
        return real(*a, **k)

    rv_before = deployment(sim, GW)["metadata"]["resourceVersion"]
    monkeypatch.setattr(ui_actions, "require_consent", consent_then_tick)
    r = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert r.rc == 0, r.err
    assert "rolled back to revision 3" in r.out
    plan_rv = next(x for x in kenv.records() if x["phase"] == "intent")["plan"]["pins"]
    assert plan_rv["resourceVersion"] == rv_before


def test_change_cause_names_the_open_incident(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run]
) -> None:
    with IncidentStore(kenv.state_dir) as store:
        inc = store.declare(severity="P0", title="gateway down", impact="all", service=GW)
    r = cli("mitigate", "rollback", GW, "--yes", "--verify", "0")
    assert r.rc == 0, r.err
    cause = deployment(sim, GW)["metadata"]["annotations"][CHANGE_CAUSE]
    assert cause == f"somactl: rollback to revision 3 by {ACTOR} ({inc.id})"
    with IncidentStore(kenv.state_dir) as store:
        kinds = [e.kind for e in store.timeline(int(inc.id.split("-")[1]))]
    assert "action_planned" in kinds and "action_applied" in kinds


def test_verify_follows_the_rollout_to_recovered(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], ticker: Callable[..., Any]
) -> None:
    ticker(2.0)
    r = cli("mitigate", "rollback", GW, "--yes", "--verify", "60s")
    assert r.rc == 0, r.err
    assert re.search(r'RECOVERED: deployment "gateway-api" successfully rolled out', r.out), r.out
    assert f"images: {BAD} → {GOOD}" in r.out
    assert "revision: 4 → 5" in r.out
    # no Prometheus here (a refused port): said once, not re-asked for the rest of --verify
    assert "metrics unavailable: prometheus: connection refused" in r.out, r.out
    window = re.search(r"window_seconds: - → (\d+)", r.out)
    assert window is not None and int(window.group(1)) < 30, r.out  # it held 50 s of 60 before


@pytest.mark.parametrize("heals", [True, False])
def test_verify_rechecks_error_rate_and_p95_and_names_the_next_step(
    sim: KubeSimulator,
    kenv: Env,
    cli: Callable[..., Run],
    ticker: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    heals: bool,
) -> None:
    """--verify: follow the rollout, then the runbook's error-rate and p95 queries (Prometheus)
    against their warn thresholds; NOT RECOVERED names the pattern's next step."""

    def answer(query: str) -> float:
        bad = image(sim) == BAD or not heals
        if "http_requests_total" in query:
            return 0.42 if bad else 0.001
        return 3.5 if bad else 0.2

    prom = PromStub(answer)
    set_env(kenv, monkeypatch, SOMACTL_PROMETHEUS_URL=prom.url)
    try:
        ticker(2.0)
        # a service that stays bad is re-measured until the budget ends: keep it short
        r = cli("mitigate", "rollback", GW, "--yes", "--verify", "60s" if heals else "15s")
    finally:
        prom.stop()
    assert r.rc == 0, r.err
    assert any('job="gateway-api"' in q for q in prom.queries)
    if heals:
        assert "RECOVERED: " in r.out and "NOT RECOVERED" not in r.out, r.out
        assert "error_rate: 0.42 → 0.001" in r.out
        assert "p95_seconds: 3.5 → 0.2" in r.out
        assert "next step" not in r.out
    else:
        assert "NOT RECOVERED: " in r.out, r.out
        assert "error_rate, p95_seconds still above the runbook's warn threshold" in r.out
        assert (
            "next step: Service Crash: Scale up replicas "
            "(`somactl mitigate scale gateway-api --replicas 5`)" in r.out
        )
