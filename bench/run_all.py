"""Every somactl bench in one run: one table of paired ratios to `python -c pass`, plus JSON.

    .venv/bin/python -m bench                      # everything, 15 rounds (about 6-8 minutes)
    .venv/bin/python -m bench --json bench.json    # ... and the figures as JSON
    .venv/bin/python -m bench --only startup,completion --rounds 20
    .venv/bin/python -m bench --quick              # CI: the import gates only, never timing

Each case is timed right after its own reference run (R = the machine's `python3 -c pass`) and
the figure is the median of the per-round ratios (bench/common.py); kubectl runs in the same
rounds where it does the same job. Budgets are printed next to the figures and never gated: the
machines are too noisy for that. What CI gates is which modules each light path imports (a
backend library on `--help`, or Typer on a TAB, is a regression whatever the clock says).

Groups (each reuses its own bench module's world):
  startup       `--help`, a group's `--help`, `runbook validate`; kubectl version / get --help
  completion    a TAB in bash/zsh (commands, services, incident ids); kubectl __complete
  incidents     `incident status` over 1,000 incidents and 100,000 events (bench/incidents.py)
  kill-queries  the kill-queries plan over 2,000 real Postgres sessions (a Postgres of its own,
                max_connections 2,100; sessions opened by a bounded pool, closed after)
  diagnose      against a whole lab (bench/diagnose.py): healthy, Postgres blackholed, the
                Kubernetes API dripping; 5,000 pods on a simulator of their own; kubectl get pods
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import REF, VENV_BIN, Case, measure

SOMACTL = str(VENV_BIN / "somactl")
REPO = Path(__file__).resolve().parent.parent
BACKENDS = {"kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"}
# the completion fast path answers before Typer: none of these may load on a TAB
COMPLETION_FORBIDDEN = {"typer", "click", "rich", "pydantic", "yaml", *BACKENDS}
COMPLETION_GATES = [
    ("bash", "somactl "),
    ("bash", "somactl diagnose "),
    ("zsh", "somactl incident show "),
    ("fish", "somactl -o "),
    ("zsh", "somactl lab break "),
]
GROUPS = ("startup", "completion", "incidents", "kill-queries", "diagnose")
KILL_SESSIONS = 2000


# -- the import gates (CI) -------------------------------------------------------------------------


def completion_gates(env: dict[str, str]) -> tuple[int, dict[str, list[str]]]:
    """Each TAB answered by the fast path (somactl.complete), with nothing heavy imported."""
    from bench.completion import tab

    failures = 0
    seen: dict[str, list[str]] = {}
    for shell, line in COMPLETION_GATES:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", SOMACTL],
            env={**os.environ, **tab(env, shell, line)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        mods = {
            ln.rsplit("|", 1)[1].strip()
            for ln in proc.stderr.splitlines()
            if ln.startswith("import time:") and "|" in ln
        }
        heavy = sorted({m.split(".")[0] for m in mods} & COMPLETION_FORBIDDEN)
        answered = proc.returncode == 0 and proc.stdout.strip() != ""
        fast = "somactl.complete.engine" in mods
        ok = answered and fast and not heavy
        name = f"{shell} {line!r}"
        why = (
            "" if ok else f"FAIL {heavy or ('no answer' if not answered else 'not the fast path')}"
        )
        print(f"import gate TAB {name:36} {why or 'ok'}")
        seen[name] = heavy
        failures += not ok
    return failures, seen


def all_gates() -> int:
    from bench import startup
    from bench.completion import world

    failures = startup.gates()
    with tempfile.TemporaryDirectory(prefix="somactl-gates-") as tmp, _saved_environ():
        env = world(Path(tmp))
        env.pop("MY_RUNBOOKS")
        bad, _ = completion_gates(env)
    return failures + bad


@contextlib.contextmanager
def _saved_environ() -> Iterator[None]:
    """bench.completion.world() points os.environ at its world; keep ours."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- the groups ------------------------------------------------------------------------------------


Figures = dict[str, Any]
Group = Callable[[int], tuple[list[dict[str, Any]], Figures]]


def group_startup(rounds: int) -> tuple[list[dict[str, Any]], Figures]:
    with tempfile.TemporaryDirectory(prefix="somactl-bench-") as tmp:
        env = {"SOMACTL_STATE_DIR": f"{tmp}/state", "SOMACTL_CONFIG": f"{tmp}/config.yaml"}
        cases = [
            Case("somactl --help", [SOMACTL, "--help"], env=env, limit=16),
            Case("somactl mitigate --help (a group)", [SOMACTL, "mitigate", "--help"], env=env),
            Case("somactl runbook validate", [SOMACTL, "runbook", "validate"], env=env, limit=25),
        ]
        kubectl = shutil.which("kubectl")
        if kubectl:
            cases += [
                Case("kubectl version --client", [kubectl, "version", "--client"]),
                Case("kubectl get --help (a group)", [kubectl, "get", "--help"]),
            ]
        return measure(cases, rounds), {}


