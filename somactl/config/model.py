"""The config file's schema: named contexts; secrets only by reference (env var or 0600 file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True
    )


class SecretRef(_Model):
    """Where a secret lives: an environment variable's name, or a file with mode 0600."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env (a variable name) or file (a 0600 file)")
        return self


class PostgresConfig(_Model):
    dsn: str | None = None
    password: SecretRef | None = None


class RedisConfig(_Model):
    url: str | None = None
    password: SecretRef | None = None


class GithubConfig(_Model):
    api: str | None = None
    token: SecretRef | None = None


class StatuspageConfig(_Model):
    api: str | None = None
    page_id: str | None = None
    api_key: SecretRef | None = None


class NotificationsConfig(_Model):
    slack_webhook: SecretRef | None = None
    pagerduty_url: str | None = None
    pagerduty_routing_key: SecretRef | None = None
    statuspage: StatuspageConfig | None = None


class ContextConfig(_Model):
    kubeconfig: str | None = None
    kube_context: str | None = None
    namespace: str | None = None
    postgres: PostgresConfig | None = None
    redis: RedisConfig | None = None
    prometheus: str | None = None
    tools_api: str | None = None
    github: GithubConfig | None = None
    notifications: NotificationsConfig | None = None
    git_repo: str | None = None
    state_dir: str | None = None
    description: str | None = None


class ConfigFile(_Model):
    version: Literal[1] = 1
    current_context: str | None = None
    contexts: dict[str, ContextConfig] = {}
