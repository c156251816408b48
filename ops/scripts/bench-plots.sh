#!/usr/bin/env bash
# The plots of docs/benchmarks.md from a bench run's JSON (ops/scripts/bench_report.py plots):
# matplotlib from PyPI in its own virtualenv under ~/.cache/kizuna/matplotlib (never the
# system's Python packages), installed on first use.
# usage: ops/scripts/bench-plots.sh RUN_DIR OUT_DIR
set -euo pipefail
MATPLOTLIB_VERSION="${MATPLOTLIB_VERSION:-3.9.2}"
venv="$HOME/.cache/kizuna/matplotlib"
if ! "$venv/bin/python" -c "import matplotlib" >/dev/null 2>&1; then
  echo "bench-plots: installing matplotlib $MATPLOTLIB_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
fi
"$venv/bin/python" "$(dirname "$0")/bench_report.py" plots "$1" "$2"
