#!/usr/bin/env bash
# The test command (README, CI): set up, then lint, types, layering, and the whole test suite.
# Every step must pass. Real Postgres, Redis and Prometheus are started by the tests themselves
# on loopback and free ports; with CI=true a missing service is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
V=.venv/bin

step() { printf '\n== %s\n' "$*"; }
step "ruff format --check";  $V/ruff format --check somactl tests bench
step "ruff check";           $V/ruff check somactl tests bench
step "mypy --strict";        $V/mypy
step "import-linter";        $V/lint-imports
step "pytest";               $V/pytest -p no:cacheprovider "$@"
step "import gates (bench --quick)"; $V/python -m bench --quick
