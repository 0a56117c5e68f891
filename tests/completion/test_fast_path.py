"""What must hold on the fast path: no heavy imports, no network, never loud, read-only.

Every request here goes through the real console script (`.venv/bin/somactl`), as a shell runs it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from somactl.complete import engine
from tests.completion.conftest import (
    FORBIDDEN,
    SOMACTL,
    World,
    complete,
    lines_of,
    make_incidents,
    make_world,
    request_env,
    run_somactl,
)

# Lines that reach every source of names: the table, the runbook names cache, the config
# reader, the incident store, static values, choices.
REQUESTS = [
    ("bash", "somactl "),
    ("bash", "somactl diagnose "),
    ("zsh", "somactl incident show "),
    ("zsh", "somactl --context "),
    ("fish", "somactl -o "),
    ("fish", "somactl runbook show "),
    ("zsh", "somactl --runbooks {custom} diagnose "),
    ("bash", "somactl lab break "),
    ("powershell", "somactl incident declare --severity "),
]


def _requests(world: World) -> list[tuple[str, str]]:
    return [(shell, line.format(custom=world.custom_runbooks)) for shell, line in REQUESTS]


def _imported(env: dict[str, str]) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", SOMACTL],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    modules.discard("imported package")
    return modules, proc


def test_completion_imports_neither_typer_rich_pydantic_yaml_nor_a_backend(world: World) -> None:
    seen: set[str] = set()
    for shell, line in _requests(world):
        modules, proc = _imported({**world.env, **request_env(shell, line)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert lines_of(proc.stdout), (shell, line)
        heavy = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
        assert not heavy, (shell, line, heavy)
        assert "somactl.complete.engine" in modules  # the fast path answered, not Typer
        seen |= modules
    assert "sqlite3" in seen and "somactl.complete.yamlish" in seen  # the gate saw the sources
    somactl_modules = {m for m in seen if m.startswith("somactl")}
    assert all(
        m in ("somactl", "somactl.__main__") or m.startswith("somactl.complete")
        for m in somactl_modules
    ), somactl_modules


def test_the_slow_path_imports_typer_so_the_gate_can_fail(world: World) -> None:
    modules, proc = _imported(
        {**world.env, **request_env("zsh", "somactl "), "SOMACTL_COMPLETE_SLOW": "1"}
    )
    assert proc.returncode == 0
    assert "typer" in modules and "pydantic" in modules


AUDIT = """
import runpy, sys
def hook(event, args):
    if event.startswith("socket.") or event in ("http.client.connect", "urllib.Request"):
        sys.stderr.write("NETWORK " + event + "\\n")
        sys.stderr.flush()
