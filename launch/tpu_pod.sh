#!/usr/bin/env bash
# Runs a spacer_jax training binary on every worker of a Cloud TPU VM pod slice: the
# same command on all workers (gcloud --worker=all); each worker is one JAX process and
# jax.distributed finds the coordinator, process count and id from the TPU metadata.
#
# Usage: launch/tpu_pod.sh TPU=<name> ZONE=<zone> WORKDIR=<dir> [PROJECT=<id>]
#            [BINARY=train_spacer] [CONFIG=<file[:variant]>, default: the binary's own]
#            [REPO=<path on workers>]
#            [SETUP=<command run first on each worker>] [-- FLAGS...]
# Example:
#   launch/tpu_pod.sh TPU=spacer-v4-32 ZONE=us-central2-b WORKDIR=/mnt/shared/spacer \
#       REPO='~/spacer_jax' SETUP='pip install -e ~/spacer_jax' \
#       -- --reference_checkpoint=/mnt/shared/reference --config.env.num_worlds=512
#
# WORKDIR must be a directory every worker sees (NFS / Filestore / a GCS FUSE mount):
# checkpoints are written by all workers together, logs by worker 0. The repository
# must already be on every worker at REPO (e.g. `gcloud ... scp --worker=all`).
set -euo pipefail

TPU="" ZONE="" WORKDIR="" PROJECT="" BINARY="train_spacer" CONFIG="" REPO="~/spacer_jax" SETUP=""
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    TPU=*) TPU="${1#*=}" ;;
    ZONE=*) ZONE="${1#*=}" ;;
    WORKDIR=*) WORKDIR="${1#*=}" ;;
    PROJECT=*) PROJECT="${1#*=}" ;;
    BINARY=*) BINARY="${1#*=}" ;;
    CONFIG=*) CONFIG="${1#*=}" ;;
    REPO=*) REPO="${1#*=}" ;;
    SETUP=*) SETUP="${1#*=}" ;;
    *) echo "unknown argument '$1' (expected KEY=VALUE: TPU, ZONE, WORKDIR, PROJECT, BINARY, CONFIG, REPO, SETUP)" >&2; exit 2 ;;
  esac
  shift
done
[[ "${1:-}" == "--" ]] && shift
if [[ -z "$TPU" || -z "$ZONE" || -z "$WORKDIR" ]]; then
  echo "usage: $0 TPU=<name> ZONE=<zone> WORKDIR=<shared dir> [PROJECT=..] [BINARY=..] [CONFIG=..] [REPO=..] [SETUP=..] [-- flags]" >&2
  exit 2
fi

# The command every worker runs; flags are quoted so that they survive the remote shell.
flags=""
for f in "$@"; do flags+=" $(printf '%q' "$f")"; done
[[ -n "$CONFIG" ]] && flags=" --config=$(printf '%q' "$CONFIG")${flags}"
remote="set -euo pipefail; cd ${REPO};${SETUP:+ ${SETUP};} export TF_CPP_MIN_LOG_LEVEL=2 SPACER_JAX_DISTRIBUTED=1;"
remote+=" mkdir -p $(printf '%q' "$WORKDIR");"
remote+=" python -m experiments.${BINARY} --workdir=$(printf '%q' "$WORKDIR") --distributed${flags}"

gcloud_args=(compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all)
[[ -n "$PROJECT" ]] && gcloud_args+=(--project="$PROJECT")
echo "on every worker of $TPU: $remote"
exec gcloud "${gcloud_args[@]}" --command="$remote"
