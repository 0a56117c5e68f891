"""Resolve every setting with its source.

Precedence: flags > SOMACTL_* environment > the selected context > runbooks.yaml defaults.
Secrets are never values in the config: a SecretRef names an environment variable or a file
with mode 0600; they are read only when a client needs them, and registered for redaction.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from somactl.config.model import ConfigFile, ContextConfig, SecretRef
from somactl.config.yamlfile import YamlDocument, load_yaml, pydantic_error
from somactl.core.errors import ConfigError, UsageError
from somactl.core.redact import register_secret

# key -> (SOMACTL_* variable, path inside a context, description)
SETTINGS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "kube.kubeconfig": ("SOMACTL_KUBECONFIG", ("kubeconfig",), "kubeconfig file"),
    "kube.context": ("SOMACTL_KUBE_CONTEXT", ("kube_context",), "kubeconfig context"),
    "namespace": ("SOMACTL_NAMESPACE", ("namespace",), "Kubernetes namespace"),
    "postgres.dsn": ("SOMACTL_PG_DSN", ("postgres", "dsn"), "Postgres DSN (no password)"),
    "redis.url": ("SOMACTL_REDIS_URL", ("redis", "url"), "Redis URL (no password)"),
    "prometheus.url": ("SOMACTL_PROMETHEUS_URL", ("prometheus",), "Prometheus base URL"),
    "tools.url": ("SOMACTL_TOOLS_URL", ("tools_api",), "SomaGent tools API base URL"),
    "github.url": ("SOMACTL_GITHUB_URL", ("github", "api"), "GitHub API base URL"),
    "pagerduty.url": (
        "SOMACTL_PAGERDUTY_URL",
        ("notifications", "pagerduty_url"),
        "PagerDuty Events API base URL",
    ),
    "statuspage.url": (
        "SOMACTL_STATUSPAGE_URL",
        ("notifications", "statuspage", "api"),
        "Statuspage API base URL",
    ),
    "statuspage.page_id": (
        "SOMACTL_STATUSPAGE_PAGE_ID",
        ("notifications", "statuspage", "page_id"),
        "Statuspage page id",
    ),
    "git.repo": ("SOMACTL_GIT_REPO", ("git_repo",), "git repository for `what changed`"),
    "state_dir": ("SOMACTL_STATE_DIR", ("state_dir",), "incidents, audit journal, caches"),
}

# secret key -> (path to the SecretRef inside a context, default env var, description)
SECRETS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "postgres.password": (("postgres", "password"), "PGPASSWORD", "Postgres password"),
    "redis.password": (("redis", "password"), "REDISCLI_AUTH", "Redis password"),
    "github.token": (("github", "token"), "GITHUB_TOKEN", "GitHub token"),
    "slack.webhook": (
        ("notifications", "slack_webhook"),
        "SOMACTL_SLACK_WEBHOOK",
        "Slack incoming webhook URL",
    ),
    "pagerduty.routing_key": (
        ("notifications", "pagerduty_routing_key"),
        "SOMACTL_PAGERDUTY_ROUTING_KEY",
        "PagerDuty routing key",
    ),
    "statuspage.api_key": (
        ("notifications", "statuspage", "api_key"),
        "SOMACTL_STATUSPAGE_API_KEY",
        "Statuspage API key",
    ),
}

# a namespace is a DNS-1123 label; anything else would reach the API server inside a URL path
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAMESPACE_HINT = "a DNS-1123 label: at most 63 lower-case letters, digits and '-'"

BUILTIN_DEFAULTS: dict[str, str] = {
    "namespace": "somagent-production",
    "tools.url": "http://localhost:8003",
    "github.url": "https://api.github.com",
    "pagerduty.url": "https://events.pagerduty.com",
    "statuspage.url": "https://api.statuspage.io/v1",
}


@dataclass(frozen=True)
class Resolved:
    key: str
    value: str | None
    source: str  # "flag", "env SOMACTL_X", "context prod", "runbooks.yaml", "default", "unset"
    secret: bool = False


@dataclass
class Settings:
    """Every resolved setting, plus lazy access to secrets."""

    context: str | None
    config_path: Path
    values: dict[str, Resolved]
    secret_refs: dict[str, tuple[SecretRef | None, str]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.values[key].value

    def require(self, key: str, hint: str | None = None) -> str:
        value = self.get(key)
        if not value:
            env = SETTINGS[key][0] if key in SETTINGS else key
            raise ConfigError(
                f"{key} is not set ({SETTINGS.get(key, ('', (), key))[2]})",
                hint or f"set it in the context's config, or export {env}",
            )
        return value

    def secret(self, key: str) -> str | None:
        """Read a secret now (env or 0600 file), register it for redaction, never print it."""
        ref, origin = self.secret_refs.get(key, (None, "unset"))
        value: str | None = None
        if ref is not None and ref.env is not None:
            value = self.env.get(ref.env)
        elif ref is not None and ref.file is not None:
            path = Path(os.path.expanduser(ref.file))
            check_secret_file(path, key, origin)
            value = path.read_text(encoding="utf-8").strip()
        register_secret(value)
        return value or None

    def describe_secret(self, key: str) -> Resolved:
        ref, origin = self.secret_refs.get(key, (None, "unset"))
        if ref is None:
            return Resolved(key, None, "unset", secret=True)
        if ref.env is not None:
            present = "set" if self.env.get(ref.env) else "not set"
            return Resolved(key, f"**** (env {ref.env}: {present})", origin, secret=True)
        return Resolved(key, f"**** (file {ref.file})", origin, secret=True)


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get("SOMACTL_CONFIG"):
        return Path(env["SOMACTL_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "somactl" / "config.yaml"


def default_state_dir(env: Mapping[str, str]) -> str:
    base = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    )
    return str(Path(base) / "somactl")


def check_secret_file(path: Path, key: str, origin: str) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{key}: secret file {path} does not exist ({origin})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{key}: secret file {path} is readable by others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}; {origin})",
            f"chmod 600 {path}",
        )


def load_config(path: Path) -> tuple[ConfigFile, YamlDocument | None]:
    """The config file, or an empty one when it does not exist."""
    from pydantic import ValidationError

    if not path.exists():
        return ConfigFile(), None
    doc = load_yaml(path, what="somactl config")
    if doc.data is None:
        return ConfigFile(), doc
    if not isinstance(doc.data, dict):
        raise doc.error([], "the config must be a mapping with version and contexts")
    try:
        return ConfigFile.model_validate(doc.data), doc
    except ValidationError as exc:
        raise pydantic_error(
            doc, exc, f"see `somactl config --help` for the format ({path})"
        ) from None


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


def _dsn_has_password(dsn: str) -> bool:
    if "://" in dsn:
        return urlsplit(dsn).password is not None
    return any(part.strip().lower().startswith("password") for part in dsn.split())


def resolve(
    *,
    env: Mapping[str, str],
    flags: Mapping[str, str | None],
    context_name: str | None = None,
    runbook_defaults: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve all settings. `flags` holds values given on the command line (None = not given)."""
    path = default_config_path(env)
    config, doc = load_config(path)
    name = context_name or env.get("SOMACTL_CONTEXT") or config.current_context
    ctx: ContextConfig | None = None
    if name is not None:
        ctx = config.contexts.get(name)
        if ctx is None:
            known = ", ".join(sorted(config.contexts)) or "none defined"
            raise ConfigError(
                f"{path}: unknown context {name!r} (known: {known})",
                "list them with `somactl config contexts`",
            )
    origin = f"context {name}"
    defaults = dict(BUILTIN_DEFAULTS)
    defaults["state_dir"] = default_state_dir(env)
    values: dict[str, Resolved] = {}
    for key, (var, cpath, _desc) in SETTINGS.items():
        if flags.get(key):
            values[key] = Resolved(key, flags[key], "flag")
        elif env.get(var):
            values[key] = Resolved(key, env[var], f"env {var}")
        elif key == "kube.kubeconfig" and env.get("KUBECONFIG") and _dig(ctx, cpath) is None:
            values[key] = Resolved(key, env["KUBECONFIG"], "env KUBECONFIG")
        elif ctx is not None and _dig(ctx, cpath) is not None:
            values[key] = Resolved(key, str(_dig(ctx, cpath)), origin)
        elif runbook_defaults and runbook_defaults.get(key):
            values[key] = Resolved(key, runbook_defaults[key], "runbooks.yaml")
        elif key in defaults:
            values[key] = Resolved(key, defaults[key], "default")
        else:
            values[key] = Resolved(key, None, "unset")
    flag_ns = flags.get("namespace")
    if flag_ns is not None and not _NAMESPACE.fullmatch(flag_ns):
        raise UsageError(
            f"--namespace {flag_ns!r} is not a valid Kubernetes namespace", _NAMESPACE_HINT
        )
    ns = values["namespace"]
    if ns.value is not None and not _NAMESPACE.fullmatch(ns.value):
        raise ConfigError(
            f"namespace {ns.value!r} from {ns.source} is not a valid Kubernetes namespace",
            _NAMESPACE_HINT,
        )
    if values["postgres.dsn"].value is None:
        pg = _libpq_dsn(env)
        if pg is not None:
            values["postgres.dsn"] = Resolved("postgres.dsn", pg, "env PG*")
    for key in ("postgres.dsn", "redis.url"):
        value = values[key].value
        if value and _dsn_has_password(value):
            where = values[key].source
            if doc is not None and where == origin:
                raise doc.error(
                    ["contexts", name or "", *SETTINGS[key][1]],
                    "contains a password; secrets go in a SecretRef (env: NAME or file: PATH)",
                )
            raise ConfigError(
                f"{key} from {where} contains a password",
                "remove it and set the password through an environment variable or a 0600 file",
            )
    refs: dict[str, tuple[SecretRef | None, str]] = {}
    for key, (cpath, default_env, _desc) in SECRETS.items():
        ref = _dig(ctx, cpath) if ctx is not None else None
        if isinstance(ref, SecretRef):
            refs[key] = (ref, origin)
            if ref.file is not None:
                fpath = Path(os.path.expanduser(ref.file))
                if fpath.exists():
                    try:
                        check_secret_file(fpath, key, origin)
                    except ConfigError as exc:
                        if doc is not None:
                            raise doc.error(
                                ["contexts", name or "", *cpath, "file"],
                                exc.message.split(": ", 1)[1],
                                exc.hint,
                            ) from None
                        raise
        elif default_env and env.get(default_env):
            refs[key] = (SecretRef(env=default_env), f"env {default_env}")
    return Settings(context=name, config_path=path, values=values, secret_refs=refs, env=env)


