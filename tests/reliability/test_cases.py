"""The reliability cases earlier tests did not cover: 20, 27, 28, 34 and 35
(shared/reference/reliability-cases.md), against the session's lab behind the fault proxies.

Every run is also scanned for the lab's real secrets (tests/reliability/conftest.py), and after
each test nothing changed or was lost (the API server's request log, planted Postgres sessions
and Redis keys).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from somactl.lab.kube import write_kubeconfig
from tests.reliability.conftest import CHECKS, GATEWAY_JUDGED, NAMESPACE, Faulted, Run
from tests.reliability.httpfault import HttpFault, answer_github_exhausted

pytestmark = pytest.mark.integration

SLACK = 0.3
# a run with unanswered checks exits 9 unless an answered check found more (ops/verdict.py):
# the session's lab may still carry an earlier scenario's errors in its 5-minute windows
PARTIAL_OR_WORSE = {"ok": 9, "warn": 10, "critical": 11}
RANKED = {"ok", "warn", "critical", "unknown"}


def partial_rc(statuses: dict[str, str], unanswered: set[str]) -> int:
    """The exit code a diagnosis of gateway-api with `unanswered` checks unknown must have: the
    worst, over partial, among the others it is judged by (GATEWAY_JUDGED)."""
    answered = {s for cid, s in statuses.items() if cid not in unanswered}
    assert answered and "unknown" not in answered, statuses  # the other backends all answered
    assert unanswered & GATEWAY_JUDGED, unanswered  # one of its own: at least partial
    judged = {s for cid, s in statuses.items() if cid not in unanswered and cid in GATEWAY_JUDGED}
    return max(PARTIAL_OR_WORSE[s] for s in judged)


def table_statuses(run: Run) -> dict[str, str]:
    """check id -> status from a diagnose table's rows."""
    rows = [ln.split() for ln in run.out.splitlines() if ln[:1].isalpha() and " " in ln]
    # the table says WARN / CRITICAL in capitals (ui/findings.py LABEL), ok / unknown in lower
    return {
        r[0]: r[1].lower() for r in rows if len(r) > 1 and "." in r[0] and r[1].lower() in RANKED
    }


# -- 20: db pool against a blackholed Postgres ---------------------------------------------------


def test_case20_db_pool_against_a_blackholed_postgres_fails_at_the_deadline(
    world: Faulted,
) -> None:
    proxy = world.proxies["postgres"]
    proxy.mode = "blackhole"
    where = f"oncall@127.0.0.1:{proxy.port}/somagent"
    table, debug, as_json = world.together(
        ("--timeout", "5s", "db", "pool"),
        ("--debug", "--timeout", "5s", "db", "pool"),
        ("-o", "json", "--timeout", "5s", "db", "pool"),
    )
    for run in (table, debug, as_json):
        assert run.rc == 6, str(run)
        assert 4.5 <= run.seconds <= 5 + SLACK, str(run)  # it waited for the deadline, no more
        assert f"error: postgres: no response within 5s ({where})" in run.err, str(run)
    assert table.err.count("hint: ") == 1
    envelope = as_json.json()
    assert envelope["exit_code"] == 6 and envelope["status"] == "error"
    assert envelope["errors"][0]["message"].startswith(f"postgres: no response within 5s ({where})")
    # the password lives in a 0600 file: the scan in Faulted.somactl found it nowhere (--debug
    # included); the proxy saw the connection attempts
    assert proxy.accepted >= 3


# -- 27, 28: GitHub's primary and secondary rate limits ------------------------------------------


@pytest.fixture
def github(world: Faulted) -> Iterator[tuple[Faulted, HttpFault, dict[str, str]]]:
    """An HTTP front between somactl and the lab's GitHub stand-in, to answer what GitHub
    answers when limited (the stand-in's /rate_limit, like GitHub's, never is)."""
    with HttpFault(world.lab.info.github_url) as front:
        yield world, front, {"SOMACTL_GITHUB_URL": front.url}


def _rate_limit_runs(world: Faulted, env: dict[str, str], timeout: str = "10s") -> list[Run]:
    return [
        world.somactl("--timeout", timeout, "tools", "rate-limit", "github", env=env),
        world.somactl("--debug", "--timeout", timeout, "tools", "rate-limit", "github", env=env),
        world.somactl("-o", "json", "--timeout", timeout, "tools", "rate-limit", "github", env=env),
    ]


