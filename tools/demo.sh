#!/usr/bin/env bash
# The main job, from nothing: a .venv with torch and mlpipe's core and demo needs only (not the dev tools), the
# digits written as PNG files, augmented, and a small residual CNN trained on them.
# The last line printed is the run directory (best.pt, last.pt, metrics.csv, metrics.png).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first and pinned: on our machines this takes the local CPU wheel. Elsewhere, for a CPU-only torch:
#   .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[demo]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/mlpipe demo
.venv/bin/mlpipe run config.yaml "$@"
