#!/usr/bin/env bash
# GPU benchmark of pygqa (see benchmarks/README.md, "On a GPU"): one process per
# backend (jax, torch), then one Markdown table, DIR/gpu.md.
#
#   bash benchmarks/gpu.sh [--cpu] [--keras-wheels DIR] [--out DIR] [--backends jax,torch]
#
#   --cpu            dry run on CPU at tiny shapes (seconds; what the tests run)
#   --keras-wheels   install keras from this wheel folder first (pip --no-index:
#                    nothing comes from the network); without it keras must be installed
#   --out            results folder (default benchmarks/results/gpu)
#   --backends       comma-separated subset of jax,torch (default both)
#
# Needs CUDA builds of jax and/or torch already installed, and one GPU. PYTHON
# picks the interpreter (default python3). Each backend gets at most
# PYGQA_GPU_BUDGET seconds of cases (default 200) and is stopped at 3.5 minutes,
# so the whole run stays under 8 minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY=${PYTHON:-python3}
OUT="$ROOT/benchmarks/results/gpu"
BACKENDS="jax,torch"
WHEELS=""
CPU=()
BUDGET=${PYGQA_GPU_BUDGET:-200}
LIMIT=210

while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=(--cpu); BUDGET=${PYGQA_GPU_BUDGET:-60}; LIMIT=120; shift ;;
    --keras-wheels) WHEELS=${2:?"--keras-wheels needs a folder"}; shift 2 ;;
    --out) OUT=${2:?"--out needs a folder"}; shift 2 ;;
    --backends) BACKENDS=${2:?"--backends needs a list"}; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "Received an unknown argument for benchmarks/gpu.sh: $1. Expected --cpu," \
            "--keras-wheels DIR, --out DIR or --backends LIST." >&2; exit 2 ;;
  esac
done
for backend in ${BACKENDS//,/ }; do
  case "$backend" in
    jax|torch) ;;
    *) echo "Received an invalid value for \`--backends\`: expected a comma-separated" \
            "subset of jax,torch. Received: $BACKENDS" >&2; exit 2 ;;
  esac
done

if [ -n "$WHEELS" ]; then
  "$PY" -m pip install --no-index --find-links "$WHEELS" keras
fi
if ! "$PY" -c "import keras" 2>/dev/null; then
  echo "keras is not importable by $PY: install it, or pass --keras-wheels DIR" \
       "(a folder holding the keras wheel and its dependencies)." >&2
  exit 1
fi

mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# jax must not grab 75% of GPU memory up front while torch runs later, and the
# peak-memory figures should be the call's own.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# The module is run by path: importing the benchmarks package would need the CPU suite's tqdm.
GPU_PY=("$PY" -c 'import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name="__main__")'
        "$ROOT/benchmarks/gpu.py")
status=0
for backend in ${BACKENDS//,/ }; do
  rm -f "$OUT/$backend.json"
  echo "=== $backend" >&2
  if ! KERAS_BACKEND=$backend timeout "$LIMIT" "${GPU_PY[@]}" --backend "$backend" \
      --out "$OUT" --budget "$BUDGET" "${CPU[@]}"; then
    echo "--- $backend: failed or stopped at ${LIMIT} s (its table is missing)" >&2
    status=1
  fi
done
"${GPU_PY[@]}" --report "$OUT"
echo "Wrote $OUT/gpu.md" >&2
exit $status
