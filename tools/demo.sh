#!/usr/bin/env bash
# The main job, from nothing: set up .venv, write the digits as PNG files, augment, train a small CNN.
# The last line printed is the run directory (best.pt, last.pt, metrics.csv, metrics.png).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
.venv/bin/mlpipe demo
.venv/bin/mlpipe run config.yaml "$@"