def group_completion(rounds: int) -> tuple[list[dict[str, Any]], Figures]:
    from bench.completion import tab, world

    with tempfile.TemporaryDirectory(prefix="somactl-bench-") as tmp, _saved_environ():
        env = world(Path(tmp))
        env.pop("MY_RUNBOOKS")
        cases = [
            Case("TAB bash somactl <TAB>", [SOMACTL], env=tab(env, "bash", "somactl "), limit=3),
            Case(
                "TAB zsh  somactl diagnose <TAB>",
                [SOMACTL],
                env=tab(env, "zsh", "somactl diagnose "),
                limit=3,
            ),
            Case(
                "TAB bash somactl incident show <TAB>",
                [SOMACTL],
                env=tab(env, "bash", "somactl incident show "),
                limit=3,
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
        return measure(cases, rounds), {}


def group_incidents(rounds: int) -> tuple[list[dict[str, Any]], Figures]:
    from bench.incidents import build

    with tempfile.TemporaryDirectory(prefix="somactl-bench-") as tmp:
        state = Path(tmp) / "state"
        n_inc, n_ev = build(state)
        env = {
            "SOMACTL_STATE_DIR": str(state),
            "SOMACTL_CONFIG": str(Path(tmp) / "none.yaml"),
            "HOME": tmp,
        }
        cases = [
            Case(
                "incident status (1,000 incidents)",
                [SOMACTL, "incident", "status"],
                env=env,
                limit=30,
            ),
            Case(
                "-o json incident status (1,000 incidents)",
                [SOMACTL, "-o", "json", "incident", "status"],
                env=env,
                limit=30,
            ),
        ]
        return measure(cases, rounds), {"incidents": n_inc, "timeline events": n_ev}


def _open_sessions(dsn: str, count: int, workers: int = 8) -> list[Any]:
    """`count` sessions left idle in transaction, opened by a bounded pool of workers."""
    import psycopg

    def one(_: int) -> Any:
        conn = psycopg.connect(dsn, application_name="bench-load", connect_timeout=30)
        conn.execute("SELECT 1")  # BEGIN; ... left open: idle in transaction
        return conn

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(count)))


def group_kill_queries(rounds: int) -> tuple[list[dict[str, Any]], Figures]:
    from somactl.lab.runtime import start_postgres

    with tempfile.TemporaryDirectory(prefix="somactl-bench-kq-") as tmp:
        root = Path(tmp)
        print(f"starting a Postgres with max_connections {KILL_SESSIONS + 100} ...", flush=True)
        pg = start_postgres(root / "pg", max_connections=KILL_SESSIONS + 100)
        sessions: list[Any] = []
        try:
            t0 = time.monotonic()
            sessions = _open_sessions(pg.app_dsn, KILL_SESSIONS)
            opened = time.monotonic() - t0
            print(f"{len(sessions)} sessions opened in {opened:.1f}s", flush=True)
            time.sleep(1.1)  # --older-than 1s: every one of them is a target
            env = {
                "SOMACTL_STATE_DIR": str(root / "state"),
                "SOMACTL_CONFIG": str(root / "none.yaml"),
                "HOME": str(root),
                "SOMACTL_PG_DSN": (
                    f"host={pg.host} port={pg.port} user={pg.oncall_user} dbname={pg.dbname}"
                ),
                "PGPASSWORD": pg.password_file(pg.oncall_user).read_text().strip(),
            }
            argv = [
                SOMACTL,
                "-o",
                "json",
                "mitigate",
                "kill-queries",
                "--older-than",
                "1s",
                "--state",
                "idle-in-transaction",
                "--dry-run",
            ]
            probe = subprocess.run(
                argv, env={**os.environ, **env}, capture_output=True, text=True, check=False
            )
            if probe.returncode != 0:
                raise SystemExit(f"kill-queries plan failed ({probe.returncode}): {probe.stderr}")
            plan = json.loads(probe.stdout)["data"]
            targets = len(plan["plan"]["details"]["targets"])
            cases = [Case(f"kill-queries plan ({KILL_SESSIONS:,} sessions)", argv, env=env)]
            psql = _psql()
            if psql:
                cases.append(
                    Case(
                        "psql: count pg_stat_activity (reference)",
                        [psql, "-XAtc", "SELECT count(*) FROM pg_stat_activity", pg.app_dsn],
                    )
                )
            rows = measure(cases, rounds)
            figures = {
                "sessions opened": len(sessions),
                "seconds to open them (8 workers)": round(opened, 1),
                "plan targets": targets,
            }
            return rows, figures
        finally:
            for conn in sessions:
                with contextlib.suppress(Exception):
                    conn.close()
            pg.stop()


