"""Resolve the settings for a command from its global options and the process environment."""

from __future__ import annotations

import os

from somactl.config.settings import Settings, resolve
from somactl.core.options import GlobalOptions
from somactl.ui.cli import runbook_for


def settings_for(opts: GlobalOptions) -> Settings:
    cached = opts.extra.get("settings")
    if isinstance(cached, Settings):
        return cached
    settings = resolve(
        env=os.environ,
        flags={"namespace": opts.namespace},
        context_name=opts.context,
        runbook_defaults=runbook_for(opts).settings_defaults(),
    )
    opts.extra["settings"] = settings
    return settings
