"""completions/ is generated from the real Typer tree: CI fails while it is stale."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from somactl.commands import REGISTRY
from tests.completion.conftest import COMPLETIONS, REPO, table

GENERATOR = REPO / "scripts" / "gen-completions.py"
FILES = ["somactl-table.json", "somactl.bash", "_somactl", "somactl.fish"]


def generate(out: Path, seed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_completions_are_not_stale(tmp_path: Path) -> None:
    for seed in ("1", "2"):  # and whatever order Python's hashing gives sets today
        out = tmp_path / seed
        proc = generate(out, seed)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for name in FILES:
            fresh = (out / name).read_text()
            assert fresh == (COMPLETIONS / name).read_text(), (
                f"completions/{name} is stale: run .venv/bin/python scripts/gen-completions.py"
            )


def test_the_check_mode_agrees() -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_table_has_every_registered_command() -> None:
    root = table()["nodes"][""]
    assert root["cmds"] == list(REGISTRY)
    assert [name for name, _ in root["list"]] == list(REGISTRY)
    assert [h for _, h in root["list"]] == [spec.help for spec in REGISTRY.values()]


def test_the_package_carries_the_table_and_scripts() -> None:
    """somactl/complete/ links to completions/, and package-data ships the links' targets."""
    package = REPO / "somactl"
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["somactl"]
    shipped = {p.resolve() for pattern in patterns for p in package.glob(pattern)}
    for name in FILES:
        link = package / "complete" / name
        assert link.is_symlink() and link.resolve() == (COMPLETIONS / name).resolve(), name
        assert link.resolve() in shipped, name
