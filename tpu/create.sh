#!/usr/bin/env bash
# Request the TPU VM slice as a queued resource (Spot by default). The request
# waits in the queue until capacity is available; watch it with status.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--spot | --no-spot] [--dry-run] [--help]

Create queued resource ${TPU_QUEUED_RESOURCE} for TPU VM ${TPU_NAME}:
  project       ${TPU_PROJECT}
  zone          ${TPU_ZONE}
  accelerator   ${TPU_ACCELERATOR_TYPE}
  runtime       ${TPU_RUNTIME_VERSION:-(none known for this type: set TPU_RUNTIME_VERSION)}
                (derived from the accelerator type unless TPU_RUNTIME_VERSION is set)

Options:
  --spot         Spot VMs: much cheaper, can be preempted at any time
                 (default; TPU_SPOT=${TPU_SPOT})
  --no-spot      on-demand VMs (alias: --on-demand); needs on-demand quota
  --dry-run      print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help     show this help
USAGE
}

while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  case "$1" in
    --spot) TPU_SPOT=1 ;;
    --no-spot | --on-demand) TPU_SPOT=0 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
require_config
require_runtime

args=(gcloud compute tpus queued-resources create "$TPU_QUEUED_RESOURCE"
  "--node-id=${TPU_NAME}" "${LOC_FLAGS[@]}"
  "--accelerator-type=${TPU_ACCELERATOR_TYPE}"
  "--runtime-version=${TPU_RUNTIME_VERSION}")
case "$TPU_SPOT" in
  1 | true | yes | on) args+=(--spot) ;;
  0 | false | no | off) ;;
  *) die "TPU_SPOT must be 1 or 0, got '${TPU_SPOT}'" ;;
esac

log "requesting ${TPU_ACCELERATOR_TYPE} (runtime ${TPU_RUNTIME_VERSION}) in ${TPU_ZONE} as ${TPU_QUEUED_RESOURCE} (spot=${TPU_SPOT})"
run "${args[@]}"