def _psql() -> str | None:
    """The real psql binary (Debian's /usr/bin/psql is a perl wrapper: 2.5 x R)."""
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/psql")) if root.exists() else []
    return str(found[-1]) if found else shutil.which("psql")


def group_diagnose(rounds: int) -> tuple[list[dict[str, Any]], Figures]:
    from bench.diagnose import NAMESPACE, median, run, wait_healthy
    from somactl.lab import stack
    from somactl.lab.kube import write_kubeconfig
    from tests.helpers.faultproxy import FaultProxy

    root = Path(tempfile.mkdtemp(prefix="somactl-bench-diagnose-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOMACTL_", "PG", "KUBE"))}
    env.update(
        SOMACTL_CONFIG=str(root / "config.yaml"),
        SOMACTL_STATE_DIR=str(root / "state"),
        KUBECACHEDIR=str(root / "kubecache"),
        HOME=str(root / "home"),
        NO_COLOR="1",
    )
    (root / "home").mkdir()
    lab_dir = root / "state" / "lab"
    print(f"starting the lab in {lab_dir} ...", flush=True)
    stack.up(lab_dir, env=env, tools_port=0)
    figures: Figures = {}
    server: subprocess.Popen[bytes] | None = None
    proxies: list[FaultProxy] = []
    try:
        info = stack.load(lab_dir)
        wait_healthy(env)
        pg = info.pg
        kube_host, kube_port = info.kube_url.split("//")[1].rsplit(":", 1)
        blackhole = FaultProxy((pg["host"], int(pg["port"])), mode="blackhole")
        drip = FaultProxy((kube_host, int(kube_port)), mode="drip")
        proxies += [blackhole, drip]
        pg_env = {
            **env,
            "SOMACTL_PG_DSN": (
                f"host=127.0.0.1 port={blackhole.port} user=oncall dbname={pg['dbname']}"
            ),
        }
        kc_drip = write_kubeconfig(root / "kc-drip", f"http://{drip.address}", NAMESPACE)
        drip_env = {**env, "SOMACTL_KUBECONFIG": str(kc_drip), "SOMACTL_KUBE_CONTEXT": "lab"}

        # 5,000 pods on a quiet simulator of their own, in a process of its own (bench/diagnose)
        kc5k = root / "kc-5k"
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.diagnose", "--serve-5k", str(kc5k)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            cwd=str(REPO),
        )
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the 5,000-pod simulator did not start")
        big_env = {**env, "SOMACTL_KUBECONFIG": str(kc5k), "SOMACTL_KUBE_CONTEXT": "lab"}

        seen: dict[str, list[dict[str, Any]]] = {}

        def diag(name: str, case_env: dict[str, str], *extra: str) -> Callable[[], None]:
            argv = ["-o", "json", *extra, "diagnose", "gateway-api"]

            def call() -> None:
                wall, rc, maxrss, out = run(argv, case_env)
                data = json.loads(out)["data"] if out else {}
                seen.setdefault(name, []).append(
                    {"wall": wall, "rc": rc, "rss": maxrss, "data": data}
                )

            return call

        kubectl = shutil.which("kubectl")
        cases = [
            Case("diagnose gateway-api (healthy lab)", func=diag("healthy", env)),
            Case(
                "diagnose, Postgres blackholed (--timeout 2s)",
                func=diag("blackhole", pg_env, "--timeout", "2s"),
            ),
            Case(
                "diagnose, Kubernetes API dripping (--timeout 2s)",
                func=diag("drip", drip_env, "--timeout", "2s"),
            ),
            Case("diagnose gateway-api with 5,000 pods", func=diag("5k", big_env)),
        ]
        if kubectl:
            kenv = {"KUBECONFIG": info.data["kube"]["kubeconfig"], "HOME": env["HOME"]}
            cases.append(
                Case(
                    "kubectl get pods (the lab)",
                    [kubectl, "get", "pods", "-n", NAMESPACE, "-l", "app=gateway-api"],
                    env={**kenv, "KUBECACHEDIR": str(root / "kubecache-lab")},
                )
            )
            cases.append(
                Case(
                    "kubectl get pods (5,000 pods)",
                    [kubectl, "get", "pods", "-n", NAMESPACE, "-l", "app=gateway-api"],
                    env={
                        "KUBECONFIG": str(kc5k),
                        "HOME": env["HOME"],
                        "KUBECACHEDIR": str(root / "kubecache-5k"),
                    },
                )
            )
        rows = measure(cases, rounds)
        r_ms = float(rows[-1]["ms_median"]) / 1000
        healthy = seen["healthy"][1:]  # the first call was measure()'s warm-up
        overhead = [h["data"]["timing"]["overhead_seconds"] for h in healthy]
        past = [
            h["wall"]
            - min(
                h["data"]["timing"]["deadline_seconds"],
                h["data"]["timing"]["slowest_check_seconds"],
            )
            for h in healthy
        ]
        figures["healthy: exit codes"] = sorted({h["rc"] for h in healthy})
        figures["healthy: overhead in-process (run - slowest check) x R (budget 5)"] = round(
            median(overhead) / r_ms, 2
        )
        figures["healthy: process wall - slowest check x R"] = round(median(past) / r_ms, 2)
        for key in ("blackhole", "drip"):
            runs = seen[key][1:]
            late = [r["wall"] - 2.0 for r in runs]
            figures[f"{key}: exit codes"] = sorted({r["rc"] for r in runs})
            figures[f"{key}: ms past the 2 s deadline, median (budget 200)"] = round(
                median(late) * 1000, 1
            )
            figures[f"{key}: ms past the 2 s deadline, worst"] = round(max(late) * 1000, 1)
        big = seen["5k"][1:]
        pods = next(c for c in big[-1]["data"]["checks"] if c["id"] == "k8s.pods")
        figures["5,000 pods: pods listed"] = pods["evidence"]["total"]
        figures["5,000 pods: wall s, median (budget 3)"] = round(
            median([b["wall"] for b in big]), 2
        )
        figures["5,000 pods: peak RSS MB, worst (budget 250)"] = round(
            max(b["rss"] for b in big) / 1024, 1
        )
        return rows, figures
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        for p in proxies:
            p.close()
        stack.down(lab_dir)
        shutil.rmtree(root, ignore_errors=True)


