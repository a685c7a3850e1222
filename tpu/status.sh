#!/usr/bin/env bash
# Show where things stand: queued resource, TPU VM, sweep outputs and DONE
# marker; with --procs also whether the sweep runs on each worker.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--procs] [--ssh-flag=FLAG ...] [--dry-run] [--help]

Status of queued resource ${TPU_QUEUED_RESOURCE}, TPU VM ${TPU_NAME}
(${TPU_ZONE}, project ${TPU_PROJECT}) and run ${GS_RUN}/.

Queued resource states: WAITING_FOR_RESOURCES -> PROVISIONING -> ACTIVE;
FAILED / SUSPENDED (e.g. Spot preemption) need delete.sh + create.sh
(babysit.sh does that for you).

Options:
  --procs      also ssh to every worker: is the sweep running, last log lines
  --ssh-flag=FLAG  passed to gcloud's --ssh-flag (repeatable)
  --dry-run    print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help   show this help
USAGE
}

procs=0
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  ssh_flag "$1" && { shift; continue; }
  case "$1" in
    --procs) procs=1 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
require_config

# Fallback text when a query finds nothing (not shown under --dry-run).
say() { is_dry_run || echo "$1"; }

echo "== queued resource ${TPU_QUEUED_RESOURCE}"
query gcloud compute tpus queued-resources describe "$TPU_QUEUED_RESOURCE" "${LOC_FLAGS[@]}" \
  "--format=value(state.state,state.failedData.error.message)" || say "(not found)"
echo "== TPU VM ${TPU_NAME}"
query gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOC_FLAGS[@]}" \
  "--format=table(state,health,acceleratorType,runtimeVersion)" || say "(not found)"
echo "== ${GS_RUN}/"
query gcloud storage ls "${GS_RUN}/" || say "(empty)"
echo "== code pinned for the run (setup.sh)"
query gcloud storage cat "${GS_SETUP}/source.txt" 2>/dev/null || say "(not set up yet)"
if query gcloud storage ls "${GS_RUN}/DONE" >/dev/null 2>&1; then
  echo "sweep finished: ${GS_RUN}/DONE exists"
else
  say "sweep not finished (no ${GS_RUN}/DONE)"
fi

if ((procs)); then
  check_ssh_agent
  logdir=$(rpath "$REMOTE_LOG_DIR")
  run_q=$(shq "$RUN")
  remote="PIDF=${logdir}/${run_q}.pid; LOG=${logdir}/${run_q}.log; "
  remote+="if [ -f \"\$PIDF\" ] && kill -0 \"\$(cat \"\$PIDF\")\" 2>/dev/null; then echo \"\$(hostname): RUNNING (pid \$(cat \"\$PIDF\"))\"; "
  remote+="else echo \"\$(hostname): STOPPED\"; fi; [ -f \"\$LOG\" ] && tail -n 3 \"\$LOG\" || true"
  echo "== processes"
  tpu_ssh all "$remote" || say "(ssh failed: is the TPU READY?)"
fi
