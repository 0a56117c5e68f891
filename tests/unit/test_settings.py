from __future__ import annotations

import os
from pathlib import Path

import pytest

from somactl.config.settings import resolve, upsert_context, use_context
from somactl.core.errors import ConfigError
from somactl.core.redact import MASK, redact

CONFIG = """\
version: 1
current-context: prod
contexts:
  prod:
    namespace: prod-ns
    prometheus: http://prom:9090
    postgres:
      dsn: postgresql://oncall@db:5432/somagent
      password: {env: PROD_PG_PASSWORD}
    github:
      token: {file: SECRETFILE}
  staging:
    namespace: staging-ns
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "gh.token"
    secret.write_text("ghp_sentinelTOKEN1234567\n")
    secret.chmod(0o600)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.replace("SECRETFILE", str(secret)))
    return {"SOMACTL_CONFIG": str(cfg), "HOME": str(tmp_path), "PROD_PG_PASSWORD": "pgSentinel99"}


def test_precedence_flag_env_context_default(env: dict[str, str]) -> None:
    s = resolve(env=env, flags={})
    assert (s.get("namespace"), s.values["namespace"].source) == ("prod-ns", "context prod")
    s = resolve(env={**env, "SOMACTL_NAMESPACE": "env-ns"}, flags={})
    assert (s.get("namespace"), s.values["namespace"].source) == ("env-ns", "env SOMACTL_NAMESPACE")
    s = resolve(env={**env, "SOMACTL_NAMESPACE": "env-ns"}, flags={"namespace": "flag-ns"})
    assert (s.get("namespace"), s.values["namespace"].source) == ("flag-ns", "flag")
    s = resolve(env=env, flags={}, context_name="staging")
    assert s.get("prometheus.url") is None
    assert s.values["tools.url"].source == "default"
    s = resolve(
        env=env, flags={}, runbook_defaults={"tools.url": "http://rb:8003"}, context_name="staging"
    )
    assert (s.get("tools.url"), s.values["tools.url"].source) == ("http://rb:8003", "runbooks.yaml")


def test_secrets_read_lazily_and_registered_for_redaction(env: dict[str, str]) -> None:
    s = resolve(env=env, flags={})
    assert "pgSentinel99" not in str(s.describe_secret("postgres.password"))
    assert s.secret("postgres.password") == "pgSentinel99"
    assert s.secret("github.token") == "ghp_sentinelTOKEN1234567"
    assert redact("pw pgSentinel99") == f"pw {MASK}"


def test_unknown_context_names_the_file_and_the_known_ones(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve(env=env, flags={}, context_name="nope")
    assert "unknown context 'nope' (known: prod, staging)" in exc.value.message
    assert env["SOMACTL_CONFIG"] in exc.value.message
    assert exc.value.code == 3


def test_secret_file_readable_by_others_is_refused_with_line(env: dict[str, str]) -> None:
    secret = Path(env["HOME"]) / "gh.token"
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as exc:
        resolve(env=env, flags={})
    assert exc.value.message.startswith("config.yaml:11: contexts.prod.github.token.file: ")
    assert "readable by others (mode 0644" in exc.value.message
    assert exc.value.hint == f"chmod 600 {secret}"


def test_unknown_key_and_wrong_type_point_at_the_line(env: dict[str, str]) -> None:
    cfg = Path(env["SOMACTL_CONFIG"])
    cfg.write_text(CONFIG.replace("    namespace: staging-ns", "    namespce: staging-ns"))
    with pytest.raises(ConfigError) as exc:
        resolve(env=env, flags={})
    assert exc.value.message == "config.yaml:13: contexts.staging.namespce: unknown key"
    cfg.write_text(CONFIG.replace("prometheus: http://prom:9090", "prometheus: [1, 2]"))
    with pytest.raises(ConfigError) as exc:
        resolve(env=env, flags={})
    assert exc.value.message.startswith("config.yaml:6: contexts.prod.prometheus: ")


def test_yaml_syntax_error_names_the_line(env: dict[str, str]) -> None:
    Path(env["SOMACTL_CONFIG"]).write_text("version: 1\ncontexts:\n  a: [1,\n")
    with pytest.raises(ConfigError) as exc:
        resolve(env=env, flags={})
    assert exc.value.message.startswith("config.yaml:4: YAML syntax error")


def test_password_inside_a_dsn_is_refused(env: dict[str, str]) -> None:
    cfg = Path(env["SOMACTL_CONFIG"])
    cfg.write_text(CONFIG.replace("oncall@db", "oncall:hunter2@db"))
    with pytest.raises(ConfigError) as exc:
        resolve(env=env, flags={})
    assert "hunter2" not in exc.value.message
    assert exc.value.message.startswith(
        "config.yaml:8: contexts.prod.postgres.dsn: contains a password"
    )
    with pytest.raises(ConfigError):
        resolve(env={**env, "SOMACTL_PG_DSN": "postgresql://a:hunter2@x/y"}, flags={})


def test_libpq_variables_build_a_dsn(tmp_path: Path) -> None:
    s = resolve(
        env={"HOME": str(tmp_path), "PGHOST": "db", "PGPORT": "5433", "PGUSER": "me"}, flags={}
    )
    assert s.get("postgres.dsn") == "host=db port=5433 user=me"
    assert s.values["postgres.dsn"].source == "env PG*"


def test_use_context_and_upsert_keep_the_file_valid(env: dict[str, str]) -> None:
    use_context(env, "staging")
    assert resolve(env=env, flags={}).context == "staging"
    upsert_context(
        env, "lab", {"namespace": "somagent-production", "tools-api": "http://127.0.0.1:1"}
    )
    s = resolve(env=env, flags={}, context_name="lab")
    assert s.get("tools.url") == "http://127.0.0.1:1"
    assert os.stat(env["SOMACTL_CONFIG"]).st_mode & 0o077 == 0
    with pytest.raises(ConfigError):
        use_context(env, "missing")
