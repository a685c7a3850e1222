#!/usr/bin/env bash
# Delete the queued resource together with its TPU VM(s) (--force). Outputs
# and logs in gs://BUCKET/RUN/ are kept; delete the bucket separately.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--yes] [--async] [--dry-run] [--help]

Delete queued resource ${TPU_QUEUED_RESOURCE} and TPU VM ${TPU_NAME}
(${TPU_ZONE}, project ${TPU_PROJECT}). Billing for the TPU stops once it is
gone; ${GS_RUN}/ is not touched.

Options:
  -y, --yes    do not ask for confirmation (passes --quiet to gcloud)
  --async      return without waiting for the deletion to finish
  --dry-run    print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help   show this help
USAGE
}

yes=0
async=0
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  case "$1" in
    -y | --yes) yes=1 ;;
    --async) async=1 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
require_config

args=(gcloud compute tpus queued-resources delete "$TPU_QUEUED_RESOURCE"
  "${LOC_FLAGS[@]}" --force)
if ((async)); then args+=(--async); fi
if ((yes)); then args+=(--quiet); fi

log "deleting ${TPU_QUEUED_RESOURCE} (and TPU ${TPU_NAME})"
run "${args[@]}"
