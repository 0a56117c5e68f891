#!/usr/bin/env bash
# The demo (README): set up, then show somactl on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
S=.venv/bin/somactl
run() { printf '\n$ somactl %s\n' "$*"; "$S" "$@"; }

run runbook severities
run runbook show scenarios
run severity classify --error-rate 1.0 --p95 6
run -o json severity classify --p95 6.5
