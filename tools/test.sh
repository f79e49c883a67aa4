#!/usr/bin/env bash
# The project's tests, exactly what CI runs: set up .venv, then nbdev's three gates and pytest.
#   1. nbdev-clean changes nothing   (notebooks are committed clean)
#   2. nbdev-export changes nothing  (mlpipe/ is in sync with nbs/)
#   3. the README is in sync with nbs/index.ipynb
#   4. every notebook cell passes as a test: the docs build runs each notebook in a fresh kernel, without the cells
#      nbdev-test leaves out, and fails on any error (so CI runs them once; `nbdev-test` gives the same verdict alone)
#   5. pytest                        (integration tests: CLI subprocesses, kill -9, real data)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" MPLBACKEND=Agg
snapshot() { find nbs mlpipe README.md -type f -not -path '*/__pycache__/*' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha256sum; }
gate() { # gate NAME CMD...: fail when CMD changes any tracked source file
  local name=$1; shift; local before; before=$(snapshot)
  "$@" >/dev/null
  if ! diff <(echo "$before") <(snapshot) >/tmp/mlpipe-gate.diff; then
    echo "FAIL: $name changed files (run it and commit the result):"; cat /tmp/mlpipe-gate.diff; exit 1
  fi
  echo "ok: $name changes nothing"
}
gate nbdev-clean nbdev-clean
gate nbdev-export nbdev-export
gate "the README build" python tools/readme.py
# The docs site (issue #8, tools/docs.py): each notebook run in a fresh Jupyter kernel, processed by nbdev, rendered to
# _docs/. A gate too: it refreshes nbdev's Quarto files (nbs/nbdev.yml, nbs/sidebar.yml), which must be committed current.
# pytest's tests/test_docs.py then loads every page in headless Chromium.
start=$(date +%s)
gate "the docs build" python tools/docs.py
echo "ok: every notebook ran as a test, and the docs site is built in _docs/, in $(( $(date +%s) - start )) s"
# The test files on 2 processes (pytest-xdist; a file's tests stay together, with their module fixtures): much of a
# test's time is spent waiting on the mlpipe processes it starts, so two at once took 0.6x the time of one (983 s
# against 1640 s, this 2-core machine).
pytest -q -n 2 --dist loadfile --durations=15 "$@"
