#!/usr/bin/env bash
# Runs the suite; pytest's exit code 5 ("no tests collected") is a failure here, never a silent pass.
set -uo pipefail
cd "$(dirname "$0")/.."
# Two workers (PYTEST_WORKERS): most end-to-end tests keep one core busy, so the suite takes about half the time.
# Tests go to whichever worker is free; the RL reference run is built once and shared (tests/rl_loop/conftest.py).
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist load --durations=25 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as failure" >&2
  exit 1
fi
exit "$rc"
