"""Pure pieces of the mitigations: kubectl's semantic template equality, diffs, fingerprints,
the rollout-status predicate, rollback resolution (with a fake client), flag validation, the
runbook lookups and the renderers. No sockets."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from somactl.actions.autoscale import check_bounds
from somactl.actions.base import Actor, Outcome, Plan, Verification
from somactl.actions.kube import (
    REVISION,
    REVISION_HISTORY,
    Workload,
    changed_parts,
    check_name,
    equal_ignore_hash,
    fingerprint,
    parse_quantity,
    rollout_status,
    template_diff,
)
from somactl.actions.postgres import Filters
from somactl.actions.rollback import EarlierRollback, RollbackAction
from somactl.actions.scale import check_replicas
from somactl.commands.mitigate import rewrite_dry_run
from somactl.core.errors import UsageError
from somactl.ops.mitigate import entry_for, next_step, parse_dry_run
from somactl.runbook.loader import load_runbook
from somactl.ui.actions import render_plan, render_verification


def template(image: str, **extra: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "env": [{"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                }
            ]
        },
    }
    t["spec"].update(extra)
    return t


# --- semantic equality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("1Gi", Decimal(2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
        (3, Decimal(3)),
        ("abc", None),
        (True, None),
    ],
)
def test_parse_quantity(text: Any, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


def test_equal_ignore_hash_is_semantic() -> None:
    a = template("web:1")
    b = copy.deepcopy(a)
    b["metadata"]["labels"]["pod-template-hash"] = "74d788c4db"
    b["metadata"]["creationTimestamp"] = None  # kubectl's patches carry it
    b["metadata"]["annotations"] = {}
    b["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "1000m", "memory": "536870912"}
    assert equal_ignore_hash(a, b)
    c = copy.deepcopy(a)
    c["spec"]["containers"][0]["image"] = "web:2"
    assert not equal_ignore_hash(a, c)
    d = copy.deepcopy(a)
    d["metadata"]["labels"]["pod-template-hash"] = "x"
    d["metadata"]["labels"]["tier"] = "edge"  # a real label difference still counts
    assert not equal_ignore_hash(a, d)


def test_template_diff_names_images_env_resources_and_other_fields() -> None:
    cur = template("web:2")
    tgt = template("web:1")
    cur["spec"]["containers"][0]["env"] = [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    cur["spec"]["containers"][0]["resources"]["limits"]["memory"] = "1Gi"
    cur["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/h", "port": 80}}
    cur["spec"]["containers"].append({"name": "sidecar", "image": "proxy:1"})
    cur["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
    lines, data = template_diff(cur, tgt)
    assert "container web: image web:2 → web:1" in lines
    assert "container web: env LOG_LEVEL debug → info" in lines
    assert any(line.startswith("container web: env TOKEN from ") for line in lines)
    assert "container web: resources.limits.memory 1Gi → 512Mi" in lines
    assert "container web: readinessProbe differs" in lines
    assert "container sidecar: removed" in lines
    assert "template: metadata.annotations differs" in lines
    assert data["containers"]["web"]["image"] == ["web:2", "web:1"]
    # quantity spellings are not differences
    same = template("web:1")
    same["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1000m"
    assert template_diff(same, tgt) == ([], {"containers": {}, "other": []})


def test_fingerprint_ignores_status_and_resource_version_but_not_edits() -> None:
    obj = {
        "metadata": {"name": "web", "uid": "u1", "resourceVersion": "10", "annotations": {}},
        "spec": {"replicas": 3, "template": template("web:1")},
        "status": {"readyReplicas": 1},
    }
    churn = copy.deepcopy(obj)
    churn["metadata"]["resourceVersion"] = "99"
    churn["status"] = {"readyReplicas": 3}
    assert fingerprint(obj) == fingerprint(churn)
    edited = copy.deepcopy(obj)
    edited["spec"]["replicas"] = 4
    edited["metadata"]["annotations"] = {"team": "edge"}
    assert fingerprint(obj) != fingerprint(edited)
    assert changed_parts(obj, edited) == ["replicas 3→4", "annotations changed"]
    recreated = copy.deepcopy(obj)
    recreated["metadata"]["uid"] = "u2"
    assert changed_parts(obj, recreated) == ["the object was deleted and re-created"]


# --- rollout status (kubectl's predicate) -------------------------------------------------------


def deploy_status(**status: Any) -> dict[str, Any]:
    gen = status.pop("generation", 2)
    return {"metadata": {"generation": gen}, "spec": {"replicas": 3}, "status": status}


@pytest.mark.parametrize(
    ("obj", "state", "message"),
    [
        (
            deploy_status(observedGeneration=1),
            "progressing",
            "Waiting for deployment spec update to be observed...",
        ),
        (
            deploy_status(observedGeneration=2, updatedReplicas=1, replicas=4),
            "progressing",
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
            "updated...",
        ),
        (
            deploy_status(observedGeneration=2, updatedReplicas=3, replicas=4),
            "progressing",
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending '
            "termination...",
        ),
        (
            deploy_status(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=2),
            "progressing",
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are '
            "available...",
        ),
        (
            deploy_status(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=3),
            "done",
            'deployment "web" successfully rolled out',
        ),
        (
            deploy_status(
                observedGeneration=2,
                conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            ),
            "failed",
            'deployment "web" exceeded its progress deadline',
        ),
    ],
)
def test_rollout_status_follows_kubectl(obj: dict[str, Any], state: str, message: str) -> None:
    assert rollout_status(Workload("deployment", "web"), obj) == (state, message)


def test_statefulset_rollout_status() -> None:
    sts = Workload("statefulset", "postgres")
    base = {"metadata": {"generation": 1}, "spec": {"replicas": 1}}
    rolling = {
        **base,
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 1,
            "updateRevision": "b",
            "currentRevision": "a",
        },
    }
    assert rollout_status(sts, rolling)[0] == "progressing"
    done = {**base, "status": {**rolling["status"], "currentRevision": "b"}}
    assert rollout_status(sts, done) == (
        "done",
        "statefulset rolling update complete 1 pods at revision b...",
    )


# --- rollback resolution with a fake client -----------------------------------------------------


class FakeKube:
    namespace = "prod"
    host = "http://fake"

    def __init__(self, deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> None:
        self.deployment = deployment
        self.replicasets = replicasets

    def get(self, gv: str, resource: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.deployment)

    def list(self, gv: str, resource: str, **kw: Any) -> list[dict[str, Any]]:
        return copy.deepcopy(self.replicasets)

    def ns_path(self, gv: str, resource: str, name: str | None = None) -> str:
        return f"/apis/{gv}/namespaces/prod/{resource}/{name or ''}"


def rs(rev: int, image: str, name: str, history: str | None = None) -> dict[str, Any]:
    ann = {REVISION: str(rev), "kubernetes.io/change-cause": f"deploy {image}"}
    if history:
        ann[REVISION_HISTORY] = history
    t = template(image)
    t["metadata"]["labels"]["pod-template-hash"] = name.rsplit("-", maxsplit=1)[-1]
    return {
        "metadata": {
            "name": name,
            "uid": name,
            "creationTimestamp": f"2026-01-0{rev}T00:00:00Z",
            "annotations": ann,
            "ownerReferences": [{"controller": True, "uid": "dep-uid"}],
        },
        "spec": {"template": t},
    }


def fake(current_image: str, rss: list[dict[str, Any]], paused: bool = False) -> FakeKube:
    cur = max(rss, key=lambda r: int(r["metadata"]["annotations"][REVISION]))
    dep = {
        "metadata": {
            "name": "web",
            "uid": "dep-uid",
            "resourceVersion": "100",
            "generation": 5,
            "annotations": {REVISION: cur["metadata"]["annotations"][REVISION]},
        },
        "spec": {
            "replicas": 3,
            "paused": paused,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(current_image),
        },
        "status": {},
    }
    return FakeKube(dep, rss)


HISTORY = [rs(5, "web:5", "web-a5"), rs(6, "web:6", "web-b6"), rs(7, "web:7", "web-c7")]


def plan_for(client: FakeKube, **kw: Any) -> Plan:
    action = RollbackAction(client, "web", actor=Actor("alice", "INC-7"), **kw)  # type: ignore[arg-type]
    return action.plan()


def test_rollback_resolves_previous_to_an_explicit_revision() -> None:
    plan = plan_for(fake("web:7", HISTORY), to_revision=None)
    assert plan.pins["target_revision"] == 6 and plan.pins["target_rs"] == "web-b6"
    assert plan.details["renumbering"] == {"from": 6, "to": 8, "history_after": [5, 7, 8]}
    assert plan.details["change_cause"] == "somactl: rollback to revision 6 by alice (INC-7)"
    assert plan.details["_annotations"][REVISION] == "7"  # the deployment's, like kubectl
    assert "pod-template-hash" not in plan.details["_template"]["metadata"]["labels"]


def test_rollback_refusals_follow_kubectl_order() -> None:
    missing = plan_for(fake("web:7", HISTORY, paused=True), to_revision=42)
    assert missing.blocked == "unable to find revision 42 (available: 5,6,7)"  # before paused
    paused = plan_for(fake("web:7", HISTORY, paused=True), to_revision=6)
    assert paused.blocked is not None and "is paused; run resume first" in paused.blocked
    same = plan_for(fake("web:7", HISTORY), to_revision=7)
    assert same.noop is not None and "skipped rollback" in same.noop
    single = plan_for(fake("web:7", [HISTORY[2]]), to_revision=None)
    assert single.blocked == 'no rollout history found for deployment "web"'
    with pytest.raises(UsageError):
        plan_for(fake("web:7", HISTORY), to_revision=0)


def test_rollback_after_a_rollback_never_picks_the_revision_it_replaced() -> None:
    restored = [HISTORY[0], HISTORY[2], rs(8, "web:6", "web-b6", history="6")]
    # the journal knows somactl restored web-b6: a re-run is a no-op
    earlier = EarlierRollback("web-b6", 6, "2026-01-09T00:00:00Z", "unknown")
    noop = plan_for(fake("web:6", restored), to_revision=None, earlier=earlier)
    assert noop.noop is not None and "already at target" in noop.noop
    # without the journal (someone else's rollback): refused, never revision 7
    blocked = plan_for(fake("web:6", restored), to_revision=None)
    assert blocked.blocked is not None and "would roll forward" in blocked.blocked
    # an explicit revision is always honoured
    explicit = plan_for(fake("web:6", restored), to_revision=5)
    assert explicit.pins["target_revision"] == 5


# --- flags, runbook lookups, rendering ----------------------------------------------------------


def test_flag_validation() -> None:
    assert check_replicas(0) == 0 and check_replicas(1000) == 1000
    for bad in (-1, 1001, 99999999999):
        with pytest.raises(UsageError, match=r"--replicas must be between 0 and 1000"):
            check_replicas(bad)
    with pytest.raises(UsageError, match=r"--max must be ≥ --min \(max 3, min 5\)"):
        check_bounds(5, 3, 70)
    with pytest.raises(UsageError):
        Filters(older_than=1, database="somagent; DROP", grace=1).check()
    with pytest.raises(UsageError):
        Filters(older_than=1, database="somagent", user="x' OR 1=1", grace=1).check()
    for name in ("web;rm -rf", "../../etc", "", "A", "x" * 254):
        with pytest.raises(UsageError):
            check_name(name)
    assert parse_dry_run(None) is None and parse_dry_run("server") == "server"
    with pytest.raises(UsageError):
        parse_dry_run("yes")


def test_rewrite_dry_run_keeps_positional_arguments_and_double_dash() -> None:
    assert rewrite_dry_run(["rollback", "web", "--dry-run"]) == ["rollback", "web", "--dry-run"]
    assert rewrite_dry_run(["rollback", "--dry-run=server", "web"]) == [
        "rollback",
        "--dry-run-mode",
        "server",
        "web",
    ]
    assert rewrite_dry_run(["x", "--", "--dry-run=server"]) == ["x", "--", "--dry-run=server"]


def test_runbook_entries_and_next_steps() -> None:
    rb = load_runbook()
    assert entry_for(rb, "restart", "postgres")[0] == "db-restart"  # type: ignore[index]
    assert entry_for(rb, "restart", "orchestrator")[0] == "restart"  # type: ignore[index]
    assert entry_for(rb, "redis-flush", None)[0] == "redis-flush"  # type: ignore[index]
    assert entry_for(rb, "rollback", "postgres") is None  # rollback applies to deployments
    assert next_step(rb, "rollback", "gateway-api") == (
        "Service Crash: Scale up replicas (`somactl mitigate scale gateway-api --replicas 5`)"
    )
    assert next_step(rb, "kill-queries", "postgres") == (
        "Database Issues: Restart database (LAST RESORT) (`somactl mitigate restart postgres`)"
    )
    assert next_step(rb, "restart", "gateway-api") == (
        "Service Crash: no further step in the runbook; escalate"
    )


def test_renderers() -> None:
    plan = Plan(
        action="scale",
        target="deployment/web (prod)",
        summary="scale web",
        steps=["PUT scale"],
        warnings=["HPA"],
        display=["replicas: 3 → 0"],
    )
    text = "\n".join(render_plan(plan, "web", None))
    assert "PLAN: scale web" in text and "    1. PUT scale" in text
    assert "  warning: HPA" in text and "consent: type the name 'web'" in text
    assert "consent" not in "\n".join(render_plan(plan, None, "client"))
    v = Verification(False, "still bad", {"error_rate": 0.5}, {"error_rate": 0.4}, "scale up")
    assert render_verification(v) == [
        "NOT RECOVERED: still bad",
        "  error_rate: 0.5 → 0.4",
        "next step: scale up",
    ]
    assert Outcome("applied", "ok").to_json() == {
        "status": "applied",
        "message": "ok",
        "details": {},
    }
    assert Actor("bob").change_cause("restart") == "somactl: restart by bob"
