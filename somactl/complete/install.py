"""`somactl completion install`: put the shipped script where the shell looks for it.

- bash: $BASH_COMPLETION_USER_DIR/completions/somactl, by default
  ${XDG_DATA_HOME:-~/.local/share}/bash-completion/completions/somactl, which bash-completion 2
  loads on the first TAB;
- zsh: ~/.zfunc/_somactl (Typer's place), loaded by compinit once `fpath+=~/.zfunc` precedes it;
- fish: ${XDG_CONFIG_HOME:-~/.config}/fish/completions/somactl.fish, loaded on demand.

Startup files are never edited: when one line is missing there, the result says which.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from somactl.core.errors import ActionFailedError, PermissionDeniedError, UsageError

SHELLS = ("bash", "zsh", "fish")
BASH_COMPLETION_SCRIPTS = ("/usr/share/bash-completion/bash_completion", "/etc/bash_completion")


def detect_shell(env: Mapping[str, str]) -> str:
    shell = os.path.basename(env.get("SHELL", ""))
    if shell not in SHELLS:
        raise UsageError(
            f"cannot tell which shell to install for ($SHELL is {shell or 'unset'!s})",
            "name it: somactl completion install bash|zsh|fish",
        )
    return shell


def _home(env: Mapping[str, str]) -> str:
    return os.path.expanduser(env.get("HOME", "~"))


def install_path(shell: str, env: Mapping[str, str]) -> str:
    home = _home(env)
    if shell == "bash":
        user_dir = env.get("BASH_COMPLETION_USER_DIR") or os.path.join(
            env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"), "bash-completion"
        )
        return os.path.join(user_dir, "completions", "somactl")
    if shell == "zsh":
        return os.path.join(home, ".zfunc", "_somactl")
    if shell == "fish":
        config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        return os.path.join(config, "fish", "completions", "somactl.fish")
    raise UsageError(f"unsupported shell {shell!r}", "use bash, zsh or fish")


def _activation(shell: str, path: str, env: Mapping[str, str]) -> str:
    home = _home(env)
    if shell == "bash":
        if any(os.path.exists(p) for p in BASH_COMPLETION_SCRIPTS):
            return "bash-completion loads it in new shells"
        return f"bash-completion is not installed: add `source {path}` to ~/.bashrc"
    if shell == "zsh":
        zshrc = os.path.join(env.get("ZDOTDIR") or home, ".zshrc")
        try:
            with open(zshrc, encoding="utf-8", errors="replace") as fh:
                on_fpath = ".zfunc" in fh.read()
        except OSError:
            on_fpath = False
        if on_fpath:
            return "new zsh shells load it (~/.zfunc is on fpath in .zshrc)"
        return "add `fpath+=~/.zfunc; autoload -Uz compinit; compinit` to ~/.zshrc"
    return "new fish shells load it"


def install(shell: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """Write the script for `shell` (default: $SHELL's); what was done, for the user."""
    from somactl.complete.scripts import script

    shell = shell or detect_shell(env)
    path = install_path(shell, env)
    text = script(shell) + "\n"
    try:
        with open(path, encoding="utf-8") as fh:
            unchanged = fh.read() == text
    except OSError:
        unchanged = False
    if not unchanged:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except PermissionError:
            raise PermissionDeniedError(
                f"cannot write {path}: permission denied",
                f"print it instead: somactl completion show {shell} > FILE",
            ) from None
        except OSError as exc:
            raise ActionFailedError(
                f"cannot write {path}: {exc.strerror or exc}",
                f"print it instead: somactl completion show {shell} > FILE",
            ) from None
    return {
        "shell": shell,
        "path": path,
        "changed": not unchanged,
        "activate": _activation(shell, path, env),
    }
