#!/usr/bin/env bash
# One prepared accelerator check (issue 16): simulator, SPACER train step, reference
# pass and WOSAC scoring throughput at the paper's sizes, written to ONE JSON file.
# Run it once in a session lent a GPU; it ends within 8 minutes on one H200.
#
#   bash benchmarks/gpu_check.sh                       # writes ./gpu_check.json
#   bash benchmarks/gpu_check.sh --out "$OUT/gpu_check.json"
#   JAX_PLATFORMS=cpu bash benchmarks/gpu_check.sh --smoke --out /tmp/gpu_check.json
#
# Flags go to benchmarks/gpu_check.py (--out, --smoke, --budget_s, --sections); see its
# docstring for the sections and the JSON. GPU_CHECK_TIMEOUT_S (default 455) is a hard
# stop: the JSON is rewritten after every measurement, so a stopped run keeps its rows.
# GIT_COMMIT=<hash> is recorded when the tree being run has no .git.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# The largest sim batch (4096 scenes with their road-edge index, ~13 MB each) may need
# more than JAX's default 75% of the GPU's memory.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
# A rerun on the same machine reuses the compiled programs.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/spacer_jax_gpu_check_jit_cache}"
exec timeout --signal=INT --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-455}" \
  "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
