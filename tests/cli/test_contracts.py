"""The contracts of ARCHITECTURE.md: exit codes, the error handler, the envelope, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from somactl import commands
from somactl.app import hoist_global_options, run
from somactl.core.exitcodes import EXIT_CODE_MEANINGS, ExitCode

SENTINEL = "s3ntinel-Pa55w0rd-XYZ"


@pytest.fixture
def raiser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        commands.REGISTRY, "_raise", commands.CommandSpec("tests.cli.raiser", "test", "Test")
    )


CASES = [
    ("failed", ExitCode.FAILED),
    ("usage", ExitCode.USAGE),
    ("config", ExitCode.CONFIG),
    ("not-confirmed", ExitCode.NOT_CONFIRMED),
    ("precondition", ExitCode.PRECONDITION),
    ("unreachable", ExitCode.UNREACHABLE),
    ("permission", ExitCode.PERMISSION),
    ("audit", ExitCode.AUDIT_UNAVAILABLE),
    ("partial", ExitCode.PARTIAL),
    ("exit-10", ExitCode.WARNINGS),
    ("exit-11", ExitCode.CRITICAL),
    ("exit-0", ExitCode.OK),
    ("interrupt", ExitCode.INTERRUPTED),
    ("internal", ExitCode.FAILED),
]


def test_every_exit_code_is_exercised_here() -> None:
    assert {code for _, code in CASES} == set(ExitCode)


@pytest.mark.parametrize(("kind", "code"), CASES)
def test_each_error_maps_to_its_exit_code_without_traceback(
    raiser: None, capsys: pytest.CaptureFixture[str], kind: str, code: ExitCode
) -> None:
    rc = run(["_raise", "raise", kind, "--secret", SENTINEL])
    out, err = capsys.readouterr()
    assert rc == int(code)
    assert "Traceback" not in out + err
    assert SENTINEL not in out + err
    if kind.startswith("exit-"):
        assert err == ""
    elif kind == "interrupt":
        assert err.strip() == "interrupted"
    else:
        lines = err.strip().splitlines()
        assert lines[0].startswith("error: ")
        assert lines[1].startswith("hint: ")


def test_internal_error_shows_traceback_only_with_debug(
    raiser: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run(["_raise", "raise", "internal", "--secret", SENTINEL, "--debug"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" in err
    assert "ValueError" in err
    assert SENTINEL not in err


def test_json_error_envelope_on_stdout(raiser: None, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run(["_raise", "raise", "precondition", "-o", "json"])
    out, err = capsys.readouterr()
    env = json.loads(out)
    assert rc == 5
    assert env["somactl"] == 1
    assert env["status"] == "error"
    assert env["exit_code"] == 5
    assert env["errors"][0]["hint"] == "do the thing"
    assert err.startswith("error: ")


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--output", "xml", "config", "show"]) == 2
    _, err = capsys.readouterr()
    assert "error: " in err
    assert "'xml' is not one of" in err
    assert run(["no-such-command"]) == 2


def test_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--timeout", "soon", "config", "show"]) == 2
    assert "--timeout: cannot read 'soon' as a duration" in capsys.readouterr().err
    assert run(["--timeout", "0", "config", "show"]) == 2
    assert "--timeout: the deadline must be more than 0s" in capsys.readouterr().err


def test_help_epilog_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for code, text in EXIT_CODE_MEANINGS.items():
        assert f"{int(code):>3}  {text}" in out


def test_global_options_are_accepted_after_the_subcommand() -> None:
    assert hoist_global_options(["diagnose", "gw", "-o", "json", "--debug"]) == [
        "-o",
        "json",
        "--debug",
        "diagnose",
        "gw",
    ]
    assert hoist_global_options(["x", "-ojson", "--output=yaml", "--", "-o", "z"]) == [
        "-o",
        "json",
        "--output=yaml",
        "x",
        "--",
        "-o",
        "z",
    ]


HEAVY = ["kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"]


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["config", "--help"], ["config", "show"], ["config", "contexts"]],
)
def test_light_paths_import_no_backend_library(argv: list[str], tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from somactl.app import run\n"
        f"rc = run({argv!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout


def test_help_does_not_import_command_modules() -> None:
    code = (
        "import sys\nfrom somactl.app import run\nrun(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('somactl.commands.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_and_console_script_agree() -> None:
    a = subprocess.run(
        [sys.executable, "-m", "somactl", "--version"], capture_output=True, text=True, timeout=60
    )
    assert a.returncode == 0
    assert a.stdout.startswith("somactl ")


def test_envelope_names_the_whole_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    # nothing is configured: the command fails to reach its backend, but says who it is
    for argv, name in (
        (["db", "pool"], "db pool"),
        (["redis", "info"], "redis info"),
        (["tools", "recent"], "tools recent"),
    ):
        run(["-o", "json", "--timeout", "1s", *argv])
        env = json.loads(capsys.readouterr().out)
        assert env["command"] == name, argv
