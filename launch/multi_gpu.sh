#!/usr/bin/env bash
# Single-node multi-GPU training. Default: one process driving all (or GPUS=) local GPUs,
# data-parallel over a mesh of them (no jax.distributed needed). PROCESSES=per_gpu
# instead starts one process per GPU joined by jax.distributed on localhost (the layout
# of the multi-node SLURM script, handy to debug it on one machine).
#
# Usage: launch/multi_gpu.sh WORKDIR=<dir> [BINARY=train_spacer] [CONFIG=<file[:variant]>]
#            [GPUS=<ids, e.g. 0,1,2,3>] [PROCESSES=single|per_gpu] [PORT=12355] [-- FLAGS...]
# Example:
#   launch/multi_gpu.sh WORKDIR=/tmp/spacer GPUS=0,1,2,3 -- --config.env.num_worlds=512
set -euo pipefail

WORKDIR="" BINARY="train_spacer" CONFIG="" GPUS="" PROCESSES="single" PORT="12355"
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    WORKDIR=*) WORKDIR="${1#*=}" ;;
    BINARY=*) BINARY="${1#*=}" ;;
    CONFIG=*) CONFIG="${1#*=}" ;;
    GPUS=*) GPUS="${1#*=}" ;;
    PROCESSES=*) PROCESSES="${1#*=}" ;;
    PORT=*) PORT="${1#*=}" ;;
    *) echo "unknown argument '$1' (expected KEY=VALUE: WORKDIR, BINARY, CONFIG, GPUS, PROCESSES, PORT)" >&2; exit 2 ;;
  esac
  shift
done
[[ "${1:-}" == "--" ]] && shift
if [[ -z "$WORKDIR" || ( "$PROCESSES" != "single" && "$PROCESSES" != "per_gpu" ) ]]; then
  echo "usage: $0 WORKDIR=<dir> [BINARY=..] [CONFIG=..] [GPUS=0,1,..] [PROCESSES=single|per_gpu] [PORT=..] [-- flags]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [[ ! -f "experiments/${BINARY}.py" ]]; then
  echo "no binary experiments/${BINARY}.py" >&2
  exit 2
fi
if [[ -z "$GPUS" ]]; then
  count="$(nvidia-smi --list-gpus | wc -l)"
  GPUS="$(seq -s, 0 $((count - 1)))"
fi
mkdir -p "$WORKDIR"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" CUDA_VISIBLE_DEVICES="$GPUS"
base=(python -m "experiments.${BINARY}" --workdir="${WORKDIR}")
[[ -n "$CONFIG" ]] && base+=(--config="${CONFIG}")
echo "CUDA_VISIBLE_DEVICES=$GPUS PROCESSES=$PROCESSES ${base[*]} $*" > "$WORKDIR/command.txt"
if [[ "$PROCESSES" == "single" ]]; then
  exec "${base[@]}" "$@"
fi

# One process per GPU: process i keeps GPU i of the visible ones.
IFS=, read -r -a ids <<< "$GPUS"
n="${#ids[@]}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < n; i++)); do
  JAX_LOCAL_DEVICE_IDS="$i" "${base[@]}" --distributed --coordinator_address="localhost:${PORT}" \
    --num_processes="$n" --process_id="$i" "$@" > "$WORKDIR/process_${i}.log" 2>&1 &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
