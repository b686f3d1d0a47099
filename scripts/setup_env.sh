#!/usr/bin/env bash
# Create .venv (Python 3.10-3.12) and install the package with the given extras; a no-op when up to date.
# usage: scripts/setup_env.sh [EXTRAS]   e.g. scripts/setup_env.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-dev}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "error: need Python 3.10, 3.11 or 3.12 on PATH (or set PYTHON=...)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
STAMP=.venv/.autovla-installed-$EXTRAS
HASH=$(cat setup.py pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]; then
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  # torch first and pinned: any later requirement then resolves against the CPU build already installed
  # instead of pulling a newer CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  echo "$HASH" > "$STAMP"
fi
