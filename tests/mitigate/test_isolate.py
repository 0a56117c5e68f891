"""isolate / unisolate (the security scenario), and --dry-run for every Kubernetes action."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from somactl.actions.isolate import EVIDENCE_ANNOTATION, ISOLATE_LABEL
from somactl.actions.kube import CHANGE_CAUSE, MANAGED_BY
from somactl.lab.kube import KubeSimulator
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE
from tests.mitigate.conftest import (
    ACTOR,
    Env,
    Pty,
    Run,
    last_seq,
    mutations_since,
    state_of,
)

SVC = "kamachiq-service"


def policies(sim: KubeSimulator) -> dict[str, dict[str, object]]:
    return {
        p["metadata"]["name"]: p for p in sim.cluster.store.select(R.NETWORKPOLICIES.key, NAMESPACE)
    }


def test_isolate_snapshots_evidence_then_denies_all_and_unisolate_removes_exactly_it(
    sim: KubeSimulator, kenv: Env, spawn: Callable[..., Pty], cli: Callable[..., Run]
) -> None:
    # a policy somactl does not own, with one of the two labels: it must survive unisolate
    sim.cluster.create(
        R.NETWORKPOLICIES,
        NAMESPACE,
        {
            "metadata": {"name": "team-policy", "labels": {ISOLATE_LABEL: SVC}},
            "spec": {"podSelector": {"matchLabels": {"app": SVC}}, "policyTypes": ["Ingress"]},
        },
    )
    seq = last_seq(sim)
    p = spawn(kenv, "mitigate", "isolate", SVC, "--verify", "5s")
    screen = p.expect(f"Type the name '{SVC}' to isolate deployment/{SVC} (deny all traffic): ")
    assert "deny all" in screen
    p.send(f"{SVC}\n")
    r = p.finish()
    assert r.rc == 0, r.err
    assert "CONTAINED: networkpolicy somactl-isolate-kamachiq-service selects 2 pods" in r.out
    assert f"still there: {SVC} takes no traffic until somactl mitigate unisolate {SVC}" in r.out
    pol = policies(sim)["somactl-isolate-kamachiq-service"]
    meta = pol["metadata"]
    assert isinstance(meta, dict)
    assert meta["labels"] == {MANAGED_BY: "somactl", ISOLATE_LABEL: SVC}
    assert meta["annotations"][CHANGE_CAUSE] == f"somactl: isolate (deny all traffic) by {ACTOR}"
    assert pol["spec"] == {
        "podSelector": {"matchLabels": {"app": SVC}},
        "policyTypes": ["Ingress", "Egress"],
    }
    assert [m[0] for m in mutations_since(sim, seq)] == ["POST"]
    # the evidence: every file's sha256 is what the manifest says; the policy names the manifest
    dirs = list((kenv.state_dir / "evidence").iterdir())
    assert len(dirs) == 1
    root = dirs[0]
    manifest_bytes = (root / "manifest.json").read_bytes()
    assert meta["annotations"][EVIDENCE_ANNOTATION] == hashlib.sha256(manifest_bytes).hexdigest()
    manifest = json.loads(manifest_bytes)
    names = {f["path"] for f in manifest["files"]}
    assert "deployment.json" in names and "events.json" in names
    assert sum(1 for n in names if n.startswith("pods/")) == 2
    assert sum(1 for n in names if n.startswith("logs/")) >= 2
    for f in manifest["files"]:
        data = (root / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert ((root / f["path"]).stat().st_mode & 0o077) == 0
    assert manifest["actor"] == ACTOR
    # isolated twice is a no-op
    again = cli("mitigate", "isolate", SVC, "--yes", "--verify", "0")
    assert again.rc == 0 and "already isolated by networkpolicy" in again.out

    seq = last_seq(sim)
    un = cli("mitigate", "unisolate", SVC, "--yes", "--verify", "5s")
    assert un.rc == 0, un.err
    assert "RECOVERED: no isolating networkpolicy left" in un.out
    assert set(policies(sim)) == {"team-policy"}
    assert mutations_since(sim, seq) == [
        (
            "DELETE",
            f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/"
            "somactl-isolate-kamachiq-service",
        )
    ]
    none = cli("mitigate", "unisolate", SVC, "--yes")
    assert none.rc == 0 and "is not isolated" in none.out


def test_unisolate_stops_if_the_policy_changed_since_the_plan(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], spawn: Callable[..., Pty]
) -> None:
    assert cli("mitigate", "isolate", SVC, "--yes", "--verify", "0").rc == 0
    p = spawn(kenv, "mitigate", "unisolate", SVC, "--verify", "0")
    p.expect("Type 'yes' to lift the isolation")
    sim.cluster.patch(
        R.NETWORKPOLICIES,
        NAMESPACE,
        "somactl-isolate-kamachiq-service",
        "merge",
        {"metadata": {"annotations": {"edited": "by someone"}}},
    )
    p.send("yes\n")
    r = p.finish()
    assert r.rc == 5, r.err
    assert "somactl-isolate-kamachiq-service" in policies(sim)


@pytest.mark.parametrize(
    "argv",
    [
        ("rollback", "gateway-api"),
        ("rollback", "gateway-api", "--to-revision", "2"),
        ("scale", "gateway-api", "--replicas", "0"),
        ("restart", "orchestrator"),
        ("restart", "postgres"),
        ("redis-restart",),
        ("autoscale", "gateway-api", "--min", "2", "--max", "4"),
        ("isolate", "gateway-api"),
    ],
    ids=lambda a: "-".join(a) if isinstance(a, tuple) else str(a),
)
def test_dry_run_sends_no_mutating_request_and_writes_nothing(
    sim: KubeSimulator, kenv: Env, cli: Callable[..., Run], argv: tuple[str, ...], tmp_path: Path
) -> None:
    """Promise 4 / reliability case 5's client side: the request log shows GETs only and the
    namespace is byte-identical; no journal record, no evidence directory."""
    before = state_of(sim)
    seq = last_seq(sim)
    r = cli("mitigate", *argv, "--dry-run", "--yes")
    assert r.rc == 0, r.err
    assert "dry run: nothing was changed" in r.out
    assert {x.method for x in sim.requests if x.seq > seq} == {"GET"}
    assert state_of(sim) == before
    assert kenv.records() == []
    assert not (kenv.state_dir / "evidence").exists()
