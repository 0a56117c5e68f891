"""somactl lab: a local SomaGent production to drill on (starting with its Kubernetes API)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from somactl.core.errors import UsageError
from somactl.core.exitcodes import ExitCode
from somactl.core.result import Result
from somactl.ui.cli import options
from somactl.ui.output import emit, exit_with, say, simple_table

HELP = "A whole SomaGent production on this machine, to break and drill on."

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None)

LAB_HELP = """
Examples:

\b
  somactl lab up                             # simulated Kubernetes, real Postgres/Redis/Prometheus
  somactl lab break gateway-down             # a bad deploy: crash loop, 100% 5xx
  somactl diagnose gateway-api               # ...then fix it with somactl mitigate
  somactl lab heal                           # or put everything back
  somactl lab drill                          # a random incident, timed until it is fixed
  eval "$(somactl lab env)"                  # point kubectl and somactl at the lab
  somactl lab down
  somactl lab kube-api                       # the simulator alone, seeded, in the foreground
  somactl lab kube-api --port 6443 --snapshot ~/lab.json
  export KUBECONFIG=~/.local/state/somactl/lab/kubeconfig
  kubectl get deploy                         # gateway-api, orchestrator, ...
  kubectl rollout history deploy/gateway-api
"""


@app.callback(epilog=LAB_HELP)
def main() -> None:
    """A whole SomaGent production on this machine, to break and drill on."""


@app.command("kube-api")
def kube_api(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Loopback port (0: pick a free one).")
    ] = 0,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Where to write the kubeconfig (default: $SOMACTL_STATE_DIR/lab/kubeconfig).",
            metavar="PATH",
        ),
    ] = None,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            help="JSON state file: restored at start if present, saved while running and at exit.",
            metavar="FILE",
        ),
    ] = None,
    tick: Annotated[
        float,
        typer.Option(
            "--tick", min=0.0, help="Seconds between controller ticks (0: the clock stands still)."
        ),
    ] = 1.0,
) -> None:
    """Run the simulated Kubernetes API (v1.32) alone in the foreground on 127.0.0.1.

    It is seeded with namespace somagent-production (gateway-api with three revisions,
    orchestrator, kamachiq-service, redis, postgres), writes a kubeconfig (cluster somactl-lab,
    context lab) and prints an `export KUBECONFIG=...` line. Ctrl-C or SIGTERM stops it.

    Example: somactl lab kube-api --port 6443 --snapshot lab.json
    """
    from somactl.lab.kube.runner import run_kube_api

    raise typer.Exit(run_kube_api(port=port, kubeconfig=kubeconfig, snapshot=snapshot, tick=tick))


DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="The lab's directory (default: $SOMACTL_STATE_DIR/lab).", metavar="DIR"
    ),
]


def _dir(path: Path | None) -> Path:
    import os

    from somactl.core.errors import UsageError
    from somactl.lab.stack import default_dir

    lab_dir = (path or default_dir(os.environ)).expanduser()
    # a file (or a NUL byte) given as --dir would surface as an OS error deep in the lab code
    if "\x00" in str(lab_dir) or (lab_dir.exists() and not lab_dir.is_dir()):
        raise UsageError(f"--dir {str(lab_dir)!r} is not a directory", "give the lab's directory")
    return lab_dir


@app.command("up")
def up(
    ctx: typer.Context,
    dir: DirOption = None,
    tools_port: Annotated[
        int,
        typer.Option(
            "--tools-port",
            min=0,
            max=65535,
            help="The tools API's port (the runbook's 8003; another if taken).",
        ),
    ] = 8003,
) -> None:
    """Start the lab (what is not running yet) and point a somactl context `lab` at it.

    Starts the simulated Kubernetes API, the SomaGent services (metrics, tools API, GitHub
    stand-in), a real PostgreSQL, Redis, Prometheus and exporters, all on 127.0.0.1. A second
    `up` starts nothing twice.

    Example: somactl lab up && kubectl --kubeconfig ~/.local/state/somactl/lab/kubeconfig get pods
    """
    import os

    from somactl.lab import stack
    from somactl.lab.runtime.procs import PortInUseError

    opts = options(ctx)
    lab_dir = _dir(dir)
    try:
        data = stack.up(lab_dir, env=os.environ, tools_port=tools_port)
    except PortInUseError:
        data = stack.up(lab_dir, env=os.environ, tools_port=0)

    def table(d: dict[str, Any]) -> str:
        lines = [
            (
                "lab already running"
                if d["already_running"]
                else f"lab up in {d['timings']['total']:.1f}s (started: {', '.join(d['started'])})"
            ),
            f"  kubernetes API   {d['kube_api']}   (kubeconfig {d['kubeconfig']})",
            f"  prometheus       {d['prometheus']}",
            f"  tools API        {d['tools_api']}",
            f"  github API       {d['github_api']}",
            f"  postgres         {d['postgres']}",
            f"  redis            {d['redis']}",
        ]
        if d["config"]:
            how = (
                "current context"
                if d["context_is_current"]
                else "use --context lab, or `somactl config use-context lab`"
            )
            lines.append(f"  somactl context  lab in {d['config']} ({how})")
        if d["scenarios"]:
            lines.append(f"  broken now       {', '.join(d['scenarios'])}")
        lines.append("next: somactl lab break --list")
        return "\n".join(lines)

    exit_with(emit(opts, Result("lab up", data), table))


@app.command("status")
def status(ctx: typer.Context, dir: DirOption = None) -> None:
    """Each lab process with its pid, ports and health.

    Example: somactl lab status
    """
    from somactl.lab import stack

    opts = options(ctx)
    lab_dir = _dir(dir)
    rows = stack.status(lab_dir)
    broken: list[str] = []
    with contextlib.suppress(stack.LabNotRunningError):
        broken = list(stack.load(lab_dir).data.get("scenarios", []))
    healthy = bool(rows) and all(r["health"] == "ok" for r in rows)
    data = {"dir": str(lab_dir), "components": rows, "scenarios": broken, "healthy": healthy}
    code = ExitCode.OK if healthy else ExitCode.PARTIAL if rows else ExitCode.PRECONDITION

    def table(d: dict[str, Any]) -> Any:
        if not d["components"]:
            return f"no lab in {d['dir']} (start one with `somactl lab up`)"
        tbl = simple_table(
            ["COMPONENT", "PID", "PORTS", "HEALTH"],
            [
                [
                    r["component"],
                    r["pid"],
                    ",".join(str(p) for p in r["ports"].values()) or "-",
                    r["health"],
                ]
                for r in d["components"]
            ],
        )
        return tbl

    result = Result("lab status", data, exit_code=code, status="ok" if healthy else "degraded")
    emit(opts, result, table)
    if broken and not opts.machine_output:
        say(f"broken on purpose: {', '.join(broken)} (somactl lab heal)")
    exit_with(code)


@app.command("down")
def down(ctx: typer.Context, dir: DirOption = None) -> None:
    """Stop every process the lab started (by pid; nothing else), even a half-started lab.

    Example: somactl lab down
    """
    from somactl.lab import stack

    opts = options(ctx)
    data = stack.down(_dir(dir))
    exit_with(
        emit(
            opts,
            Result("lab down", data),
            lambda d: (
                f"lab stopped ({len(d['stopped'])} processes)"
                if d["stopped"]
                else "nothing was running"
            ),
        )
    )


@app.command("reset")
def reset(ctx: typer.Context, dir: DirOption = None) -> None:
    """Stop the lab, wipe its directory (cluster state included) and start it from the seed.

    Example: somactl lab reset
    """
    import os

    from somactl.lab import stack

    opts = options(ctx)
    data = stack.reset(_dir(dir), env=os.environ)
    exit_with(emit(opts, Result("lab reset", data), lambda d: f"lab reset in {d['dir']}"))


@app.command("env")
def env(ctx: typer.Context, dir: DirOption = None) -> None:
    """Shell exports that point kubectl and somactl at the lab.

    Example: eval "$(somactl lab env)"
    """
    import os
    import shlex

    from somactl.lab import stack

    opts = options(ctx)
    data = stack.env_exports(_dir(dir), os.environ)
    exit_with(
        emit(
            opts,
            Result("lab env", data),
            lambda d: "\n".join(f"export {k}={shlex.quote(v)}" for k, v in d.items()),
        )
    )


def _scenario_list() -> list[dict[str, str]]:
    from somactl.lab.scenarios import SCENARIOS

    return [
        {
            "id": s.id,
            "title": s.title,
            "runbook_scenario": s.runbook_scenario,
            "description": s.description,
            "fix": s.fix,
        }
        for s in SCENARIOS.values()
    ]


@app.command("break")
def break_(
    ctx: typer.Context,
    scenario: Annotated[
        str | None, typer.Argument(help="One of `somactl lab break --list`.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="Explain each scenario.")] = False,
    dir: DirOption = None,
) -> None:
    """Break the lab the way the runbook's incidents break production.

    Example: somactl lab break gateway-down
    """
    from somactl.lab import scenarios, stack

    opts = options(ctx)
    if list_ or scenario is None:
        if scenario is None and not list_:
            raise UsageError("name a scenario to break", "`somactl lab break --list` shows them")

        def table(rows: list[dict[str, str]]) -> str:
            return "\n\n".join(
                f"{r['id']}  ({r['title']}; runbook: {r['runbook_scenario']})\n"
                f"  {r['description']}\n  fix: {r['fix']}"
                for r in rows
            )

        exit_with(emit(opts, Result("lab break", _scenario_list()), table))
        return
    stack.check_scenario(scenario)
    info = stack.require_running(_dir(dir))
    data = scenarios.break_scenario(info, scenario)
    exit_with(
        emit(
            opts,
            Result("lab break", data),
            lambda d: (
                f"broke {d['scenario']}: {d['title']} (runbook scenario {d['runbook_scenario']})\n"
                f"heal with `somactl lab heal {d['scenario']}`, or fix it as on-call would"
            ),
        )
    )


@app.command("heal")
def heal(
    ctx: typer.Context,
    scenario: Annotated[
        list[str] | None, typer.Argument(help="Scenarios to heal (default: every broken one).")
    ] = None,
    dir: DirOption = None,
) -> None:
    """Undo what `lab break` did.

    Example: somactl lab heal
    """
    from somactl.lab import scenarios, stack

    opts = options(ctx)
    for name in scenario or []:
        stack.check_scenario(name)
    info = stack.require_running(_dir(dir))
    data = scenarios.heal(info, list(scenario) if scenario else None)
    exit_with(
        emit(
            opts,
            Result("lab heal", data),
            lambda d: f"healed: {', '.join(d['healed']) or 'nothing was broken'}",
        )
    )


@app.command("drill")
def drill(
    ctx: typer.Context,
    dir: DirOption = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Pick the scenario repeatably.")
    ] = None,
    give_up: Annotated[
        str, typer.Option("--give-up", help="Stop the clock after this long.", metavar="DURATION")
    ] = "60m",
) -> None:
    """Game day: break one scenario at random, without saying which, and time the fix.

    Start with `somactl status` and `somactl diagnose`, as on a real page. The drill ends
    when the broken thing is fixed (or at --give-up, or Ctrl-C), and says what it was.

    Example: somactl lab drill
    """
    import random
    import signal
    import time

    from somactl.core.durations import human_duration, parse_duration
    from somactl.lab import scenarios, stack

    opts = options(ctx)
    limit = parse_duration(give_up, option="--give-up")
    info = stack.require_running(_dir(dir))
    name = random.Random(seed).choice(sorted(scenarios.SCENARIOS))  # noqa: S311 - a game

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the drill like Ctrl-C: say what was broken

    signal.signal(signal.SIGTERM, _on_term)
    began = time.monotonic()
    fixed, why, interrupted = False, "", False
    # the break is inside the try: a stop that lands while it is applied (or just after, before
    # the loop) still says what was broken and how to heal it
    try:
        scenarios.break_scenario(info, name)
        say("Drill started: something in production just broke. You are on call.")
        say("Start with `somactl status` / `somactl diagnose SERVICE`. The clock is running.")
        began = time.monotonic()
        while time.monotonic() - began < limit:
            time.sleep(5)
            fixed, why = scenarios.is_fixed(info, name)
            if fixed:
                break
    except KeyboardInterrupt:
        interrupted = True
        why = why or "the drill was stopped"
    elapsed = time.monotonic() - began
    scenario = scenarios.SCENARIOS[name]
    data = {
        "scenario": name,
        "title": scenario.title,
        "fixed": fixed,
        "seconds": round(elapsed),
        "evidence": why,
        "runbook_scenario": scenario.runbook_scenario,
    }
    if fixed:
        info.data["scenarios"] = [s for s in info.data.get("scenarios", []) if s != name]
        info.save()
    code = ExitCode.OK if fixed else ExitCode.INTERRUPTED if interrupted else ExitCode.FAILED
    exit_with(
        emit(
            opts,
            Result("lab drill", data, exit_code=code),
            lambda d: (
                f"{'FIXED' if d['fixed'] else 'NOT FIXED'} after {human_duration(d['seconds'])}: "
                f"it was {d['scenario']} ({d['title']}); {d['evidence']}"
                + ("" if d["fixed"] else f"\nheal with `somactl lab heal {d['scenario']}`")
            ),
        )
    )
