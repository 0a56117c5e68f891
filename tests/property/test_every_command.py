"""Reliability case 36: random arguments to every command, in-process, with no backend reachable.

The world: a simulated Kubernetes API in this process (its request log is the witness), every
other setting on a closed loopback port (Postgres, Redis, Prometheus, the tools API, GitHub,
Slack, PagerDuty, Statuspage), sentinel secrets planted in 0600 files (Postgres, Redis, GitHub)
and in environment variables (Slack webhook, PagerDuty routing key, Statuspage key), one open
incident in the store, and stdin a pipe that says `yes` (piped input is never consent).

For every command of the real Typer tree (tests/property/argv.py), whatever the arguments:
- the exit code is a documented one (0-11);
- no traceback (without --debug) and never the last-resort "internal error" handler;
- no mutating request reaches the API server (no consent flag is ever generated);
- a usage error (exit 2) made no network call at all;
- every request path the API server saw is made of DNS-1123 names (no injection got through);
- no planted secret in stdout or stderr, nor in any file the command wrote.

Deterministic (derandomized, no example database) and bounded (about a minute in all).
"""

from __future__ import annotations

import io
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from somactl.lab.kube import Cluster, KubeSimulator, write_kubeconfig
from somactl.lab.kube.seed import NAMESPACE, seed
from tests.property.argv import EXCLUDED, argv_for, leaves

DOCUMENTED = set(range(12))
PG_SECRET = "pg-S3NTINEL-pass-4qzx"
REDIS_SECRET = "redis-S3NTINEL-pass-8wvu"
GITHUB_SECRET = "ghp_S3NTINELgithubtoken00000000000042"
SLACK_SECRET = "T0SENT/B0SENT/S3NTINELslackpath77"
PAGERDUTY_SECRET = "pd-S3NTINEL-routing-key-5510"
STATUSPAGE_SECRET = "sp-S3NTINEL-api-key-9931"
SECRETS = (
    PG_SECRET,
    REDIS_SECRET,
    GITHUB_SECRET,
    SLACK_SECRET,
    PAGERDUTY_SECRET,
    STATUSPAGE_SECRET,
)
DNS_PATH = re.compile(r"^/[A-Za-z0-9./_-]*$")
LEAVES = list(leaves())
RUNNABLE = [(path, cmd) for path, cmd in LEAVES if path not in EXCLUDED]
# examples per command (~65 commands): about 20 s on an idle 2-core machine, 60 s on a busy one;
# PROP_EXAMPLES=150 for a deeper search (about 2.5 min)
EXAMPLES = int(os.environ.get("PROP_EXAMPLES", "15"))


@dataclass
class World:
    root: Path
    cwd: Path
    sim: KubeSimulator
    env: dict[str, str]
    closed: list[socket.socket]


