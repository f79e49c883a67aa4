#!/usr/bin/env bash
# Set up (or refresh) the project's virtualenv in .venv: torch 2.13.0 first, then mlpipe with its dev extras.
# Idempotent; needs only Python >= 3.10 and pip. Source it to get the venv on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first and pinned: on our machines this takes the local CPU wheel; asked for by range it would pull CUDA builds.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import mlpipe, torch; print(f'mlpipe {mlpipe.__version__}, torch {torch.__version__}: ready in .venv')"
