"""How fast a TAB answers: somactl's completion fast path against `python -c pass` and kubectl.

    .venv/bin/python -m bench.completion             # 15 rounds, prints ratios
    .venv/bin/python -m bench.completion --rounds 30 --json out.json

Budget (x R = `python -c pass`, printed, never gated): a TAB within 3x R, faster than
kubectl's own completion (`kubectl __complete get ''`, about 3.5x here). Typer's own completion
(SOMACTL_COMPLETE_SLOW=1) is measured for comparison.

Every case runs the real console script (.venv/bin/somactl) in a throwaway world: a config with
contexts, an incident store, and a runbooks.yaml of the user's own loaded once (the names cache).
Bytecode is compiled first: this machine sets PYTHONDONTWRITEBYTECODE, and an installed package
has its .pyc files (without them every import compiles, 3x slower).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import VENV_BIN, Case, measure, report

SOMACTL = str(VENV_BIN / "somactl")
REPO = Path(__file__).resolve().parent.parent
BUDGET = 3.0

CONFIG = """\
version: 1
current-context: prod
contexts:
  prod: {namespace: somagent-production}
  lab: {namespace: somagent-production}
  staging: {namespace: staging}
"""


def world(root: Path) -> dict[str, str]:
    """A config, a kubeconfig on a closed loopback port, 20 incidents, a cached own runbook."""
    from somactl.incident.store import IncidentStore

    (root / "home").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "SOMACTL_STATE_DIR": str(root / "state"),
        "SOMACTL_CONFIG": str(root / "config.yaml"),
        "KUBECONFIG": str(root / "kubeconfig"),
    }
    (root / "config.yaml").write_text(CONFIG)
    with socket.socket() as s:  # a port nothing listens on: kubectl's discovery is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
        f"    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n"
        "    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n"
    )
    with IncidentStore(root / "state") as store:
        for i in range(20):
            inc = store.declare(
                severity="P2",
                title=f"bench {i}",
                impact="-",
                actor="bench",
                now=datetime(2026, 1, 1, 0, i, tzinfo=UTC),
            )
            if i % 3:
                store.resolve(inc.num, root_cause="-", fix="-", actor="bench")
    mine = root / "my-runbooks.yaml"
    shutil.copy(REPO / "runbooks.yaml", mine)
    from somactl.runbook.loader import load_runbook

    # loading it feeds the completion names cache, in this world's state dir
    os.environ["SOMACTL_STATE_DIR"] = env["SOMACTL_STATE_DIR"]
    load_runbook(mine)
    env["MY_RUNBOOKS"] = str(mine)
    return env


def tab(env: dict[str, str], shell: str, line: str, **extra: str) -> dict[str, str]:
    if shell == "bash":
        words = line.split(" ")
        req = {"COMP_WORDS": "\n".join(words), "COMP_CWORD": str(len(words) - 1)}
    else:
        req = {"_TYPER_COMPLETE_ARGS": line}
        if shell == "fish":
            req["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    return {**env, "_SOMACTL_COMPLETE": f"complete_{shell}", **req, **extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    compileall.compile_dir(REPO / "somactl", quiet=1)
    with tempfile.TemporaryDirectory(prefix="somactl-bench-") as tmp:
        env = world(Path(tmp))
        mine = env.pop("MY_RUNBOOKS")
        cases = [
            Case("bash   somactl <TAB>", [SOMACTL], env=tab(env, "bash", "somactl "), limit=BUDGET),
            Case(
                "zsh    somactl diag<TAB>",
                [SOMACTL],
                env=tab(env, "zsh", "somactl diag"),
                limit=BUDGET,
            ),
            Case(
                "zsh    somactl diagnose <TAB> (services)",
                [SOMACTL],
                env=tab(env, "zsh", "somactl diagnose "),
                limit=BUDGET,
            ),
            Case(
                "fish   somactl -o <TAB> (choices)",
                [SOMACTL],
                env=tab(env, "fish", "somactl -o "),
                limit=BUDGET,
            ),
            Case(
                "bash   somactl incident show <TAB> (SQLite)",
                [SOMACTL],
                env=tab(env, "bash", "somactl incident show "),
                limit=BUDGET,
            ),
            Case(
                "zsh    somactl --context <TAB> (config)",
                [SOMACTL],
                env=tab(env, "zsh", "somactl --context "),
                limit=BUDGET,
            ),
            Case(
                "bash   --runbooks mine diagnose <TAB> (cache)",
                [SOMACTL],
                env=tab(env, "bash", f"somactl --runbooks {mine} diagnose "),
                limit=BUDGET,
            ),
            Case(
                "zsh    somactl diagnose <TAB> via Typer (SLOW=1)",
                [SOMACTL],
                env=tab(env, "zsh", "somactl diagnose ", SOMACTL_COMPLETE_SLOW="1"),
            ),
        ]
        # The editable install's .pth (imported by site at every start, R included) costs more
        # than the whole answer here; without site, what does the fast path add to a bare start?
        bare = {"PYTHONPATH": str(REPO)}
        cases += [
            Case(
                "python -S -c pass (no site, no editable .pth)",
                [sys.executable, "-S", "-c", "pass"],
            ),
            Case(
                "zsh    somactl diagnose <TAB> under python -S",
                [sys.executable, "-S", SOMACTL],
                env={**tab(env, "zsh", "somactl diagnose "), **bare},
            ),
        ]
        kubectl = shutil.which("kubectl")
        if kubectl:
            cases.append(
                Case(
                    "kubectl __complete get ''",
                    [kubectl, "__complete", "get", ""],
                    env={"KUBECONFIG": env["KUBECONFIG"], "HOME": env["HOME"]},
                )
            )
        else:
            print("kubectl not found: its reference case is skipped")
        for case in cases:  # each case really answers something (else its figure means little)
            if case.limit is not None and case.argv is not None:
                proc = subprocess.run(
                    case.argv,
                    env={**os.environ, **case.env},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                count = len([w for w in proc.stdout.split("\n") if w.strip()])
                print(f"{case.name:52} {count} lines of candidates")
                if count == 0 or proc.stderr:
                    raise SystemExit(f"{case.name}: no answer ({proc.stderr[-300:]})")
        rows = measure(cases, args.rounds)
    report("somactl shell completion (a TAB)", rows, args.rounds, args.json)
    fast = [r for r in rows if r["limit"] is not None]
    worst = max(float(str(r["ratio_median"])) for r in fast)
    kube = next((r for r in rows if str(r["case"]).startswith("kubectl")), None)
    print(
        f"\nslowest fast-path case: {worst:.2f}x R (budget {BUDGET}x)"
        + (f"; kubectl's own: {kube['ratio_median']}x R" if kube else "")
    )
    by_name = {str(r["case"]): float(str(r["ratio_median"])) for r in rows}
    bare_ref = by_name["python -S -c pass (no site, no editable .pth)"]
    bare_tab = by_name["zsh    somactl diagnose <TAB> under python -S"]
    print(
        f"without site (no editable .pth): a TAB is {bare_tab / bare_ref:.2f}x a bare "
        f"`python -S -c pass`; the .pth alone is {1 / bare_ref:.2f}x a bare start"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
