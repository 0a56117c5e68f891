#!/usr/bin/env bash
# Set up everything somactl needs on a fresh Debian machine: system packages, a virtual
# environment in .venv, and the project with its dev tools. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "error: somactl needs Python >= 3.11 ($PY is $("$PY" --version 2>&1))" >&2
  echo "hint: install python3 (Debian 12 ships 3.11) or set PYTHON=/path/to/python3.11" >&2
  exit 3
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || {
    echo "error: cannot create a virtual environment" >&2
    echo "hint: apt-get install -y python3-venv" >&2
    exit 3
  }
fi
# Reinstall only when the dependency list changed (pip resolution costs ~20 s otherwise).
stamp=.venv/.somactl-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import somactl' 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/somactl)"
