"""runbooks.yaml: the shipped file loads; every kind of mistake is one `file:line: key: message`
line with exit 3 through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from somactl.app import run
from somactl.core.errors import ConfigError, UsageError
from somactl.runbook import load_runbook, parse_runbook, shipped_path
from somactl.runbook.loader import ENV_VAR

REPO = Path(__file__).resolve().parents[3]
SHIPPED_TEXT = (REPO / "runbooks.yaml").read_text(encoding="utf-8")


def line_of(text: str, line: str, start_after: str | None = None) -> int:
    lines = text.splitlines()
    first = lines.index(start_after) if start_after is not None else 0
    return lines.index(line, first) + 1


def mutate(old: str, new: str) -> str:
    assert SHIPPED_TEXT.count(old) >= 1, old
    return SHIPPED_TEXT.replace(old, new, 1)


def validate_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> tuple[int, str]:
    (tmp_path / "runbooks.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    rc = run(["runbook", "validate", "runbooks.yaml"])
    _, err = capsys.readouterr()
    return rc, err.splitlines()[0] if err else ""


# -- the shipped file --------------------------------------------------------------------------


def test_the_shipped_file_is_valid_and_complete() -> None:
    rb = load_runbook(REPO / "runbooks.yaml")
    assert list(rb.severities) == ["P0", "P1", "P2", "P3", "P4"]
    assert [s.name for s in rb.severities.values()] == [
        "Critical", "High", "Medium", "Low", "Planned"
    ]  # fmt: skip
    assert [s.response.seconds for s in rb.severities.values()] == [0, 900, 3600, 14400, None]
    assert [s.pagerduty_severity for s in rb.severities.values()] == [
        "critical", "critical", "error", "warning", "info"
    ]  # fmt: skip
    assert [s.updates.seconds if s.updates else None for s in rb.severities.values()] == [
        900, 1800, 3600, None, None
    ]  # fmt: skip
    assert {"gateway-api", "orchestrator", "kamachiq-service", "postgres", "redis"} <= set(
        rb.services
    )
    assert rb.services["postgres"].kind == "statefulset"
    assert {"github", "notion"} <= set(rb.tool_adapters())
    assert rb.services["github"].health == "/tools/github/health"
    assert rb.defaults.namespace == "somagent-production"
    assert rb.defaults.tools_api_url == "http://localhost:8003"
    assert set(rb.scenarios) == {
        "gateway-api-down", "database-performance", "tool-adapter-failures", "memory-leak",
        "redis-memory-pressure", "security-incident",
    }  # fmt: skip
    assert rb.scenarios["gateway-api-down"].title == "Gateway API Down"
    assert rb.ic_rule("P0") is not None and not rb.ic_rule("P0").self_ic  # type: ignore[union-attr]
    assert rb.ic_rule("P3") is not None and rb.ic_rule("P3").self_ic  # type: ignore[union-attr]
    assert str(rb.contact("database-admin").primary) == "Alice (@alice)"
    assert [p.id for p in rb.process] == [
        "detection", "declaration", "investigation", "mitigation", "communication",
        "resolution", "pir",
    ]  # fmt: skip
    assert rb.pir.due.seconds == 48 * 3600


def test_the_package_ships_the_repo_file() -> None:
    packaged = shipped_path()
    assert packaged.read_bytes() == (REPO / "runbooks.yaml").read_bytes()
    assert packaged.parent.name == "somactl"


def test_each_seed_query_is_carried_verbatim() -> None:
    rb = load_runbook(REPO / "runbooks.yaml")
    seeds = {q.seed for q in rb.queries.values()}
    assert seeds == {
        'up{job=~"gateway-api|orchestrator|kamachiq-service"}',
        'rate(http_requests_total{status=~"5.."}[5m])',
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))",
        'rate(gateway_requests_total{status="500"}[5m])',
        "pg_stat_activity_count",
        "redis_memory_used_bytes / redis_memory_max_bytes",
    }
    assert rb.query("error-rate").for_job("gateway-api") == (
        'sum(rate(http_requests_total{job="gateway-api",status=~"5.."}[5m])) / '
        'sum(rate(http_requests_total{job="gateway-api"}[5m]))'
    )
    assert rb.query("error-rate").level(0.2) == "critical"
    assert rb.query("error-rate").level(0.02) == "warn"
    assert rb.query("availability").level(1.0) == "ok"
    assert rb.query("availability").level(0.0) == "critical"


def test_accessors_name_the_known_values() -> None:
    rb = load_runbook(REPO / "runbooks.yaml")
    with pytest.raises(UsageError) as exc:
        rb.service("gatway-api")
    assert exc.value.message == "unknown service 'gatway-api'"
    assert "did you mean gateway-api?" in exc.value.hint
    assert "postgres" in exc.value.hint
    with pytest.raises(UsageError):
        rb.scenario("nope")
    assert rb.severity("p1").name == "High"


def test_loading_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "runbooks.yaml"
    path.write_text(SHIPPED_TEXT, encoding="utf-8")
    first = load_runbook(path)
    assert load_runbook(path) is first
    path.write_text(SHIPPED_TEXT.replace("title: Incident Response Runbook", "title: Other"))
    assert load_runbook(path).title == "Other"


# -- errors: one line, file:line: key.path: message, exit 3 ----------------------------------


def test_missing_file_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc = run(["runbook", "validate", "nope/runbooks.yaml"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 3
    assert err[0] == "error: nope/runbooks.yaml: runbooks file not found"
    assert err[1].startswith("hint: ")


def test_yaml_syntax_error_gives_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = mutate("    job: gateway-api\n", "    job: gateway-api: oops\n")
    line = line_of(text, "    job: gateway-api: oops")
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, text)
    assert rc == 3
    assert first == (
        f"error: runbooks.yaml:{line}: YAML syntax error: mapping values are not allowed in "
        "this context"
    )


def test_unknown_key_is_named_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = mutate("    job: gateway-api\n", "    job: gateway-api\n    jobs: gateway-api\n")
    line = line_of(text, "    jobs: gateway-api")
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, text)
    assert rc == 3
    assert first.startswith(
        f"error: runbooks.yaml:{line}: services.gateway-api.jobs: unknown key 'jobs' "
        "(expected one of: title, kind, workload, namespace, job, "
    )


def test_wrong_type_is_pydantics_message_at_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = mutate("    job: gateway-api\n", "    job: 42\n")
    line = line_of(text, "    job: 42")
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, text)
    assert rc == 3
    assert first == (
        f"error: runbooks.yaml:{line}: services.gateway-api.job: Input should be a valid string"
    )


def test_dangling_reference_names_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = "      - {title: Review recent deployments, check: k8s.rollout-history}"
    text = mutate(old, old.replace("k8s.rollout-history", "k8s.rollout-histroy"))
    line = line_of(text, old.replace("k8s.rollout-history", "k8s.rollout-histroy"))
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, text)
    assert rc == 3
    assert first.startswith(
        f"error: runbooks.yaml:{line}: scenarios.gateway-api-down.steps[1].check: "
        "unknown check 'k8s.rollout-histroy' (known: "
    )


def test_missing_required_key_points_at_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = mutate("    job: gateway-api\n", "")
    line = line_of(text, "  gateway-api:", start_after="services:")
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, text)
    assert rc == 3
    assert first == f"error: runbooks.yaml:{line}: services.gateway-api.job: required key missing"


def test_version_is_required_and_must_be_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, mutate("version: 1", "version: 2"))
    assert rc == 3
    line = line_of(SHIPPED_TEXT, "version: 1")
    assert first == f"error: runbooks.yaml:{line}: version: Input should be 1"
    rc, first = validate_cli(tmp_path, monkeypatch, capsys, mutate("version: 1\n", ""))
    assert rc == 3
    assert first.endswith(": version: required key missing")


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "  P0:\n    name: Critical\n",
            "  P0:\n    name: Critical\n    name: Crit\n",
            "severities.P0.name",
            "duplicate key 'name'",
        ),
        (
            "      when: {signal: p95_seconds, op: gt, value: 5}",
            "      when: {signal: p95_seconds, op: lt, value: 5}",
            "classification.rules[7].when.op",
            "lt on p95_seconds (worse: higher) would let a worse value lower the severity; "
            "a rule may use gt, ge here",
        ),
        (
            "      when: {signal: p95_seconds, op: gt, value: 5}",
            "      when: {signal: p95_secs, op: gt, value: 5}",
            "classification.rules[7].when.signal",
            "unknown signal 'p95_secs' (known: ",
        ),
        (
            "      when: {signal: p95_seconds, op: gt, value: 5}",
            "      when: {signal: p95_seconds, op: gt}",
            "classification.rules[7].when",
            "gt needs a value",
        ),
        (
            "      when: {signal: adapter_failure_ratio, op: gt, value: 0.5}",
            "      when: {signal: adapter_failure_ratio, op: gt, value: 50}",
            "classification.rules[8].when.value",
            "value 50.0 is outside 0..1 for ratio signal adapter_failure_ratio",
        ),
        (
            "        Title: {title}\n",
            "        Title: {titel}\n",
            "communication.templates.declaration.text",
            "unknown placeholder {titel} (known: ",
        ),
        (
            "        Title: {title}\n",
            "        Title: {title.__class__}\n",
            "communication.templates.declaration.text",
            "invalid template: placeholder {title.__class__} is not a plain lower-case name",
        ),
        (
            "    queries: [availability, error-rate, p95-latency, gateway-500-rate]",
            "    queries: [availability, error-rate, p95-latency, gateway-5xx-rate]",
            "services.gateway-api.queries[3]",
            "unknown query 'gateway-5xx-rate' (known: ",
        ),
        (
            "    applies_to: [tool-adapter]\n    command: curl {tools_api_url}/tools/{tool}/health",
            "    applies_to: [deployment]\n    command: curl {tools_api_url}/tools/{tool}/health",
            "services.github.checks[0]",
            "check tools.health applies to deployment, not tool-adapter",
        ),
        (
            "    depends_on: [postgres, redis]\n  orchestrator:",
            "    depends_on: [postgres, rediss]\n  orchestrator:",
            "services.gateway-api.depends_on[1]",
            "unknown service 'rediss' (known: ",
        ),
        (
            "    depends_on: [postgres, redis]\n  orchestrator:",
            "    depends_on: [postgres, gateway-api]\n  orchestrator:",
            "services.gateway-api.depends_on[1]",
            "gateway-api cannot depend on itself",
        ),
    ],
)
def test_semantic_errors_name_key_and_line(old: str, new: str, path: str, message: str) -> None:
    text = mutate(old, new)
    with pytest.raises(ConfigError) as exc:
        parse_runbook(text)
    first = exc.value.message
    assert first.startswith("runbooks.yaml:")
    _, line, rest = first.split(":", 2)
    assert rest.startswith(f" {path}") and message in rest, first
    # the line named holds the key (or its parent, for missing keys)
    key = path.rsplit(".", 1)[-1].split("[", maxsplit=1)[0]
    assert (
        key in text.splitlines()[int(line) - 1] or new.strip() in text.splitlines()[int(line) - 1]
    ), (line, first)


def test_several_errors_report_the_first_and_count_the_rest() -> None:
    text = mutate("    job: gateway-api\n", "    job: 1\n").replace(
        "    port: 8001\n", "    port: x\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_runbook(text)
    assert exc.value.message.endswith("(and 1 more)")
    assert "services.gateway-api.job" in exc.value.message
    assert "services.orchestrator.port" in exc.value.hint


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_runbook("- 1\n- 2\n", source="x.yaml")
    assert exc.value.message == "x.yaml:1: expected a mapping with `version: 1` at the top level"
    with pytest.raises(ConfigError):
        parse_runbook("", source="x.yaml")


def test_env_and_flag_override_the_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(SHIPPED_TEXT.replace("title: Incident Response Runbook", "title: Env one"))
    monkeypatch.setenv(ENV_VAR, str(other))
    assert load_runbook().title == "Env one"
    assert run(["-o", "json", "runbook", "show"]) == 0
    assert '"title": "Env one"' in capsys.readouterr().out
    flag = tmp_path / "flag.yaml"
    flag.write_text(SHIPPED_TEXT.replace("title: Incident Response Runbook", "title: Flag one"))
    assert run(["--runbooks", str(flag), "-o", "json", "runbook", "show"]) == 0
    assert '"title": "Flag one"' in capsys.readouterr().out
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.yaml"))
    assert run(["runbook", "validate"]) == 3
    assert f"{tmp_path / 'missing.yaml'}: runbooks file not found" in capsys.readouterr().err


def test_anchors_and_aliases_are_allowed() -> None:
    app_checks = "[k8s.pods, k8s.logs, k8s.rollout-history, prom.error-rate, prom.p95-latency]"
    text = mutate(f"    checks: {app_checks}\n", f"    checks: &app_checks {app_checks}\n")
    text = text.replace(f"    checks: {app_checks}\n", "    checks: *app_checks\n", 1)
    assert "*app_checks" in text
    rb = parse_runbook(text)
    assert rb.services["kamachiq-service"].checks == rb.services["orchestrator"].checks


def test_settings_defaults_use_the_config_layer_keys() -> None:
    rb = load_runbook(REPO / "runbooks.yaml")
    assert rb.settings_defaults() == {
        "namespace": "somagent-production",
        "prometheus.url": "http://prometheus.somagent.ai",
        "tools.url": "http://localhost:8003",
        "github.url": "https://api.github.com",
    }
