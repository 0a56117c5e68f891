"""The local sources of names: tiny YAML readers, paths, the runbook names cache, callbacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from somactl.complete import cache, callbacks, engine, paths, sources, yamlish
from tests.completion.conftest import CONFIG, KUBECONFIG, World

CONFIGS = [
    CONFIG,
    "contexts:\n  a:\n    namespace: x\n  b: {}\n",
    "version: 1\ncontexts:\n\n  # a comment\n  a: # trailing\n    x: 1\n\n  'b c':\n    x: 2\n"
    "current-context: a\n",
    "contexts: {a: {namespace: x}, 'b': {}, \"c\": {x: [1, 2]}}\n",
    "contexts: {a: {namespace: x},\n  b: {}}\n",
    "contexts: {}\n",
    "version: 1\n",
    "contexts:\n    deep-a:\n        x: 1\n    deep-b:\n        x: 2\nother:\n  c: 1\n",
    '{"version": 1, "contexts": {"j1": {}, "j2": {"namespace": "x"}}}',
    "contexts:\n  a:\n    description: 'has: colon'\n  b-with.dots_and-1:\n    x: 1\n",
]


@pytest.mark.parametrize("text", CONFIGS)
def test_config_context_keys_match_a_yaml_parser(text: str) -> None:
    parsed: Any = yaml.safe_load(text) or {}
    expected = list(parsed.get("contexts") or {}) if isinstance(parsed, dict) else []
    assert yamlish.mapping_keys(text, "contexts") == expected


@pytest.mark.parametrize(
    "text",
    [
        "contexts:\n\ta: {}\n",
        "contexts:\n  - a\n",
        "contexts: [a, b]\n",
        "contexts: {a: 1\n",
        "contexts:\n    a: {}\n  b: {}\n",
        'contexts:\n  "a: {}\n',
    ],
)
def test_config_shapes_the_reader_does_not_understand_give_none(text: str) -> None:
    assert yamlish.mapping_keys(text, "contexts") is None


KUBECONFIGS = [
    KUBECONFIG,
    "contexts:\n  - context:\n      cluster: c\n    name: indented\n  - name: 'quoted one'\n",
    'contexts:\n-\n  name: dash-alone\n  context: {}\n- name: "dq"  # comment\n',
    "contexts: []\n",
    "apiVersion: v1\nkind: Config\n",
    json.dumps({"contexts": [{"name": "json-a", "context": {}}, {"name": "json-b"}]}),
    "contexts:\n- context:\n    name: not-this-one\n  name: this-one\nusers:\n- name: u\n",
]


@pytest.mark.parametrize("text", KUBECONFIGS)
def test_kubeconfig_context_names_match_a_yaml_parser(text: str) -> None:
    parsed: Any = yaml.safe_load(text) or {}
    expected = [c["name"] for c in parsed.get("contexts") or []]
    assert yamlish.list_item_names(text, "contexts") == expected


def test_kube_contexts_read_every_kubeconfig_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(KUBECONFIG)
    b.write_text("contexts:\n- name: other\n- name: kind-lab\n")
    env = {"HOME": str(tmp_path), "KUBECONFIG": f"{a}:{tmp_path / 'missing'}:{b}"}
    assert sources.kube_contexts(env) == ["gke-prod", "kind-lab", "other"]
    assert sources.kube_contexts({**env, "SOMACTL_KUBECONFIG": str(b)}) == ["other", "kind-lab"]
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(KUBECONFIG)
    assert sources.kube_contexts({"HOME": str(tmp_path)}) == ["gke-prod", "kind-lab"]


def test_a_kube_context_option_completes_kubeconfig_contexts(tmp_path: Path) -> None:
    """No command has --kube-context yet: a table that has one, through the whole engine."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    param = {"name": "kube_context", "opts": ["--kube-context"], "kind": "kube-context"}
    table = {"format": 1, "globals": {}, "nodes": {"": {"group": True, "params": [param]}}}
    env = {
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "_SOMACTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "somactl\n--kube-context\nk",
        "COMP_CWORD": "2",
    }
    assert engine.answer(table, env) == ("kind-lab", 0)


