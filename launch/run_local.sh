#!/usr/bin/env bash
# Runs a spacer_jax binary on this machine, CPU or the local GPUs, with outputs under
# WORKDIR and a copy of the command line and environment for reproducibility.
#
# Usage: launch/run_local.sh BINARY=sim_demo WORKDIR=/tmp/run [CONFIG=...] [-- FLAGS...]
# Example:
#   launch/run_local.sh BINARY=sim_demo WORKDIR=/tmp/demo -- --config.sim_agent=idm
set -euo pipefail

BINARY=""
WORKDIR=""
CONFIG=""
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    BINARY=*) BINARY="${1#*=}" ;;
    WORKDIR=*) WORKDIR="${1#*=}" ;;
    CONFIG=*) CONFIG="${1#*=}" ;;
    *) echo "unknown argument '$1' (expected KEY=VALUE: BINARY, WORKDIR, CONFIG)" >&2; exit 2 ;;
  esac
  shift
done
[[ "${1:-}" == "--" ]] && shift
if [[ -z "$BINARY" || -z "$WORKDIR" ]]; then
  echo "usage: $0 BINARY=<name under experiments/> WORKDIR=<dir> [CONFIG=<file[:variant]>] [-- flags]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [[ ! -f "experiments/${BINARY}.py" ]]; then
  echo "no binary experiments/${BINARY}.py" >&2
  exit 2
fi
CONFIG="${CONFIG:-experiments/configs/${BINARY}.py}"
mkdir -p "$WORKDIR"
# Keep TensorFlow (data pipeline) off the accelerators JAX uses.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
echo "python -m experiments.${BINARY} --config=${CONFIG} --workdir=${WORKDIR} $*" > "$WORKDIR/command.txt"
exec python -m "experiments.${BINARY}" --config="${CONFIG}" --workdir="${WORKDIR}" "$@"
