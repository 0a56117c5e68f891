"""`somactl completion show SHELL` and `somactl completion install [SHELL]`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.completion.conftest import COMPLETIONS, base_env, run_somactl

SCRIPT = {"bash": "somactl.bash", "zsh": "_somactl", "fish": "somactl.fish"}


@pytest.mark.parametrize("shell", list(SCRIPT))
def test_show_prints_the_shipped_script(tmp_path: Path, shell: str) -> None:
    proc = run_somactl(["completion", "show", shell], base_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (COMPLETIONS / SCRIPT[shell]).read_text()


def test_show_as_json(tmp_path: Path) -> None:
    proc = run_somactl(["-o", "json", "completion", "show", "fish"], base_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)
    assert env["command"] == "completion show" and env["exit_code"] == 0
    assert env["data"]["script"] + "\n" == (COMPLETIONS / "somactl.fish").read_text()


def test_show_an_unknown_shell_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_somactl(["completion", "show", "tcsh"], base_env(tmp_path))
    assert proc.returncode == 2
    assert "tcsh" in proc.stderr


@pytest.mark.parametrize(
    ("shell", "where"),
    [
        ("bash", "xdg-data/bash-completion/completions/somactl"),
        ("zsh", "home/.zfunc/_somactl"),
        ("fish", "xdg-config/fish/completions/somactl.fish"),
    ],
)
def test_install_writes_where_the_shell_looks_and_says_so(
    tmp_path: Path, shell: str, where: str
) -> None:
    env = base_env(tmp_path)
    proc = run_somactl(["completion", "install", shell], env)
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / where
    assert target.read_text() == (COMPLETIONS / SCRIPT[shell]).read_text()
    assert proc.stdout == f"wrote {target} ({shell})\n"
    assert proc.stderr.strip()  # how the shell picks it up
    again = run_somactl(["completion", "install", shell], env)
    assert again.returncode == 0 and again.stdout == f"up to date: {target} ({shell})\n"


def test_install_defaults_to_shell_from_the_environment(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "SHELL": "/usr/bin/fish"}
    proc = run_somactl(["-o", "json", "completion", "install"], env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["shell"] == "fish" and Path(data["path"]).is_file() and data["changed"] is True


def test_install_without_a_known_shell_is_a_usage_error(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "SHELL": "/bin/tcsh"}
    proc = run_somactl(["completion", "install"], env)
    assert proc.returncode == 2
    assert "error: cannot tell which shell" in proc.stderr and "hint:" in proc.stderr


def test_install_where_it_cannot_write_fails_with_a_hint(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    blocker = tmp_path / "xdg-config"
    blocker.write_text("a file where a directory should be")
    proc = run_somactl(["completion", "install", "fish"], env)
    assert proc.returncode == 1
    assert "cannot write" in proc.stderr and "completion show fish" in proc.stderr