@pytest.mark.parametrize(
    "env",
    [
        {"HOME": "/home/x"},
        {"HOME": "/home/x", "XDG_STATE_HOME": "/xdg/state", "XDG_CONFIG_HOME": "/xdg/config"},
        {"HOME": "/home/x/", "SOMACTL_CONFIG": "~/c.yaml"},
        {"HOME": "/home/x", "SOMACTL_STATE_DIR": "/srv/somactl", "SOMACTL_CONFIG": "/etc/s.yaml"},
    ],
)
def test_paths_are_the_config_layers_own(env: dict[str, str]) -> None:
    from somactl.config.settings import default_config_path, default_state_dir

    expected_state = env.get("SOMACTL_STATE_DIR") or default_state_dir(env)
    assert Path(paths.state_dir(env)) == Path(expected_state)
    assert Path(paths.config_path(env)) == default_config_path(env)


def test_loading_a_runbook_feeds_the_names_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from somactl.runbook.loader import load_runbook, shipped_path

    repo = Path(__file__).resolve().parents[2]
    state = tmp_path / "state"
    monkeypatch.setenv("SOMACTL_STATE_DIR", str(state))
    mine = tmp_path / "mine.yaml"
    mine.write_text((repo / "runbooks.yaml").read_text())
    rb = load_runbook(mine)
    env = {"SOMACTL_STATE_DIR": str(state)}
    real = str(mine.resolve())
    assert cache.runbook_names(real, "services", env) == list(rb.services)
    assert cache.runbook_names(real, "scenarios", env) == list(rb.scenarios)
    assert cache.runbook_names(real, "tools", env) == ["github", "notion", "slack", "jira"]
    load_runbook(shipped_path())  # the shipped file's names live in the table: not cached
    data = json.loads((state / cache.CACHE_NAME).read_text())
    assert list(data["runbooks"]) == [real]
    # an edited file is not trusted until it has been loaded again
    mine.write_text(mine.read_text() + "\n")
    assert cache.runbook_names(real, "services", env) == []
    load_runbook(mine)
    assert cache.runbook_names(real, "services", env) == list(rb.services)


def test_the_cache_keeps_the_latest_runbooks_only(tmp_path: Path) -> None:
    env = {"SOMACTL_STATE_DIR": str(tmp_path)}
    for i in range(cache.MAX_RUNBOOKS + 5):
        cache.remember_runbook(f"/r/{i}.yaml", i, i, {"services": [f"s{i}"]}, env)
    data = json.loads((tmp_path / cache.CACHE_NAME).read_text())
    assert list(data["runbooks"]) == [f"/r/{i}.yaml" for i in range(5, cache.MAX_RUNBOOKS + 5)]
    assert not list(tmp_path.glob("*.tmp"))


def test_an_unwritable_cache_is_silent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache.remember_runbook(
        "/r.yaml", 1, 1, {"services": ["a"]}, {"SOMACTL_STATE_DIR": str(blocker)}
    )


def test_callbacks_give_the_fast_paths_names(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """What Typer gets from somactl.complete.callbacks is what the fast path offers."""
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)

    class Root:
        def __init__(self) -> None:
            self.params: dict[str, Any] = {"runbooks": world.custom_runbooks, "context": None}

    class Ctx:
        def find_root(self) -> Root:
            return Root()

    assert callbacks.services(Ctx(), "b") == ["billing-api"]
    assert callbacks.contexts(Ctx(), "") == ["prod", "lab", "staging-eu"]
    assert callbacks.incidents(Ctx(), "INC-") == [*world.open_ids[::-1], *world.resolved_ids[::-1]]
    assert callbacks.severities(None, "P1") == ["P1"]
    assert callbacks.lab_scenarios(None, "mem") == ["memory-leak"]
    assert callbacks.kube_contexts(None, "kind") == ["kind-lab"]
    assert set(callbacks.BY_KIND) == set(sources.KINDS)
    for kind, cb in callbacks.BY_KIND.items():
        assert getattr(cb, callbacks.KIND_ATTR) == kind


def test_callbacks_plug_into_typer() -> None:
    """Typer accepts them as `autocompletion=` (it matches their parameters by name)."""
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()

    @app.command()
    def main(
        service: str = typer.Argument(..., autocompletion=callbacks.severities),
    ) -> None:
        typer.echo(service)

    from typer._completion_classes import completion_init

    completion_init()
    result = CliRunner().invoke(
        app,
        [],
        env={"_MAIN_COMPLETE": "complete_bash", "COMP_WORDS": "main P", "COMP_CWORD": "1"},
        prog_name="main",
    )
    assert result.output.split() == ["P0", "P1", "P2", "P3", "P4"]
