"""Where somactl keeps its files, resolved from the environment alone (no config parsing).

These mirror somactl.config.settings (default_state_dir, default_config_path), which this package
cannot import; tests/completion checks that both give the same answers.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: completion imports nothing it does not need
if TYPE_CHECKING:
    from collections.abc import Mapping


def _home(env: Mapping[str, str]) -> str:
    return os.path.expanduser(env.get("HOME", "~"))


def state_dir(env: Mapping[str, str]) -> str:
    """$SOMACTL_STATE_DIR, else $XDG_STATE_HOME/somactl, else ~/.local/state/somactl."""
    explicit = env.get("SOMACTL_STATE_DIR")
    if explicit:
        return explicit
    base = env.get("XDG_STATE_HOME") or os.path.join(_home(env), ".local", "state")
    return os.path.join(base, "somactl")


def config_path(env: Mapping[str, str]) -> str:
    """$SOMACTL_CONFIG, else $XDG_CONFIG_HOME/somactl/config.yaml (~/.config by default)."""
    explicit = env.get("SOMACTL_CONFIG")
    if explicit:
        return os.path.expanduser(explicit)
    base = env.get("XDG_CONFIG_HOME") or os.path.join(_home(env), ".config")
    return os.path.join(base, "somactl", "config.yaml")


def kubeconfig_paths(env: Mapping[str, str]) -> list[str]:
    """$SOMACTL_KUBECONFIG, else every file of $KUBECONFIG, else ~/.kube/config."""
    explicit = env.get("SOMACTL_KUBECONFIG")
    if explicit:
        return [os.path.expanduser(explicit)]
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return [os.path.expanduser(p) for p in listed]
    return [os.path.join(_home(env), ".kube", "config")]


def shipped_runbooks() -> str:
    """The runbooks.yaml inside the package (the generated table carries its names)."""
    return os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runbooks.yaml"
    )