GROUP_FUNCS: dict[str, Group] = {
    "startup": group_startup,
    "completion": group_completion,
    "incidents": group_incidents,
    "kill-queries": group_kill_queries,
    "diagnose": group_diagnose,
}


# -- the report ------------------------------------------------------------------------------------


def print_table(rows: list[dict[str, Any]], rounds: int) -> None:
    print(f"\nsomactl bench ({rounds} rounds; median of paired ratios to R = {' '.join(REF)})")
    print(f"{'group':13} {'case':52} {'x R':>8} {'min':>8} {'ms':>9}  budget")
    for r in rows:
        budget = "" if r["limit"] is None else f"<= {r['limit']}x {'ok' if r['within'] else 'OVER'}"
        print(
            f"{r['group']:13} {r['case']:52} {r['ratio_median']:>8} {r['ratio_min']:>8}"
            f" {r['ms_median']:>9}  {budget}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="the import gates only (what CI runs)")
    ap.add_argument("--rounds", type=int, default=15, help="rounds per case (default 15)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    ap.add_argument("--only", metavar="GROUPS", help=f"comma-separated, of: {', '.join(GROUPS)}")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    failures = all_gates()
    if args.quick:
        print(f"\nimport gates: {'FAILED ' + str(failures) if failures else 'all ok'}")
        return 1 if failures else 0
    chosen = [g.strip() for g in args.only.split(",")] if args.only else list(GROUPS)
    unknown = sorted(set(chosen) - set(GROUPS))
    if unknown:
        ap.error(f"unknown group(s): {', '.join(unknown)} (known: {', '.join(GROUPS)})")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Figures] = {}
    for group in chosen:
        print(f"\n== {group}", flush=True)
        t0 = time.monotonic()
        group_rows, group_figures = GROUP_FUNCS[group](args.rounds)
        rows += [{**r, "group": group} for r in group_rows]
        figures[group] = {**group_figures, "seconds": round(time.monotonic() - t0, 1)}
    print_table(rows, args.rounds)
    print("\nfigures")
    for group, values in figures.items():
        for key, value in values.items():
            print(f"  {group:13} {key:62} {value}")
    print(
        f"\nbench done in {time.monotonic() - started:.0f}s; import gates: "
        f"{'FAILED ' + str(failures) if failures else 'all ok'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "reference": REF,
                    "rounds": args.rounds,
                    "rows": rows,
                    "figures": figures,
                    "gate_failures": failures,
                },
                indent=2,
            )
        )
    return 1 if failures else 0
