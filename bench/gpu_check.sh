#!/usr/bin/env bash
# The GPU check in one call (<= 8 min on one GPU): kernel correctness at ZAYA1-8B shapes, kernel time and
# peak memory against torch and Liger-Kernel, and a few RL steps of a ~100M ZAYA as tokens/s; one table.
# Exit status: 0 all rows ok, 1 a row failed (a kernel off its reference, an RL run that died), 2 no GPU
# or a required package missing.
#
#   bench/gpu_check.sh                           on a GPU machine
#   WHEELS=/path/to/wheels bench/gpu_check.sh    install missing packages from that folder of wheels only
#   bench/gpu_check.sh --cpu                     anywhere: small shapes in Triton's interpreter; installs nothing
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
# --no-deps: what these need (torch, transformers, ...) must already be there; pip must never swap torch.
PIP=("$PY" -m pip install --quiet --disable-pip-version-check --no-deps)
[ -n "${WHEELS:-}" ] && PIP+=(--no-index --find-links "$WHEELS")
INSTALL=1
[ "${1:-}" = "--cpu" ] && INSTALL=0

# have MODULE PIP-ARGS...: MODULE imports, or (GPU mode) pip installs PIP-ARGS and then MODULE imports.
have() {
  "$PY" -c "import $1" 2>/dev/null && return 0
  [ "$INSTALL" = 1 ] || return 1
  "${PIP[@]}" "${@:2}" >/dev/null 2>&1
  "$PY" -c "import $1" 2>/dev/null
}

if [ "$INSTALL" = 1 ] && ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "error: no GPU visible to torch; run with --cpu to check the kernels in Triton's interpreter" >&2
  exit 2
fi
have posttrain.kernels -e . || { echo "error: cannot import posttrain (pip install -e . did not help)" >&2; exit 2; }
have triton "triton==3.9.0" || { echo "error: triton is not installed and could not be installed" >&2; exit 2; }
have liger_kernel "liger-kernel" || echo "note: liger-kernel not installed; its column says so" >&2

exec "$PY" bench/gpu_check.py "$@"