def _closed_port() -> tuple[socket.socket, int]:
    """A loopback port that refuses connections (bound, never listening) and stays reserved."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def _secret_file(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from somactl.incident.store import IncidentStore

    root = tmp_path_factory.mktemp("property")
    cwd = root / "a" / "b" / "c" / "d" / "e"  # `../../` and friends stay inside root
    cwd.mkdir(parents=True)
    (cwd / "empty.yaml").write_text("")
    (cwd / "bad.yaml").write_text("services: [unclosed\n")
    (cwd / "runbooks.yaml").write_text((Path(__file__).parents[2] / "runbooks.yaml").read_text())
    cluster = Cluster()
    seed(cluster, end_at=time.time() - 600)
    sim = KubeSimulator(cluster).start()
    closed = [_closed_port() for _ in range(8)]
    ports = [p for _, p in closed]
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    context = {
        "kubeconfig": str(write_kubeconfig(root / "kubeconfig", sim.url, NAMESPACE)),
        "namespace": NAMESPACE,
        "postgres": {
            "dsn": f"host=127.0.0.1 port={ports[0]} user=oncall dbname=somagent",
            "password": {"file": _secret_file(secrets / "pg", PG_SECRET)},
        },
        "redis": {
            "url": f"redis://oncall@127.0.0.1:{ports[1]}/0",
            "password": {"file": _secret_file(secrets / "redis", REDIS_SECRET)},
        },
        "prometheus": f"http://127.0.0.1:{ports[2]}",
        "tools-api": f"http://127.0.0.1:{ports[3]}",
        "github": {
            "api": f"http://127.0.0.1:{ports[4]}",
            "token": {"file": _secret_file(secrets / "github", GITHUB_SECRET)},
        },
        "notifications": {
            "slack-webhook": {"env": "PROP_SLACK_WEBHOOK"},
            "pagerduty-url": f"http://127.0.0.1:{ports[5]}",
            "pagerduty-routing-key": {"env": "PROP_PD_KEY"},
            "statuspage": {
                "api": f"http://127.0.0.1:{ports[6]}",
                "page-id": "prop",
                "api-key": {"env": "PROP_SP_KEY"},
            },
        },
    }
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump({"version": 1, "current-context": "prop", "contexts": {"prop": context}})
    )
    config.chmod(0o600)
    (root / "home").mkdir()
    env = {
        "SOMACTL_CONFIG": str(config),
        "SOMACTL_STATE_DIR": str(root / "state"),
        "SOMACTL_ACTOR": "property-tester",
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
        "NO_COLOR": "1",
        "COLUMNS": "120",
        "PROP_SLACK_WEBHOOK": f"http://127.0.0.1:{ports[7]}/services/{SLACK_SECRET}",
        "PROP_PD_KEY": PAGERDUTY_SECRET,
        "PROP_SP_KEY": STATUSPAGE_SECRET,
        # the libraries' own variables, in case anything falls back to them
        "PGPASSWORD": PG_SECRET,
        "REDISCLI_AUTH": REDIS_SECRET,
        "GITHUB_TOKEN": GITHUB_SECRET,
    }
    with IncidentStore(root / "state") as store:
        store.declare(
            severity="P2",
            title="property world",
            impact="none",
            service="gateway-api",
            actor="property-tester",
            now=datetime.now(UTC),
        )
    try:
        yield World(root, cwd, sim, env, [s for s, _ in closed])
    finally:
        sim.stop()
        for s in (s for s, _ in closed):
            s.close()


_CLEARED = (
    "KUBECONFIG",
    "SOMACTL_CONTEXT",
    "SOMACTL_NAMESPACE",
    "SOMACTL_KUBECONFIG",
    "SOMACTL_KUBE_CONTEXT",
    "SOMACTL_PG_DSN",
    "SOMACTL_REDIS_URL",
    "SOMACTL_TOOLS_URL",
    "SOMACTL_PROMETHEUS_URL",
    "SOMACTL_GITHUB_URL",
    "SOMACTL_RUNBOOKS",
    "SOMACTL_DEBUG",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
)


@pytest.fixture
def inside(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for k, v in world.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(world.cwd)
    return world


def check_one(world: World, capsys: pytest.CaptureFixture[str], argv: list[str]) -> int:
    from somactl.app import run

    seen = world.sim.requests
    last = seen[-1].seq if seen else 0
    capsys.readouterr()
    sys.stdin = io.StringIO("yes\ny\n")  # a pipe saying yes: never consent
    try:
        t0 = time.monotonic()
        rc = run(argv)
        wall = time.monotonic() - t0
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    new = [r for r in world.sim.requests if r.seq > last]
    shown = f"argv={argv!r}\nrc={rc}\nstdout={out[-1500:]!r}\nstderr={err[-1500:]!r}"
    assert rc in DOCUMENTED, shown
    if "--debug" not in argv:
        assert "Traceback" not in out + err, shown
    assert not re.search(r"^error: internal error", err, re.M), shown
    mutating = [f"{r.method} {r.path}" for r in new if r.mutating]
    assert not mutating, f"mutating requests without consent: {mutating}\n{shown}"
    if rc == 2:
        assert not new, f"a usage error made {len(new)} API calls\n{shown}"
    bad_paths = [r.path for r in new if not DNS_PATH.match(r.path) or ".." in r.path]
    assert not bad_paths, f"unvalidated names reached the API: {bad_paths}\n{shown}"
    for secret in SECRETS:
        assert secret not in out + err, f"secret {secret[:8]}... printed\n{shown}"
    assert wall < 30, f"took {wall:.1f}s\n{shown}"
    return rc


# What hypothesis found here once; kept as fixed examples (each was a product fix).
FOUND = [
    # a blank namespace reached the API server as /namespaces/%20/...
    (["status", "-n", " "], 2),
    (["rollout", "history", "gateway-api", "-n", " "], 2),
    (["-n", "Prod_1", "diagnose", "gateway-api"], 2),
    # a file given as the lab's --dir was an internal NotADirectoryError
    (["lab", "break", "--dir=runbooks.yaml", "memory-leak"], 2),
    (["lab", "status", "--dir", "a\x00b"], 2),
]


@pytest.mark.parametrize(("argv", "code"), FOUND, ids=[" ".join(a) for a, _ in FOUND])
def test_what_hypothesis_found(
    inside: World, capsys: pytest.CaptureFixture[str], argv: list[str], code: int
) -> None:
    assert check_one(inside, capsys, argv) == code


# Every command that can mutate, with arguments that get it to its plan: without --yes and with
# a pipe saying "yes" it must stop at consent (4) or earlier (6: its backend is unreachable here;
# 0: nothing to do), and the API server sees no write.
CONSENT_RUNS: list[tuple[list[str], int]] = [
    (["mitigate", "rollback", "gateway-api"], 4),
    (["-o", "json", "mitigate", "rollback", "gateway-api"], 4),
    (["mitigate", "scale", "gateway-api", "--replicas", "5"], 4),
    (["mitigate", "scale", "gateway-api", "--replicas", "0"], 4),
    (["mitigate", "restart", "gateway-api"], 4),
    (["mitigate", "redis-restart"], 4),
    (["mitigate", "autoscale", "gateway-api", "--min", "3", "--max", "10"], 4),
    (["mitigate", "isolate", "gateway-api"], 4),
    (["mitigate", "unisolate", "gateway-api"], 0),
    (["mitigate", "kill-queries", "--older-than", "5m"], 6),
    (["mitigate", "redis-flush"], 6),
    (["mitigate", "circuit-breaker", "enable", "github"], 6),
    (["runbook", "run", "gateway-api-down", "gateway-api"], 4),
]


@pytest.mark.parametrize(("argv", "code"), CONSENT_RUNS, ids=[" ".join(a) for a, _ in CONSENT_RUNS])
def test_piped_yes_is_never_consent(
    inside: World, capsys: pytest.CaptureFixture[str], argv: list[str], code: int
) -> None:
    reads = len(inside.sim.requests)
    assert check_one(inside, capsys, argv) == code
    if code == 4:
        assert len(inside.sim.requests) > reads  # it did read live state for its plan


def test_every_command_with_a_consent_flag_is_in_the_consent_runs() -> None:
    with_yes = {path for path, cmd in LEAVES if any(p.name == "yes" for p in cmd.params)}
    covered = {tuple(w for w in argv if w not in ("-o", "json"))[:2] for argv, _ in CONSENT_RUNS}
    assert with_yes <= covered, sorted(with_yes - covered)


def test_the_tree_is_walked_and_exclusions_are_real_commands() -> None:
    paths = {path for path, _ in LEAVES}
    assert set(EXCLUDED) <= paths
    assert len(RUNNABLE) >= 50  # every group loaded, not just the registry's names
    for group in ("mitigate", "incident", "db", "tools", "lab", "runbook"):
        assert any(p[0] == group and len(p) == 2 for p in paths), group


@pytest.mark.parametrize("path", [p for p, _ in LEAVES if p in EXCLUDED], ids=" ".join)
def test_excluded_commands_still_answer_help(
    inside: World, capsys: pytest.CaptureFixture[str], path: tuple[str, ...]
) -> None:
    check_one(inside, capsys, [*path, "--help"])


@pytest.mark.parametrize(("path", "command"), RUNNABLE, ids=[" ".join(p) for p, _ in RUNNABLE])
def test_random_arguments(
    inside: World, capsys: pytest.CaptureFixture[str], path: tuple[str, ...], command: object
) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(argv=argv_for(path, command))  # type: ignore[arg-type]
    def prop(argv: list[str]) -> None:
        check_one(inside, capsys, argv)

    prop()
    assert_no_secret_in_files(inside)


def assert_no_secret_in_files(world: World) -> None:
    """Whatever the runs wrote (the state dir, the journal, snapshots, files under the working
    directory) holds no planted secret."""
    secret_files = {world.root / "secrets" / n for n in ("pg", "redis", "github")}
    for f in world.root.rglob("*"):
        if f.is_file() and f not in secret_files:
            data = f.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    argv=st.lists(
        st.one_of(
            st.sampled_from(
                ["mitigate", "incident", "db", "--", "-o", "json", "rollback", "gateway-api"]
            ),
            st.text(max_size=8),
        ),
        max_size=5,
    )
)
def test_random_words_at_the_root(
    inside: World, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    check_one(inside, capsys, argv)
