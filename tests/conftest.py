"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab_fixture import lab

__all__ = ["isolated_user_dirs", "lab"]


@pytest.fixture(autouse=True)
def isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """No test reads or writes the real user's config, state or caches (subprocesses included,
    through the environment); tests that need their own set them again."""
    root = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("SOMACTL_STATE_DIR", str(root / "state"))
    monkeypatch.setenv("SOMACTL_CONFIG", str(root / "config.yaml"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    monkeypatch.delenv("SOMACTL_CONTEXT", raising=False)
    monkeypatch.delenv("SOMACTL_RUNBOOKS", raising=False)
    yield root
