#!/usr/bin/env bash
# The GPU check in one call (<= 8 min on one GPU): kernel correctness at ZAYA1-8B shapes, kernel time and
# peak memory against torch and Liger-Kernel, and a few RL steps of a ~100M ZAYA as tokens/s; one table.
# Exit status: 0 all rows ok, 1 a row failed (a kernel off its reference, an RL run that died), 2 no GPU.
#
#   bench/gpu_check.sh              on a GPU machine
#   bench/gpu_check.sh --cpu        anywhere: the same checks at small shapes in Triton's interpreter
#   WHEELS=/path/to/wheels bench/gpu_check.sh    install missing packages from a folder of wheels only
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
[ -n "${WHEELS:-}" ] && PIP+=(--no-index --find-links "$WHEELS")

# have MODULE PACKAGE: import MODULE, else try to install PACKAGE; returns whether MODULE imports afterwards.
have() {
  "$PY" -c "import $1" 2>/dev/null && return 0
  "${PIP[@]}" "$2" >/dev/null 2>&1
  "$PY" -c "import $1" 2>/dev/null
}

have posttrain.kernels "-e ." || { echo "error: cannot import posttrain (pip install -e . failed)"; exit 2; }
have triton "triton==3.9.0" || { echo "error: triton is not installed and could not be installed"; exit 2; }
have liger_kernel "liger-kernel" || echo "note: liger-kernel not installed; its column will say so"

exec "$PY" bench/gpu_check.py "$@"
