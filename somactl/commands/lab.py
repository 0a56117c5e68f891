"""somactl lab: a local SomaGent production to drill on (starting with its Kubernetes API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="A local SomaGent production to drill on: kube-api.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

LAB_HELP = """
Examples:

\b
  somactl lab kube-api                       # seeded simulator on a free port
  somactl lab kube-api --port 6443 --snapshot ~/lab.json
  export KUBECONFIG=~/.local/state/somactl/lab/kubeconfig
  kubectl get deploy                         # gateway-api, orchestrator, ...
  kubectl rollout history deploy/gateway-api
"""


@app.callback(epilog=LAB_HELP)
def main() -> None:
    """A local SomaGent production to drill on: kube-api."""


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
