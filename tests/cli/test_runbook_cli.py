"""`somactl runbook ...` and `somactl severity ...` end to end: output, envelope, exit codes."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from somactl import commands
from somactl.app import run
from somactl.commands.runbook import SECTIONS

REPO = Path(__file__).resolve().parents[2]
SOMACTL = Path(sys.executable).parent / "somactl"


def json_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    rc = run(["-o", "json", *argv])
    out = capsys.readouterr().out
    return rc, json.loads(out)


# -- runbook -----------------------------------------------------------------------------------


def test_validate_prints_one_ok_line_with_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["runbook", "validate"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("ok: ")
    assert "10 services, 6 queries, 6 scenarios, 19 rules" in out[0]


def test_validate_json_envelope(capsys: pytest.CaptureFixture[str]) -> None:
    rc, env = json_run(capsys, "runbook", "validate", str(REPO / "runbooks.yaml"))
    assert rc == 0
    assert env["somactl"] == 1 and env["command"] == "runbook validate"
    assert env["status"] == "ok" and env["exit_code"] == 0
    assert env["data"]["valid"] is True
    assert env["data"]["counts"]["scenarios"] == 6


def test_validate_error_is_exit_3_in_the_envelope_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "runbooks.yaml"
    bad.write_text((REPO / "runbooks.yaml").read_text().replace("version: 1", "version: one"))
    rc = run(["-o", "json", "runbook", "validate", str(bad)])
    out, err = capsys.readouterr()
    env = json.loads(out)
    assert rc == 3 and env["exit_code"] == 3 and env["status"] == "error"
    assert env["errors"][0]["message"].startswith(f"{bad}:")
    assert ": version: Input should be 1" in err


@pytest.mark.parametrize("section", list(SECTIONS))
def test_show_every_section_as_table_and_json(
    section: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["runbook", "show", section]) == 0
    table = capsys.readouterr().out
    assert table.strip()
    rc, env = json_run(capsys, "runbook", "show", section)
    assert rc == 0 and env["command"] == "runbook show"
    assert env["data"]


def test_show_sections_carry_the_runbook(capsys: pytest.CaptureFixture[str]) -> None:
    _, env = json_run(capsys, "runbook", "show", "contacts")
    assert env["data"]["security-lead"]["primary"] == {"name": "Charlie", "handle": "@charlie"}
    _, env = json_run(capsys, "runbook", "show", "classification")
    rule = env["data"]["rules"][0]
    assert rule["when"] == {
        "any": [
            {"signal": "availability", "op": "le", "value": 0.0},
            {"signal": "error_rate", "op": "ge", "value": 0.99},
        ]
    }
    assert run(["runbook", "show", "scenarios"]) == 0
    out = capsys.readouterr().out
    assert "Gateway API Down [gateway-api-down]" in out
    assert "somactl mitigate rollback gateway-api" in out


def test_show_yaml_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert run(["-o", "yaml", "runbook", "show", "severities"]) == 0
    env = yaml.safe_load(capsys.readouterr().out)
    assert env["data"]["P0"]["name"] == "Critical"
    assert run(["runbook", "show"]) == 0
    out = capsys.readouterr().out
    assert "Incident Response Runbook (version 1)" in out
    assert all(name in out for name in SECTIONS)


def test_show_unknown_section_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["runbook", "show", "secrets"]) == 2
    err = capsys.readouterr().err
    assert "error: unknown section 'secrets'" in err
    assert "severities, classification" in err


def test_severities_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["runbook", "severities"]) == 0
    out = capsys.readouterr().out
    for text in ["LEVEL", "RESPONSE", "PAGING", "P0", "Critical", "P3", "Low", "P4", "Planned"]:
        assert text in out
    rc, env = json_run(capsys, "runbook", "severities")
    assert rc == 0
    rows = {r["level"]: r for r in env["data"]}
    assert rows["P1"]["response_seconds"] == 900
    assert rows["P1"]["incident_commander"] == "Senior Engineer or Engineering Manager"
    assert rows["P2"]["self_ic"] is True
    assert rows["P3"]["updates"] is None
    assert rows["P0"]["pagerduty_severity"] == "critical"


def test_scenarios_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, env = json_run(capsys, "runbook", "scenarios")
    assert rc == 0
    rows = {r["id"]: r for r in env["data"]}
    assert rows["gateway-api-down"]["title"] == "Gateway API Down"
    assert rows["gateway-api-down"]["steps"] == 5
    assert rows["security-incident"]["steps"] == 5


# -- severity ----------------------------------------------------------------------------------


def test_classify_reports_level_rules_and_target(capsys: pytest.CaptureFixture[str]) -> None:
    rc, env = json_run(capsys, "severity", "classify", "--error-rate", "1.0", "--p95", "6")
    assert rc == 0 and env["command"] == "severity classify"
    data = env["data"]
    assert data["level"] == "P0" and data["name"] == "Critical"
    assert data["rule"]["id"] == "complete-outage"
    assert [r["id"] for r in data["fired"]][:2] == ["complete-outage", "performance-degradation"]
    assert data["response"] == {"label": "Page immediately", "seconds": 0}
    assert data["severity"]["incident_commander"] == "Senior Engineer or Engineering Manager"


def test_classify_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["severity", "classify", "--p95", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "P1 High: Respond within 15 minutes"
    assert out[1] == (
        "rule: performance-degradation (Significant performance degradation (>5s response times))"
    )


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["--redis-down"], "P1"),
        (["--db-down"], "P0"),
        (["--service-down", "kamachiq-service"], "P1"),
        (["--service-down", "notion", "--service-down", "gateway-api"], "P0"),
        (["--adapter-failure-ratio", "0.6"], "P1"),
        (["--adapters-failing", "1"], "P2"),
        (["--availability", "0"], "P0"),
        (["--data-loss"], "P0"),
        (["--security-breach"], "P0"),
        (["--auth-failure"], "P0"),
        (["--signal", "cosmetic=true"], "P3"),
        (["-s", "tech_debt=yes"], "P4"),
    ],
)
def test_classify_flags(argv: list[str], level: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, env = json_run(capsys, "severity", "classify", *argv)
    assert rc == 0
    assert env["data"]["level"] == level


def test_classify_without_a_rule_firing_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["severity", "classify", "--error-rate", "0", "--p95", "0.2"]) == 0
    assert "no rule fired" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--error-rate", "1.5"], "'--error-rate'"),
        (["--availability", "-0.1"], "'--availability'"),
        (["--adapter-failure-ratio", "2"], "'--adapter-failure-ratio'"),
        (["--p95", "-1"], "'--p95'"),
        (["--p95", "inf"], "'--p95': must be a finite number"),
        (["--adapters-failing", "-1"], "'--adapters-failing'"),
        (["--error-rate", "lots"], "'--error-rate'"),
        (["--service-down", "gatway-api"], "unknown service 'gatway-api'"),
        (["--signal", "latency=3"], "--signal: unknown signal 'latency'"),
        (["--signal", "error_rate"], "--signal: expected NAME=VALUE"),
        ([], "no signal given"),
    ],
)
def test_classify_bad_values_are_exit_2_naming_the_flag(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["severity", "classify", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert fragment in err


def test_signals_lists_the_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    rc, env = json_run(capsys, "severity", "signals")
    assert rc == 0
    names = {r["name"] for r in env["data"]}
    assert {"error_rate", "p95_seconds", "availability", "redis_up", "service_down"} <= names


# -- registry, help, import weight -------------------------------------------------------------


@pytest.mark.parametrize("name", ["runbook", "severity"])
def test_registry_help_matches_the_module(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = commands.REGISTRY[name]
    module = importlib.import_module(spec.module)
    assert module.app.info.help == spec.help
    assert typer.main.get_command(module.app).help == spec.help
    assert run([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert spec.help in out
    assert "Examples:" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["runbook", "validate"],
        ["runbook", "show"],
        ["runbook", "show", "services"],
        ["runbook", "severities"],
        ["runbook", "scenarios"],
        ["severity", "classify", "--p95", "6", "--service-down", "redis"],
        ["severity", "signals"],
    ],
)
def test_runbook_and_severity_import_no_backend_library(argv: list[str], tmp_path: Path) -> None:
    heavy = ["kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"]
    code = (
        "import sys\n"
        "from somactl.app import run\n"
        f"rc = run({argv!r})\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "print('RC=%d HEAVY=%s' % (rc, ','.join(loaded)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "RC=0 HEAVY="


def test_console_script_reports_config_errors_with_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "runbooks.yaml"
    bad.write_text(
        (REPO / "runbooks.yaml").read_text().replace("    port: 8000\n", "    port: x\n")
    )
    line = bad.read_text().splitlines().index("    port: x") + 1
    proc = subprocess.run(
        [str(SOMACTL), "runbook", "validate", "runbooks.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == (
        f"error: runbooks.yaml:{line}: services.gateway-api.port: Input should be a valid integer"
    )
    assert "Traceback" not in proc.stderr
