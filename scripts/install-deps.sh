#!/usr/bin/env bash
# Install what `somactl lab` and the integration tests need on a fresh Debian 12 machine.
#
# Idempotent: packages already installed are left alone, and `apt-get update` runs only when
# something is missing. Run as root (or as a user with sudo).
#
# The Debian packages' postinst scripts would start system services (postgresql on 5432,
# redis-server on 6379, prometheus on 9090, the exporters on 9187/9121). somactl never uses those:
# its launchers start private instances on free loopback ports. So that installing does not
# start them either, a temporary /usr/sbin/policy-rc.d denies service starts during the install
# (unless one already exists, e.g. in containers, which we then leave as it is). The services stay
# *enabled* for the next boot; `systemctl disable --now <unit>` if you want them gone.
#
# Usage: scripts/install-deps.sh [--dry-run]
set -euo pipefail

PACKAGES=(
  python3                  # 3.11 on Debian 12: somactl needs >= 3.11
  python3-venv             # scripts/setup.sh makes .venv
  git                      # `what changed` checks read git log
  postgresql               # server + initdb/pg_ctl under /usr/lib/postgresql/<version>/bin
  postgresql-contrib       # pg_stat_statements
  redis-server
  prometheus
  prometheus-postgres-exporter
  prometheus-redis-exporter
  zsh                      # shell-completion tests
  fish
)

DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: this script needs a Debian/Ubuntu system (dpkg-query and apt-get)" >&2
  exit 3
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  elif [ "$DRY_RUN" -eq 0 ]; then
    echo "error: run as root, or install sudo" >&2
    exit 7
  fi
fi

is_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if is_installed "$pkg"; then
    echo "ok        $pkg $(dpkg-query -W -f='${Version}' "$pkg")"
  else
    missing+=("$pkg")
    echo "missing   $pkg"
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "nothing to install"
  exit 0
fi
if [ "$DRY_RUN" -eq 1 ]; then
  echo "would install: ${missing[*]}"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if [ "$created_policy" -eq 1 ]; then
    "${SUDO[@]}" rm -f "$policy"
  fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  # Exit status 101 = "action forbidden by policy": invoke-rc.d / deb-systemd-invoke skip starts.
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 0755 "$policy"
  created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"

installed=()
failed=()
for pkg in "${missing[@]}"; do
  if is_installed "$pkg"; then
    installed+=("$pkg=$(dpkg-query -W -f='${Version}' "$pkg")")
  else
    failed+=("$pkg")
  fi
done
echo "installed: ${installed[*]:-none}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "error: still missing after apt-get install: ${failed[*]}" >&2
  exit 1
fi
echo "note: the Debian services were not started now but are enabled at boot; somactl's lab"
echo "      and tests never use them (private instances on free 127.0.0.1 ports)."
