"""Each shell, for real, with the shipped scripts: what does TAB offer?

bash: the script's function with COMP_WORDS/COMP_CWORD, as bash's programmable completion calls
it. zsh: an interactive zsh on a pseudo-terminal, compinit, the script sourced (or autoloaded from
fpath after `somactl completion install zsh`), a TAB, and compadd wrapped to print what it was
given. fish: `complete --do-complete`, which runs the script's condition and arguments.
With CI=true a missing shell is a failure, otherwise a skip naming the Debian package.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.completion.conftest import COMPLETIONS, World, make_world, run_somactl
from tests.helpers import require_binary

ZSHRC = r"""
PROMPT='%% '
RPROMPT=''
unsetopt BEEP
{load}
autoload -Uz compinit && compinit -u -d "$ZDOTDIR/.zcompdump"
{source}
# print what completion hands to compadd (the matches for the word under the cursor)
compadd () {{
  if [[ ${{@[1,(i)(-|--)]}} == *-(O|A|D)\ * ]]; then
    builtin compadd "$@"
    return $?
  fi
  typeset -a __hits
  builtin compadd -A __hits "$@"
  local __h
  for __h in "${{__hits[@]}}"; do print -r -- "HIT:${{__h}}"; done
}}
_tab_and_mark() {{ zle complete-word; print -r -- "<<DONE>>" }}
zle -N _tab_and_mark
bindkey '^I' _tab_and_mark
print -r -- "<<READY>>"
"""


def bash_tab(env: dict[str, str], line: str, cwd: Path) -> list[str]:
    bash = require_binary("bash", "bash")
    words = line.split(" ")
    script = f"""
source {COMPLETIONS / "somactl.bash"}
complete -p somactl >/dev/null || exit 3
COMP_WORDS=({" ".join(f"'{w}'" for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
_somactl_completion somactl "{words[-1]}" "{words[-2] if len(words) > 1 else ""}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    proc = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [w for w in proc.stdout.split("\n") if w]


def zsh_tab(env: dict[str, str], line: str, zdotdir: Path, *, autoload: bool = False) -> list[str]:
    zsh = require_binary("zsh", "zsh")
    zdotdir.mkdir(parents=True, exist_ok=True)
    if autoload:
        zshrc = ZSHRC.format(load="fpath=(~/.zfunc $fpath)", source="")
    else:
        zshrc = ZSHRC.format(load="", source=f"source {COMPLETIONS / '_somactl'}")
    (zdotdir / ".zshrc").write_text(zshrc)
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [zsh, "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "ZDOTDIR": str(zdotdir), "TERM": "xterm"},
        cwd=zdotdir,
        start_new_session=True,
    )
    os.close(slave)
    buf = b""

    def read_until(marker: bytes, timeout: float = 20.0) -> None:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while marker not in buf:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"zsh: no {marker!r} in time; got {buf[-800:]!r}")
            buf += os.read(master, 65536)

    try:
        read_until(b"<<READY>>")
        os.write(master, line.encode() + b"\t")
        read_until(b"<<DONE>>")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        os.close(master)
    text = buf.decode(errors="replace")
    assert "command not found" not in text and "no such file" not in text.lower(), text
    return sorted(set(re.findall(r"HIT:([^\r\n]*)", text)))


def fish_tab(env: dict[str, str], line: str, cwd: Path) -> list[str]:
    fish = require_binary("fish", "fish")
    script = f"source {COMPLETIONS / 'somactl.fish'}; complete --do-complete '{line}'"
    proc = subprocess.run(
        [fish, "--no-config", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [row.split("\t")[0] for row in proc.stdout.split("\n") if row]


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory without files, so that file-name fallbacks offer nothing."""
    return tmp_path_factory.mktemp("cwd")


SERVICES = [
    "gateway-api",
    "orchestrator",
    "kamachiq-service",
    "tool-service",
    "postgres",
    "redis",
    "github",
    "notion",
    "slack",
    "jira",
]


def cases(world: World) -> list[tuple[str, list[str]]]:
    """(line, what TAB offers) in the order somactl gives them."""
    return [
        ("somactl diag", ["diagnose"]),
        ("somactl diagnose ", SERVICES),
        ("somactl diagnose g", ["gateway-api", "github"]),
        ("somactl -o ", ["table", "json", "yaml"]),
        ("somactl -o j", ["json"]),
        ("somactl incident show ", [*world.open_ids[::-1], *world.resolved_ids[::-1]]),
        ("somactl incident declare --severity ", ["P0", "P1", "P2", "P3", "P4"]),
        ("somactl --context ", ["prod", "lab", "staging-eu"]),
        ("somactl lab break mem", ["memory-leak"]),
        ("somactl tools health ", ["github", "notion", "slack", "jira"]),
        (f"somactl --runbooks {world.custom_runbooks} diagnose b", ["billing-api"]),
        ("somactl incident show INC-1 -o ", ["table", "json", "yaml"]),
        ("somactl completion show ", ["bash", "zsh", "fish"]),
    ]


def test_bash(world: World, empty_dir: Path) -> None:
    for line, expected in cases(world):
        assert bash_tab(world.env, line, empty_dir) == expected, line


def test_zsh(world: World, tmp_path: Path) -> None:
    for line, expected in cases(world):
        assert zsh_tab(world.env, line, tmp_path / "zdot") == sorted(expected), line


def test_zsh_after_install_autoloads_from_fpath(tmp_path: Path) -> None:
    """`somactl completion install zsh`, then the first TAB already completes (autoload)."""
    world = make_world(tmp_path / "w")
    proc = run_somactl(["completion", "install", "zsh"], world.env)
    assert proc.returncode == 0, proc.stderr
    assert (Path(world.env["HOME"]) / ".zfunc" / "_somactl").is_file()
    zdot = tmp_path / "zdot"
    assert zsh_tab(world.env, "somactl diag", zdot, autoload=True) == ["diagnose"]
    assert zsh_tab(world.env, "somactl -o ", zdot, autoload=True) == ["json", "table", "yaml"]


def test_fish(world: World, empty_dir: Path) -> None:
    for line, expected in cases(world):
        assert fish_tab(world.env, line, empty_dir) == sorted(expected), line


def test_nothing_to_offer_falls_back_to_file_names(world: World, tmp_path: Path) -> None:
    """No candidates: bash and fish complete file names (zsh: `_files`), like Typer's scripts."""
    (tmp_path / "runbooks-mine.yaml").write_text("")
    line = "somactl --runbooks run"
    assert fish_tab(world.env, line, tmp_path) == ["runbooks-mine.yaml"]
    zdot = tmp_path / "zdot"
    (zdot).mkdir()
    (zdot / "runbooks-mine.yaml").write_text("")
    assert zsh_tab(world.env, line, zdot) == ["runbooks-mine.yaml"]
    assert bash_tab(world.env, line, tmp_path) == []  # bash's `-o default` takes over