def test_case27_exhausted_github_limit_fails_fast_naming_the_reset(
    github: tuple[Faulted, HttpFault, dict[str, str]],
) -> None:
    world, front, env = github
    reset = int(time.time()) + 40 * 60
    answer_github_exhausted(front, reset)
    until = datetime.fromtimestamp(reset, tz=UTC).strftime("%H:%MZ")
    runs = _rate_limit_runs(world, env)
    said = re.compile(
        rf"GitHub rate limit exhausted until {until} \(in \d+m(\d+s)?\) \(resource core\)"
    )
    for run in runs:
        # the single-check command: exhausted means the caller cannot proceed (unreachable)
        assert run.rc == 6, str(run)
        assert run.seconds < 5, str(run)  # no sleeping 40 minutes, no retry
    for run in runs[:2]:
        assert said.search(run.err), str(run)
    # -o json: the envelope says it (as for a /rate_limit answering 200 with nothing left)
    assert runs[2].json()["exit_code"] == 6
    assert said.fullmatch(runs[2].json()["errors"][0]["message"]), str(runs[2])
    diag = world.somactl("-o", "json", "--timeout", "10s", "diagnose", "github", env=env)
    rate = diag.checks()["tools.rate-limit"]
    # GitHub answered: an exhausted limit is a critical finding, not a check that could not run
    assert rate["status"] == "critical", str(diag)
    assert said.fullmatch(rate["summary"]), str(diag)
    assert diag.rc == 11, str(diag)
    # one request per command: 3 rate-limit reads and the diagnosis's one
    assert len(front.requests) == 4
    token = world.secrets[2]
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in front.requests)


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [(429, None, "60s"), (403, None, "60s"), (429, "30", "30s")],
    ids=["429-no-headers", "403-secondary", "429-retry-after-30"],
)
def test_case28_secondary_limit_is_never_a_tight_loop(
    github: tuple[Faulted, HttpFault, dict[str, str]],
    status: int,
    retry_after: str | None,
    wait: str,
) -> None:
    world, front, env = github
    front.answer(
        status,
        headers={"retry-after": retry_after} if retry_after else {},
        body={
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
            "before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
        },
    )
    # a budget of 2 minutes would allow waiting: a read for a person still never waits, never
    # loops, and says how long GitHub wants left alone
    runs = _rate_limit_runs(world, env, timeout="120s")
    for run in runs:
        assert run.rc == 6, str(run)
        assert run.seconds < 5, str(run)
        assert f"GitHub: secondary rate limit (HTTP {status})" in run.err, str(run)
        assert f"wait at least {wait} before the next GitHub call" in run.err, str(run)
        assert "credentials" not in run.err, str(run)  # a 403 secondary limit is not a bad token
    diag = world.somactl("-o", "json", "--timeout", "10s", "diagnose", "github", env=env)
    assert "secondary rate limit" in diag.checks()["tools.rate-limit"]["summary"], str(diag)
    assert len(front.requests) == len(runs) + 1  # exactly one request per command


# -- 34: a slow-dripping Kubernetes API ------------------------------------------------------------


def test_case34_dripping_kubernetes_api_the_deadline_fires_and_the_rest_is_printed(
    world: Faulted,
) -> None:
    proxy = world.proxies["kube"]
    proxy.mode = "drip"  # every answer byte 200 ms apart: no per-read timeout ever fires
    table, as_json = world.together(
        ("--timeout", "6s", "diagnose", "gateway-api"),
        ("-o", "json", "--timeout", "6s", "diagnose", "gateway-api"),
    )
    assert table.rc == partial_rc(table_statuses(table), CHECKS["kube"]), str(table)
    assert as_json.rc == partial_rc(as_json.statuses(), CHECKS["kube"]), str(as_json)
    for run in (table, as_json):
        assert 5.7 <= run.seconds <= 6 + SLACK, str(run)
    checks = as_json.checks()
    for cid in CHECKS["kube"]:
        assert checks[cid]["status"] == "unknown"
        assert checks[cid]["summary"] == "no answer within the 6s deadline"
    rows = {ln.split()[0]: ln for ln in table.out.splitlines() if ln[:1].isalpha() and " " in ln}
    shown = table_statuses(table)
    for cid in ("db.connectivity", "redis.ping", "prom.error-rate", "tools.health"):
        assert shown[cid] != "unknown", table.out  # the other backends' results are printed
    assert "no answer within the 6s deadline" in rows["k8s.pods"], table.out
    assert proxy.accepted >= 2


# -- 35: Kubernetes down, Postgres and Redis fine --------------------------------------------------


def test_case35_kubernetes_down_is_a_degraded_report_within_budget(
    world: Faulted, tmp_path: object
) -> None:
    with socket.socket() as probe:  # a port that refuses: the API server is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        kubeconfig = write_kubeconfig(
            world.dir / "kubeconfig-down", f"http://127.0.0.1:{port}", NAMESPACE
        )
        env = {"SOMACTL_KUBECONFIG": str(kubeconfig)}
        table, as_json = world.together(
            ("--timeout", "10s", "diagnose", "gateway-api"),
            ("-o", "json", "--timeout", "10s", "diagnose", "gateway-api"),
            env=env,
        )
    assert table.rc == partial_rc(table_statuses(table), CHECKS["kube"]), str(table)
    assert as_json.rc == partial_rc(as_json.statuses(), CHECKS["kube"]), str(as_json)
    for run in (table, as_json):
        assert run.seconds < 7, str(run)  # refused at once: well inside the 10 s budget
    checks = as_json.checks()
    for cid in CHECKS["kube"]:
        assert checks[cid]["status"] == "unknown"
        assert f"kubernetes: connection refused (127.0.0.1:{port})" in checks[cid]["summary"]
    db, ping = checks["db.connectivity"], checks["redis.ping"]
    assert db["status"] == "ok" and db["summary"].startswith("SELECT 1 in "), db
    assert ping["status"] == "ok" and ping["summary"].startswith("PONG in "), ping
    errors = as_json.json()["errors"]
    assert len(errors) == 1 and errors[0]["message"].startswith("kubernetes: connection refused")
    assert "kubernetes: connection refused" in table.out + table.err
