"""Start-up cost of somactl's light paths, and the import gates CI enforces.

    .venv/bin/python -m bench.startup            # full: 15 rounds, prints ratios + JSON
    .venv/bin/python -m bench.startup --quick    # CI: import gates only (never timing)

Budgets (x R = `python -c pass`, printed, never gated): `somactl --help` <= 16,
`somactl runbook validate` <= 25.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from bench.common import VENV_BIN, Case, imported_modules, measure, report

SOMACTL = str(VENV_BIN / "somactl")
BACKENDS = {"kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"}

# path -> (argv, modules that must NOT be imported)
GATES: dict[str, tuple[list[str], set[str]]] = {
    "somactl --help": (["--help"], BACKENDS),
    "somactl config --help": (["config", "--help"], BACKENDS),
    "somactl config show": (["config", "show"], BACKENDS),
    "somactl runbook --help": (["runbook", "--help"], BACKENDS),
    "somactl runbook validate": (["runbook", "validate"], BACKENDS),
    "somactl severity classify": (["severity", "classify", "--p95", "6"], BACKENDS),
    "somactl incident --help": (["incident", "--help"], BACKENDS),
    "somactl incident status": (["incident", "status"], BACKENDS),
    "somactl lab --help": (["lab", "--help"], BACKENDS),
    "somactl audit --help": (["audit", "--help"], BACKENDS),
    "somactl diagnose --help": (["diagnose", "--help"], BACKENDS),
    "somactl mitigate --help": (["mitigate", "--help"], BACKENDS),
    "somactl status --help": (["status", "--help"], BACKENDS),
}


def gates() -> int:
    import tempfile

    failures = 0
    tmp = tempfile.mkdtemp(prefix="somactl-gates-")
    env = {"SOMACTL_STATE_DIR": f"{tmp}/state", "SOMACTL_CONFIG": f"{tmp}/config.yaml"}
    for name, (argv, forbidden) in GATES.items():
        mods = imported_modules(f"from somactl.app import run\nrun({argv!r})", env)
        bad = sorted(m for m in forbidden if m in mods)
        print(f"import gate {name:40} {'FAIL ' + ','.join(bad) if bad else 'ok'}")
        failures += bool(bad)
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="import gates only (CI)")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    failures = gates()
    if args.quick:
        return 1 if failures else 0
    cases = [
        Case("somactl --help", [SOMACTL, "--help"], limit=16),
        Case("somactl config --help", [SOMACTL, "config", "--help"]),
        Case("somactl runbook validate", [SOMACTL, "runbook", "validate"], limit=25),
        Case("somactl severity classify --p95 6", [SOMACTL, "severity", "classify", "--p95", "6"]),
        Case("import typer (floor of any Typer app)", [sys.executable, "-c", "import typer.main"]),
        Case(
            "kubernetes client: import + Apps/Core/AutoscalingV2 APIs",
            [
                sys.executable,
                "-c",
                "from kubernetes import client, config\n"
                "client.AppsV1Api(); client.CoreV1Api(); client.AutoscalingV2Api()",
            ],
        ),
    ]
    if shutil.which("kubectl"):
        cases.append(Case("kubectl version --client", ["kubectl", "version", "--client"]))
    rows = measure(cases, args.rounds)
    report("somactl start-up", rows, args.rounds, args.json)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
