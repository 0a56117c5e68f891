"""somactl config: where somactl points (contexts), and every resolved value with its source."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from somactl.config.settings import SECRETS, list_contexts, use_context
from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with, simple_table
from somactl.ui.settings import settings_for

app = typer.Typer(
    help="Settings and contexts: show, contexts, use-context.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

CONFIG_HELP = """
The config file is $SOMACTL_CONFIG, else $XDG_CONFIG_HOME/somactl/config.yaml:

\b
  version: 1
  current-context: prod
  contexts:
    prod:
      kubeconfig: ~/.kube/config
      kube-context: gke-prod
      namespace: somagent-production
      postgres: {dsn: "postgresql://oncall@db:5432/somagent", password: {env: PROD_PG_PASSWORD}}
      redis: {url: "redis://redis:6379/0", password: {file: ~/.config/somactl/redis.pass}}
      prometheus: http://prometheus.somagent.ai
      tools-api: http://localhost:8003
      github: {api: https://api.github.com, token: {env: GITHUB_TOKEN}}
      notifications:
        slack-webhook: {env: SLACK_WEBHOOK_URL}
        pagerduty-routing-key: {env: PD_ROUTING_KEY}
        statuspage: {page-id: abc123, api-key: {env: STATUSPAGE_API_KEY}}

Secrets are never values: only {env: NAME} or {file: PATH} with mode 0600.
Precedence: flags > SOMACTL_* environment > the selected context > runbooks.yaml defaults.
"""


@app.callback(epilog=CONFIG_HELP)
def main() -> None:
    """Settings and contexts: show, contexts, use-context."""


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Every resolved setting with its source; secrets masked.

    Example: somactl --context prod config show
    """
    opts = options(ctx)
    settings = settings_for(opts)
    rows: list[dict[str, Any]] = [
        {"key": r.key, "value": r.value, "source": r.source, "secret": False}
        for r in settings.values.values()
    ]
    for key in SECRETS:
        r = settings.describe_secret(key)
        rows.append({"key": r.key, "value": r.value, "source": r.source, "secret": True})
    data = {"context": settings.context, "config": str(settings.config_path), "settings": rows}

    def table(d: dict[str, Any]) -> Any:
        title = f"context: {d['context'] or '(none)'}   config: {d['config']}"
        return simple_table(
            ["KEY", "VALUE", "SOURCE"],
            [
                [r["key"], r["value"] if r["value"] is not None else "-", r["source"]]
                for r in d["settings"]
            ],
            title=title,
        )

    exit_with(emit(opts, Result("config show", data), table))


@app.command("contexts")
def contexts(ctx: typer.Context) -> None:
    """The contexts of the config file; * marks the current one.

    Example: somactl config contexts
    """
    opts = options(ctx)
    path, config = list_contexts(os.environ)
    current = os.environ.get("SOMACTL_CONTEXT") or config.current_context
    rows = [
        {
            "name": name,
            "current": name == current,
            "namespace": c.namespace,
            "kube_context": c.kube_context,
            "description": c.description,
        }
        for name, c in config.contexts.items()
    ]

    def table(d: list[dict[str, Any]]) -> Any:
        if not d:
            return f"no contexts in {path} (see `somactl config --help`)"
        return simple_table(
            ["", "NAME", "NAMESPACE", "KUBE CONTEXT", "DESCRIPTION"],
            [
                [
                    "*" if r["current"] else "",
                    r["name"],
                    r["namespace"] or "-",
                    r["kube_context"] or "-",
                    r["description"] or "",
                ]
                for r in d
            ],
        )

    exit_with(emit(opts, Result("config contexts", rows), table))


@app.command("use-context")
def use(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A context defined in the config file.")],
) -> None:
    """Make NAME the current context.

    Example: somactl config use-context lab
    """
    opts = options(ctx)
    path = use_context(os.environ, name)
    exit_with(
        emit(
            opts,
            Result("config use-context", {"current_context": name, "config": str(path)}),
            lambda d: f"current context: {d['current_context']} ({d['config']})",
        )
    )