def _libpq_dsn(env: Mapping[str, str]) -> str | None:
    parts = {k: env.get(f"PG{k.upper()}") for k in ("host", "port", "user", "database")}
    if not any(parts.values()):
        return None
    words = [f"{'dbname' if k == 'database' else k}={v}" for k, v in parts.items() if v]
    return " ".join(words)


def list_contexts(env: Mapping[str, str]) -> tuple[Path, ConfigFile]:
    path = default_config_path(env)
    config, _ = load_config(path)
    return path, config


def use_context(env: Mapping[str, str], name: str) -> Path:
    """Make `name` the current context, keeping the rest of the file as it is."""
    import yaml

    path = default_config_path(env)
    config, doc = load_config(path)
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none defined"
        raise ConfigError(
            f"{path}: unknown context {name!r} (known: {known})",
            "list them with `somactl config contexts`",
        )
    raw: dict[str, Any] = dict(doc.data) if doc is not None and isinstance(doc.data, dict) else {}
    raw["current-context"] = name
    raw.pop("current_context", None)
    write_config(path, raw, yaml.safe_dump(raw, sort_keys=False))
    return path


def write_config(path: Path, raw: Mapping[str, Any], text: str) -> None:
    """Atomically replace the config file (mode 0600; it may name secret files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def upsert_context(
    env: Mapping[str, str], name: str, context: Mapping[str, Any], *, make_current: bool = False
) -> Path:
    """Add or replace context `name` (the lab writes its `lab` context this way)."""
    import yaml

    path = default_config_path(env)
    _config, doc = load_config(path)
    raw: dict[str, Any] = dict(doc.data) if doc is not None and isinstance(doc.data, dict) else {}
    raw.setdefault("version", 1)
    contexts = dict(raw.get("contexts") or {})
    contexts[name] = dict(context)
    raw["contexts"] = contexts
    if make_current or not raw.get("current-context"):
        raw["current-context"] = name
    ConfigFile.model_validate(raw)
    write_config(path, raw, yaml.safe_dump(raw, sort_keys=False))
    return path