sys.addaudithook(hook)
sys.argv = ["somactl"]
runpy.run_path(%r, run_name="__main__")
"""


def test_completion_never_touches_the_network(world: World) -> None:
    for shell, line in _requests(world):
        env = {**world.env, **request_env(shell, line)}
        proc = subprocess.run(
            [sys.executable, "-c", AUDIT % SOMACTL],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0 and lines_of(proc.stdout), proc.stderr
        assert "NETWORK" not in proc.stderr, (line, proc.stderr)
    # the hook does see a socket when there is one
    probe = "import socket; socket.socket().close()"
    proc = subprocess.run(
        [sys.executable, "-c", AUDIT.split("sys.argv", maxsplit=1)[0] + probe],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "NETWORK socket.__new__" in proc.stderr


def _quiet(world_env: dict[str, str], shell: str, line: str) -> list[str]:
    proc = complete(world_env, shell, line)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return lines_of(proc.stdout)


BROKEN_FILES = {
    "unclosed flow": "contexts: {prod: {namespace: x}\n",
    "tabs": "contexts:\n\tprod:\n\t\tnamespace: x\n",
    "a list": "contexts:\n  - prod\n  - lab\n",
    "binary": "\x00\x01\x02\xff\xfe garbage \x00",
    "scalar": "contexts: prod\n",
    "bad quote": 'contexts:\n  "prod: {}\n',
}


@pytest.mark.parametrize("name", list(BROKEN_FILES))
def test_a_broken_config_or_kubeconfig_gives_no_candidates(tmp_path: Path, name: str) -> None:
    world = make_world(tmp_path)
    Path(world.env["SOMACTL_CONFIG"]).write_text(BROKEN_FILES[name])
    Path(world.env["KUBECONFIG"]).write_text(BROKEN_FILES[name])
    for shell in ("bash", "zsh", "fish"):
        got = _quiet(world.env, shell, "somactl --context ")
        assert got in ([], ["_files"]), (name, shell, got)
    # the static answers still come
    assert _quiet(world.env, "bash", "somactl -o ") == ["table", "json", "yaml"]


def test_a_config_that_is_a_directory_or_missing_gives_no_candidates(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    config = Path(world.env["SOMACTL_CONFIG"])
    config.unlink()
    assert _quiet(world.env, "bash", "somactl --context ") == []
    config.mkdir()
    assert _quiet(world.env, "bash", "somactl --context ") == []


@pytest.mark.parametrize(
    "damage",
    ["garbage", "empty", "directory", "other schema", "truncated"],
)
def test_a_corrupt_incident_store_gives_no_candidates(tmp_path: Path, damage: str) -> None:
    world = make_world(tmp_path)
    db = world.state / "incidents.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "directory":
        db.unlink()
        db.mkdir()
    elif damage == "other schema":
        db.unlink()
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE other (x)")
        con.commit()
        con.close()
    else:
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    for shell in ("bash", "zsh", "fish"):
        got = _quiet(world.env, shell, "somactl incident show ")
        assert got in ([], ["_files"]), (damage, shell, got)


def test_broken_runbooks_and_cache_give_no_candidates(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: [\n")
    for runbooks in (bad, tmp_path / "missing.yaml", tmp_path):
        assert _quiet(world.env, "bash", f"somactl --runbooks {runbooks} diagnose ") == []
    cache = world.state / "completion-cache.json"
    custom = str(world.custom_runbooks)
    line = f"somactl --runbooks {custom} diagnose b"
    assert _quiet(world.env, "bash", line) == ["billing-api"]
    broken = ["{not json", '{"runbooks": []}', json.dumps({"runbooks": {custom: 7}})]
    for text in broken:
        cache.write_text(text)
        assert _quiet(world.env, "bash", line) == []
    # a changed file is not trusted until a somactl command has loaded it again
    cache.unlink()
    assert run_somactl(["--runbooks", custom, "runbook", "validate"], world.env).returncode == 0
    assert _quiet(world.env, "bash", line) == ["billing-api"]
    world.custom_runbooks.write_text(world.custom_runbooks.read_text() + "\n# edited\n")
    assert _quiet(world.env, "bash", line) == []


@pytest.mark.parametrize(
    "env",
    [
        {"_SOMACTL_COMPLETE": "complete_bash"},  # no COMP_WORDS
        {"_SOMACTL_COMPLETE": "complete_bash", "COMP_WORDS": "somactl", "COMP_CWORD": "x"},
        {"_SOMACTL_COMPLETE": "complete_tcsh"},
        {"_SOMACTL_COMPLETE": "bogus"},
        {"_SOMACTL_COMPLETE": ""},
        {"_SOMACTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "somactl 'unfinished"},
        {"_SOMACTL_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": "somactl \\"},
    ],
)
def test_odd_requests_are_quiet(world: World, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [SOMACTL], env={**world.env, **env}, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "Usage" not in proc.stdout and "error" not in proc.stdout


def test_the_store_is_read_only_and_never_created(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    fresh = tmp_path / "fresh-state"
    env = {**world.env, "SOMACTL_STATE_DIR": str(fresh)}
    assert _quiet(env, "bash", "somactl incident show ") == []
    assert not fresh.exists()
    db = world.state / "incidents.db"
    before = db.read_bytes()
    got = _quiet(world.env, "bash", "somactl incident show ")
    assert got == [*world.open_ids[::-1], *world.resolved_ids[::-1]]
    assert db.read_bytes() == before


def test_incident_ids_open_first_then_latest_and_at_most_fifty(tmp_path: Path) -> None:
    from somactl.incident.store import completion_ids

    world = make_world(tmp_path)
    state = tmp_path / "many"
    opened, resolved = make_incidents(state, open_count=30, resolved_count=40)
    env = {**world.env, "SOMACTL_STATE_DIR": str(state)}
    got = _quiet(env, "bash", "somactl incident show ")
    assert got == completion_ids(state)  # the incident layer's own answer
    assert len(got) == 50 and got[:30] == opened[::-1] and got[30:] == resolved[::-1][:20]
    prefixed = _quiet(env, "bash", "somactl incident show INC-6")
    assert prefixed == [i for i in got if i.startswith("INC-6")] and prefixed


def test_a_missing_table_hands_over_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "load_table", lambda path=None, env=None: None)
    assert engine.respond({"_SOMACTL_COMPLETE": "complete_bash"}) is None


def test_the_table_is_read_through_a_marshal_copy(tmp_path: Path) -> None:
    """No `json` (hence no `re`) once ~/.cache/somactl has the table; any damage is rebuilt."""
    world = make_world(tmp_path)
    copy = Path(world.env["HOME"]) / ".cache" / "somactl" / "completion-table.marshal"
    request = {**world.env, **request_env("bash", "somactl diagnose g")}
    assert _quiet(world.env, "bash", "somactl diagnose g") == ["gateway-api", "github"]
    assert copy.is_file()
    modules, proc = _imported(request)
    assert proc.stdout == "gateway-api\ngithub\n"
    assert "json" not in modules and "somactl.complete.engine" in modules
    for damage in (b"", b"garbage", copy.read_bytes()[:100]):
        copy.write_bytes(damage)
        assert _quiet(world.env, "bash", "somactl diagnose g") == ["gateway-api", "github"]
        assert copy.read_bytes() not in (b"", b"garbage")
    # a copy of another table (another install, an older file) is not used
    import marshal

    key, _table = marshal.loads(copy.read_bytes())  # noqa: S302 - the copy just written
    copy.write_bytes(marshal.dumps(((key[0], key[1] - 1, *key[2:]), {"format": 1})))
    assert _quiet(world.env, "bash", "somactl diagnose g") == ["gateway-api", "github"]
    # and an unwritable cache dir only costs the JSON parse
    copy.unlink()
    copy.parent.rmdir()
    copy.parent.write_text("not a directory")
    assert _quiet(world.env, "bash", "somactl diagnose g") == ["gateway-api", "github"]


def test_table_json_is_compact_enough() -> None:
    size = Path(engine.table_path()).stat().st_size
    assert size < 60_000, size
    json.loads(Path(engine.table_path()).read_text())
