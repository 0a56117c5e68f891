"""Where the backends are for one context: settings -> client targets, secrets read once.

A backend without an address is not an error here: its checks report "not configured" with
the setting to fill in (a diagnosis reports everything it can). A secret that cannot be read
(a file with the wrong mode...) is kept as that backend's problem, for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from somactl.config.settings import SETTINGS, Settings, resolve
from somactl.core.errors import SomactlError
from somactl.core.options import GlobalOptions

if TYPE_CHECKING:
    from somactl.clients.kube import KubeTarget
    from somactl.clients.postgres import PgTarget
    from somactl.clients.redis import RedisTarget
    from somactl.runbook.schema import Runbook


def load_runbook_for(opts: GlobalOptions) -> Runbook:
    from somactl.runbook.loader import load_runbook

    return load_runbook(opts.runbooks)


def settings_for_context(
    opts: GlobalOptions,
    context: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The settings of `context` (default: --context / SOMACTL_CONTEXT / the current one)."""
    env = os.environ if env is None else env
    if context is None:
        cached = opts.extra.get("settings")
        if isinstance(cached, Settings):
            return cached
    settings = resolve(
        env=env,
        flags={"namespace": opts.namespace},
        context_name=context or opts.context,
        runbook_defaults=load_runbook_for(opts).settings_defaults(),
    )
    if context is None:
        opts.extra["settings"] = settings
    return settings


@dataclass
class Targets:
    """Every backend of one context; None where the settings give no address."""

    context: str | None
    namespace: str
    kube: KubeTarget | None
    pg: PgTarget | None
    redis: RedisTarget | None
    prometheus: str | None
    tools: str | None
    github: str | None
    github_token: str | None
    git_repo: str | None
    state_dir: str
    # backend -> why it cannot be used (a secret that could not be read...)
    problems: dict[str, SomactlError] = field(default_factory=dict)

    def hint(self, key: str) -> str:
        return SETTINGS[key][0] if key in SETTINGS else key


def kubeconfig_available(path: str | None, env: Mapping[str, str]) -> bool:
    if path:
        return any(Path(p).expanduser().exists() for p in path.split(os.pathsep) if p)
    home = env.get("HOME")
    return home is not None and bool(home) and (Path(home) / ".kube" / "config").exists()


def targets_for(settings: Settings, *, env: Mapping[str, str] | None = None) -> Targets:
    from somactl.clients.kube import KubeTarget
    from somactl.clients.postgres import PgTarget
    from somactl.clients.redis import RedisTarget

    env = os.environ if env is None else env
    problems: dict[str, SomactlError] = {}

    def secret(key: str, backend: str) -> str | None:
        try:
            return settings.secret(key)
        except SomactlError as exc:
            problems[backend] = exc
            return None

    namespace = settings.get("namespace") or "default"
    kubeconfig = settings.get("kube.kubeconfig")
    kube = (
        KubeTarget(kubeconfig, settings.get("kube.context"), namespace)
        if kubeconfig_available(kubeconfig, env)
        else None
    )
    dsn = settings.get("postgres.dsn")
    pg = PgTarget(dsn, secret("postgres.password", "postgres")) if dsn else None
    url = settings.get("redis.url")
    redis = RedisTarget(url, secret("redis.password", "redis")) if url else None
    github = settings.get("github.url")
    token = secret("github.token", "github") if github else None
    return Targets(
        context=settings.context,
        namespace=namespace,
        kube=kube,
        pg=pg,
        redis=redis,
        prometheus=settings.get("prometheus.url"),
        tools=settings.get("tools.url"),
        github=github,
        github_token=token,
        git_repo=settings.get("git.repo"),
        state_dir=settings.get("state_dir") or "",
        problems=problems,
    )
