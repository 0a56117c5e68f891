"""somactl diagnose / status and the single-check commands through the real CLI (subprocess),
against the simulated Kubernetes API and the stand-ins. Every test states its exit code."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from somactl.incident.store import IncidentStore
from somactl.lab.kube import resources as R
from somactl.lab.kube.seed import NAMESPACE, bad_deploy
from somactl.ops.snapshot import verify
from tests.diagnose.conftest import Mini, base_env, context_for, start_sim

BACKEND_LIBS = {"kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def checks_by_id(data: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["id"]: c for c in data["checks"]}


def test_an_unknown_service_is_exit_2_naming_the_known_ones(mini: Mini) -> None:
    mini.sim.clear_requests()
    r = mini.somactl("diagnose", "gatway-api")
    assert r.rc == 2
    assert "error: unknown service 'gatway-api'" in r.err
    assert "did you mean gateway-api?" in r.err
    assert "known services: gateway-api, github, jira, kamachiq-service" in r.err
    assert r.out == ""
    # no network call was made (the stand-ins' own polling aside)
    assert [r for r in mini.sim.requests if not r.user_agent.startswith("Python-urllib")] == []


def test_help_imports_no_backend_library(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from somactl.app import run\n"
        "rc = run(['diagnose', '--help'])\n"
        "print('MODULES=' + json.dumps(sorted(sys.modules)))\n"
        "print('RC=%d' % rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=base_env(tmp_path),
        timeout=60,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert "RC=0" in lines
    assert "--snapshot DIR" in proc.stdout and "--contexts A,B" in proc.stdout
    modules = set(json.loads(next(x for x in lines if x.startswith("MODULES="))[8:]))
    loaded = {m.split(".")[0] for m in modules} & BACKEND_LIBS
    assert loaded == set()


def test_a_diagnosis_with_unconfigured_backends_reports_them_with_hints(mini: Mini) -> None:
    mini.contexts["mini"]["prometheus"] = f"http://127.0.0.1:{closed_port()}"
    mini.write_config()
    r = mini.somactl("-o", "json", "diagnose", "gateway-api")
    assert r.rc == 9
    env = r.json()
    assert (env["somactl"], env["command"], env["status"], env["exit_code"]) == (
        1,
        "diagnose",
        "partial",
        9,
    )
    checks = checks_by_id(env["data"])
    assert checks["k8s.pods"]["status"] == "ok"
    assert checks["k8s.pods"]["summary"] == "3/3 ready"
    assert checks["tools.health"]["status"] == "ok"
    assert checks["tools.rate-limit"]["status"] == "ok"
    for cid in ("db.connectivity", "db.activity", "db.slow-queries"):
        assert checks[cid]["status"] == "unknown"
        assert checks[cid]["summary"] == "not configured: postgres.dsn is not set"
        assert "export SOMACTL_PG_DSN" in checks[cid]["hint"]
    assert checks["redis.ping"]["summary"] == "not configured: redis.url is not set"
    assert checks["prom.error-rate"]["summary"].startswith(
        "could not run: prometheus: connection refused"
    )
    messages = [e["message"] for e in env["errors"]]
    pg_error = "postgres: postgres.dsn is not set (3 checks: db.connectivity, db.activity, "
    assert pg_error + "db.slow-queries)" in messages
    assert env["data"]["verdict"]["summary"].startswith("gateway-api: nothing wrong found, but")
    assert env["data"]["not_run"][0]["check"] == "git.recent-commits"
    # table output: the same, for people; the errors on stderr, one line per cause
    t = mini.somactl("diagnose", "gateway-api")
    assert t.rc == 9
    assert "k8s.pods" in t.out and "3/3 ready" in t.out
    assert t.err.count("error: postgres: postgres.dsn is not set") == 1
    assert "✓" not in t.err  # no ticks without a terminal


def test_yaml_envelope(mini: Mini) -> None:
    r = mini.somactl("-o", "yaml", "diagnose", "kamachiq-service")
    assert r.rc == 9
    doc = yaml.safe_load(r.out)
    assert doc["command"] == "diagnose"
    assert doc["data"]["service"] == "kamachiq-service"
    assert checks_by_id(doc["data"])["k8s.pods"]["summary"] == "2/2 ready"


def test_a_bad_deploy_is_critical_p0_with_a_rollback(mini: Mini) -> None:
    cluster = mini.sim.cluster
    cluster.patch(
        R.DEPLOYMENTS,
        NAMESPACE,
        "gateway-api",
        "strategic",
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        },
    )
    bad_deploy(cluster, NAMESPACE, "gateway-api")
    mini.sim.tick(40)
    r = mini.somactl("-o", "json", "diagnose", "gateway-api")
    assert r.rc == 11
    v = r.json()["data"]["verdict"]
    assert v["status"] == "critical"
    assert v["severity"]["level"] == "P0"
    assert v["severity"]["response"] == "Page immediately"
    assert v["scenario"]["title"] == "Gateway API Down"
    assert v["next_steps"][0]["command"] == "somactl mitigate rollback gateway-api"
    assert v["worst_checks"][0] == "k8s.pods"
    t = mini.somactl("diagnose", "gateway-api")
    assert t.rc == 11
    assert "Suggested severity: P0 Critical - Page immediately" in t.out
    assert "1. somactl mitigate rollback gateway-api" in t.out


def test_ticks_on_a_terminal_only(mini: Mini) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "somactl", "diagnose", "orchestrator", "--timeout", "8s"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=mini.env,
            timeout=60,
            check=False,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    err = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode("utf-8", "replace"))
    assert proc.returncode == 9
    assert "diagnosing orchestrator: 16 checks, deadline" in err
    assert "✓ k8s.pods" in err
    assert "? db.connectivity" in err
    assert "✓" not in proc.stdout.decode()


def test_watch_prints_one_json_document_per_round(mini: Mini) -> None:
    r = mini.somactl("-o", "json", "diagnose", "orchestrator", "--watch", "0.2s", "--count", "2")
    assert r.rc == 9
    docs = [json.loads(line) for line in r.out.splitlines()]
    assert len(docs) == 2
    assert all(d["data"]["service"] == "orchestrator" for d in docs)


def test_snapshot_writes_a_verifiable_evidence_bundle(mini: Mini, tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    r = mini.somactl("-o", "json", "diagnose", "gateway-api", "--snapshot", str(out))
    assert r.rc == 9
    bundle = Path(r.json()["data"]["snapshot"])
    assert bundle.parent == out
    assert bundle.name.startswith("diagnose-gateway-api-")
    manifest = json.loads((bundle / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"diagnosis.json", "checks/k8s.pods.json", "raw/k8s.pods/pods.json"} <= paths
    assert any(p.startswith("raw/k8s.logs/logs-gateway-api-") for p in paths)
    assert "raw/tools.recent/recent.json" in paths
    for f in manifest["files"]:
        data = (bundle / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert stat.S_IMODE((bundle / f["path"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    assert verify(bundle) == []
    (bundle / "diagnosis.json").write_text("{}")
    assert verify(bundle) == ["diagnosis.json"]


def test_contexts_fan_out_and_highlight_the_differences(mini: Mini, tmp_path: Path) -> None:
    other = start_sim()
    try:
        bad_deploy(other.cluster, NAMESPACE, "gateway-api")
        other.tick(40)
        mini.contexts["other"] = context_for(tmp_path, "other", other, mini.services)
        mini.write_config()
        r = mini.somactl("-o", "json", "diagnose", "gateway-api", "--contexts", "mini,other")
        assert r.rc == 10  # the other cluster's crash-looping surge pod: warnings
        data = r.json()["data"]
        assert set(data["contexts"]) == {"mini", "other"}
        diffs = {d["check"]: d for d in data["differences"]}
        assert diffs["k8s.pods"]["statuses"] == {"mini": "ok", "other": "warn"}
        assert diffs["k8s.rollout-history"]["statuses"]["other"] == "warn"
        assert "tools.health" not in diffs  # same stand-ins: no difference
        t = mini.somactl("diagnose", "gateway-api", "--contexts", "mini,other")
        assert t.rc == 10
        assert "== context mini ==" in t.out and "== context other ==" in t.out
        assert "Differences between contexts" in t.out
        bad = mini.somactl("diagnose", "gateway-api", "--contexts", "mini,nope")
        assert bad.rc == 3
        assert "unknown context 'nope' (known: mini, other)" in bad.err
    finally:
        other.stop()


def test_the_verdict_goes_on_the_open_incident_timeline(mini: Mini) -> None:
    state = Path(mini.env["SOMACTL_STATE_DIR"])
    with IncidentStore(state) as store:
        inc = store.declare(severity="P1", title="t", impact="i", service="gateway-api")
    r = mini.somactl("-o", "json", "diagnose", "gateway-api")
    assert r.rc == 9
    assert r.json()["data"]["incident"] == f"INC-{inc.num}"
    with IncidentStore(state) as store:
        events = store.timeline(inc.num, kinds=["check_run"])
    assert len(events) == 1
    assert events[0].summary == "diagnose gateway-api: unknown"
    assert events[0].details["verdict"]["exit_code"] == 9


def test_rollout_history_and_logs(mini: Mini) -> None:
    r = mini.somactl("rollout", "history", "gateway-api")
    assert r.rc == 0
    assert "* 3" in r.out and "1.9.0: streaming responses" in r.out
    j = mini.somactl("-o", "json", "rollout", "history", "gateway-api").json()
    assert j["data"]["checks"][0]["evidence"]["previous_revision"] == 2
    logs = mini.somactl("logs", "gateway-api", "--tail", "5")
    assert logs.rc == 0
    assert len(logs.out.splitlines()) == 5
    assert logs.err.startswith("Found 3 pods, using pod/gateway-api-")
    saved = mini.somactl("-o", "json", "logs", "gateway-api", "--all", "--tail", "3", "--save")
    assert saved.rc == 0
    where = Path(saved.json()["data"]["saved"])
    assert where.parent == Path(mini.env["SOMACTL_STATE_DIR"]) / "evidence"
    assert len([p for p in where.iterdir() if p.suffix == ".log"]) == 3
    assert verify(where) == []
    assert mini.somactl("logs", "nope").rc == 2


def test_tools_commands(mini: Mini) -> None:
    h = mini.somactl("tools", "health")
    assert h.rc == 0
    assert "github  healthy" in h.out.replace("   ", "  ")
    one = mini.somactl("-o", "json", "tools", "health", "notion")
    assert one.rc == 0
    assert [a["tool"] for a in one.json()["data"]["checks"][0]["evidence"]["adapters"]] == [
        "notion"
    ]
    recent = mini.somactl("-o", "json", "tools", "recent", "--limit", "5")
    assert recent.rc == 0
    assert len(recent.json()["data"]["invocations"]) == 5
    assert mini.somactl("tools", "recent", "--limit", "0").rc == 2
    ok = mini.somactl("tools", "rate-limit", "github")
    assert ok.rc == 0
    assert "core requests left" in ok.out
    mini.services.github.exhaust("core", 2400)
    limited = mini.somactl("tools", "rate-limit", "github")
    assert limited.rc == 6
    assert "error: GitHub rate limit exhausted until" in limited.err
    assert "(resource core)" in limited.err
    assert mini.somactl("tools", "health", "Bad;Name").rc == 2


def test_a_finding_about_another_service_is_shown_elsewhere_not_in_the_exit_code(
    mini: Mini,
) -> None:
    """GitHub's exhausted rate limit is github's (and tool-service's, which serves it) finding,
    not notion's: diagnose notion exits 0 and says where the finding is; diagnose github 11."""
    mini.services.github.exhaust("core", 2400)
    r = mini.somactl("-o", "json", "diagnose", "notion")
    env = r.json()
    checks = checks_by_id(env["data"])
    assert checks["tools.rate-limit"]["status"] == "critical"  # still run and shown
    adapters = [a["tool"] for a in checks["tools.health"]["evidence"]["adapters"]]
    assert adapters == ["notion"]  # its own health, not its neighbours'
    assert (r.rc, env["exit_code"], env["status"]) == (0, 0, "ok"), env["data"]["verdict"]
    v = env["data"]["verdict"]
    assert (v["status"], v["severity"], v["scenario"]) == ("ok", None, None)
    assert v["elsewhere"]["findings"][0]["check"] == "tools.rate-limit"
    assert v["summary"] == (
        "notion: all its checks ok | elsewhere: tools.rate-limit critical "
        "(see somactl diagnose github)"
    )
    t = mini.somactl("diagnose", "notion")
    assert t.rc == 0
    assert "elsewhere: tools.rate-limit critical (see somactl diagnose github)" in t.out
    assert "not notion's: not in its verdict or exit code" in t.out
    assert mini.somactl("diagnose", "github").rc == 11


def test_db_and_redis_commands_without_a_backend_say_which_setting(mini: Mini) -> None:
    db = mini.somactl("db", "pool")
    assert db.rc == 3
    assert "error: postgres: postgres.dsn is not set" in db.err
    assert "export SOMACTL_PG_DSN" in db.err
    rd = mini.somactl("redis", "info")
    assert rd.rc == 3
    assert "error: redis: redis.url is not set" in rd.err


def test_status_lists_every_service(mini: Mini) -> None:
    mini.contexts["mini"]["prometheus"] = f"http://127.0.0.1:{closed_port()}"
    mini.write_config()
    r = mini.somactl("-o", "json", "status")
    assert r.rc == 9  # no Prometheus: up/error rate/p95 unknown
    rows = {row["service"]: row for row in r.json()["data"]["services"]}
    assert rows["gateway-api"]["pods"] == "3/3"
    assert rows["postgres"]["pods"] == "1/1"
    assert rows["github"]["health"] == "healthy"
    assert set(rows) == {
        "gateway-api",
        "orchestrator",
        "kamachiq-service",
        "tool-service",
        "postgres",
        "redis",
        "github",
        "notion",
        "slack",
        "jira",
    }
    t = mini.somactl("status")
    assert t.rc == 9
    assert "gateway-api" in t.out and "3/3" in t.out


def test_a_zero_or_negative_watch_interval_is_a_usage_error(mini: Mini) -> None:
    assert mini.somactl("diagnose", "gateway-api", "--watch", "0s").rc == 2
    assert mini.somactl("diagnose", "gateway-api", "--long-running", "soon").rc == 2
    assert mini.somactl("diagnose", "gateway-api", "--contexts", ",").rc == 2


def test_library_retry_defaults_do_not_spend_the_budget(mini: Mini) -> None:
    """Every backend on a port that refuses connections: the Kubernetes client (~9 s of
    retries by default), redis-py (~5 s), the tools API client and prometheus-api-client are
    all configured without retries, so the diagnosis is over long before its 10 s deadline."""
    ports = {name: closed_port() for name in ("kube", "pg", "redis", "prom", "tools", "gh")}
    from somactl.lab.kube import write_kubeconfig

    kc = write_kubeconfig(mini.dir / "kc-refused", f"http://127.0.0.1:{ports['kube']}", NAMESPACE)
    mini.contexts["mini"] = {
        "kubeconfig": str(kc),
        "namespace": NAMESPACE,
        "postgres": {"dsn": f"host=127.0.0.1 port={ports['pg']} user=u dbname=d"},
        "redis": {"url": f"redis://127.0.0.1:{ports['redis']}/0"},
        "prometheus": f"http://127.0.0.1:{ports['prom']}",
        "tools-api": f"http://127.0.0.1:{ports['tools']}",
        "github": {"api": f"http://127.0.0.1:{ports['gh']}"},
    }
    mini.write_config()
    r = mini.somactl("-o", "json", "--timeout", "10s", "diagnose", "gateway-api")
    assert r.rc == 11  # refused Postgres and Redis ports: both down, critical
    assert r.seconds < 4.0, f"took {r.seconds:.1f}s"
    data = r.json()["data"]
    st = {c["id"]: c for c in data["checks"]}
    assert st["db.connectivity"]["signals"] == {"db_up": False}
    assert st["redis.ping"]["signals"] == {"redis_up": False}
    assert st["k8s.pods"]["status"] == "unknown"
    assert st["k8s.pods"]["error"].startswith("kubernetes: connection refused (127.0.0.1:")
    assert st["tools.health"]["error"] == (
        f"tools API: connection refused (http://127.0.0.1:{ports['tools']})"
    )
    assert (
        st["prom.error-rate"]["error"]
        == f"prometheus: connection refused (127.0.0.1:{ports['prom']})"
    )
    v = data["verdict"]
    # its database and cache are its dependencies: their being down is its diagnosis
    assert v["severity"]["level"] == "P0"
    assert v["severity"]["rule"]["id"] == "database-down"
    assert v["status"] == "critical"


def test_recent_commits_of_the_configured_repository(mini: Mini, tmp_path: Path) -> None:
    import shutil

    git = shutil.which("git")
    if git is None:
        from tests.helpers import missing

        missing("git is not installed (apt-get install -y git)")
    repo = tmp_path / "repo"
    genv = {
        **mini.env,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run([git, "init", "-q", str(repo)], check=True, env=genv)
    (repo / "f").write_text("x")
    subprocess.run([git, "-C", str(repo), "add", "f"], check=True, env=genv)
    subprocess.run(
        [git, "-C", str(repo), "commit", "-q", "-m", "raise the pool size (SOMA-9)"],
        check=True,
        env=genv,
    )
    r = mini.somactl("-o", "json", "diagnose", "gateway-api", env={"SOMACTL_GIT_REPO": str(repo)})
    assert r.rc == 9
    commits = checks_by_id(r.json()["data"])["git.recent-commits"]
    assert commits["status"] == "ok"
    assert commits["summary"].startswith("1 commit since 1 hour ago: ")
    assert commits["summary"].endswith(" raise the pool size (SOMA-9)")
    assert r.json()["data"]["not_run"] == []
    bad = mini.somactl(
        "-o", "json", "diagnose", "gateway-api", env={"SOMACTL_GIT_REPO": str(tmp_path)}
    )
    nogit = checks_by_id(bad.json()["data"])["git.recent-commits"]
    assert nogit["status"] == "unknown"
    assert nogit["error"].startswith(f"git: cannot read the log of {tmp_path}")
