#!/usr/bin/env bash
# The demo (README): set up on a fresh machine, start the lab (a whole SomaGent production on
# this machine), break the gateway the way a bad deploy does, and look at the incident with
# kubectl and with somactl. Leaves the lab running: `somactl lab down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
S="$PWD/.venv/bin/somactl"
show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

show "$S" lab up
eval "$("$S" lab env)"
show "$S" lab break gateway-down

# wait (bounded) until the bad deploy is visibly crash-looping
for _ in $(seq 1 60); do
  if kubectl get pods -l app=gateway-api --no-headers 2>/dev/null | grep -q CrashLoopBackOff; then
    break
  fi
  sleep 0.5
done
show kubectl get pods -n somagent-production
show kubectl rollout history deployment/gateway-api -n somagent-production

show "$S" diagnose gateway-api || true          # exit 11: critical findings
show "$S" incident declare --dry-run --severity P0 --title "Gateway API Down" \
  --impact "All API requests failing (100% error rate)" --service gateway-api || true
show "$S" mitigate rollback gateway-api --yes --verify 90s || true
show "$S" status || true

printf '\nThe lab keeps running: try `somactl lab break --list`, `somactl lab drill`,\n'
printf '`somactl lab heal` and `somactl lab down`. (Shell: eval "$(%s lab env)")\n' "$S"
