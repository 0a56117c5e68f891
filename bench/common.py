"""Shared bench machinery: interleaved, paired ratios to `python -c pass` (the machines are noisy).

Every case is timed right after its own reference run, and the figure reported is the median of
the per-round ratios. Only ratios measured in one run are comparable; milliseconds are printed
for orientation only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def _reference_python() -> str:
    """The machine's `python3`, as the budgets mean it (SOMACTL_BENCH_REF overrides).

    Not this venv's interpreter: its site-packages (the editable install's finder, setuptools'
    distutils hack) add ~13 ms to every start, which would make every ratio look half as big.
    Not a pyenv shim either (~60 ms of shell).
    """
    override = os.environ.get("SOMACTL_BENCH_REF")
    if override:
        return override
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            return candidate
    return sys.executable


REF = [_reference_python(), "-c", "pass"]


@dataclass
class Case:
    name: str
    argv: Sequence[str] | None = None
    func: Callable[[], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    limit: float | None = None  # the budget in x R, printed next to the figure (never gated)


def _time_argv(argv: Sequence[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
        check=False,
        timeout=120,
    )
    return time.perf_counter() - t0


def _time(case: Case) -> float:
    if case.func is not None:
        t0 = time.perf_counter()
        case.func()
        return time.perf_counter() - t0
    assert case.argv is not None
    return _time_argv(case.argv, case.env)


def measure(cases: Sequence[Case], rounds: int) -> list[dict[str, object]]:
    for case in cases:  # warm-up: pyc caches, page cache
        _time(case)
    ratios: dict[str, list[float]] = {c.name: [] for c in cases}
    secs: dict[str, list[float]] = {c.name: [] for c in cases}
    refs: list[float] = []
    for _ in range(rounds):
        for case in cases:
            ref = _time_argv(REF, {})
            t = _time(case)
            refs.append(ref)
            ratios[case.name].append(t / ref)
            secs[case.name].append(t)
    rows: list[dict[str, object]] = []
    for case in cases:
        med = statistics.median(ratios[case.name])
        rows.append(
            {
                "case": case.name,
                "ratio_median": round(med, 2),
                "ratio_min": round(min(ratios[case.name]), 2),
                "ms_median": round(statistics.median(secs[case.name]) * 1000, 1),
                "limit": case.limit,
                "within": None if case.limit is None else med <= case.limit,
            }
        )
    rows.append(
        {
            "case": f"R = {REF[0]} -c pass",
            "ratio_median": 1.0,
            "ratio_min": 1.0,
            "ms_median": round(statistics.median(refs) * 1000, 1),
            "limit": None,
            "within": None,
        }
    )
    return rows


def report(title: str, rows: list[dict[str, object]], rounds: int, json_path: str | None) -> None:
    print(f"{title} ({rounds} rounds, median of paired ratios to R)")
    print(f"{'case':52} {'x R':>7} {'min':>7} {'ms':>8}  budget")
    for r in rows:
        budget = "" if r["limit"] is None else f"<= {r['limit']}x {'ok' if r['within'] else 'OVER'}"
        figures = f"{r['ratio_median']:>7} {r['ratio_min']:>7} {r['ms_median']:>8}"
        print(f"{r['case']:52} {figures}  {budget}")
    if json_path:
        Path(json_path).write_text(
            json.dumps({"title": title, "rounds": rounds, "rows": rows}, indent=2)
        )


def imported_modules(argv_python_code: str, env: dict[str, str] | None = None) -> set[str]:
    """The set of modules a snippet leaves in sys.modules (for the noise-free import gates)."""
    code = (
        argv_python_code
        + "\nimport sys, json\nprint('MODULES=' + json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("MODULES="):
            return set(json.loads(line[len("MODULES=") :]))
    raise RuntimeError(f"no module list from snippet (rc={proc.returncode}): {proc.stderr[-500:]}")
