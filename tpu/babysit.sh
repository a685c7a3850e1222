#!/usr/bin/env bash
# Keep a Spot TPU sweep alive until it finishes. Every POLL_SECONDS:
#   1. gs://BUCKET/RUN/DONE exists (written by the sweep at the end) -> exit 0
#      (with --delete-when-done, delete the TPU first).
#   2. Queued resource FAILED / SUSPENDED (preempted) / gone, or its TPU VM
#      PREEMPTED / TERMINATED -> delete.sh, create.sh, and once it is ACTIVE
#      again setup.sh + launch.sh. The sweep resumes from its checkpoints in
#      gs://BUCKET/RUN/ and skips the runs that already finished.
#   3. TPU READY but the sweep is not running on some worker (crash) ->
#      stop.sh + setup.sh + launch.sh.
# Waiting states (WAITING_FOR_RESOURCES, PROVISIONING, ...) are just waited
# out. Run it somewhere that stays up: tmux/screen on a workstation or a small
# always-on VM. Under --dry-run it does one iteration, pretending the queued
# resource is in state DRY_RUN_STATE (default SUSPENDED, i.e. preempted), and
# prints every command of the recovery.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--interval=SECONDS] [--once] [--delete-when-done]
                  [--spot | --no-spot] [--dry-run] [--help]

Watch queued resource ${TPU_QUEUED_RESOURCE} / TPU VM ${TPU_NAME} (${TPU_ZONE},
project ${TPU_PROJECT}); recreate, set up and relaunch after preemption until
${GS_RUN}/DONE exists.

Options:
  --interval=S        seconds between checks (default: POLL_SECONDS=${POLL_SECONDS})
  --once              do a single check/recovery and exit (e.g. from cron)
  --delete-when-done  delete the TPU once DONE exists, to stop billing
  --spot, --no-spot   how to recreate the TPU (default: TPU_SPOT=${TPU_SPOT})
  --dry-run           one iteration, printing the commands (or DRY_RUN=1);
                      DRY_RUN_STATE=ACTIVE etc. picks the simulated state
  -h, --help          show this help
Gives up (exit 1) after MAX_RESTARTS=${MAX_RESTARTS} recoveries.
USAGE
}

once=0
delete_when_done=0
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  case "$1" in
    --interval=*) POLL_SECONDS="${1#*=}" ;;
    --interval) [[ $# -ge 2 ]] || die "--interval needs a value"; POLL_SECONDS="$2"; shift ;;
    --once) once=1 ;;
    --delete-when-done) delete_when_done=1 ;;
    --spot) TPU_SPOT=1 ;;
    --no-spot | --on-demand) TPU_SPOT=0 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
[[ "$POLL_SECONDS" =~ ^[0-9]+$ ]] || die "--interval must be a number of seconds, got '${POLL_SECONDS}'"
export TPU_SPOT
require_config
require_git_url
if is_dry_run; then once=1; fi

# The other scripts, run with the same (exported) configuration.
step() {
  local script="$1"
  shift
  bash "${TPU_DIR}/${script}" "$@"
}

sweep_done() {
  query gcloud storage ls "${GS_RUN}/DONE" >/dev/null 2>&1
}

# Queued-resource state, NOT_FOUND when it does not exist, UNKNOWN on errors.
qr_state() {
  if is_dry_run; then
    query gcloud compute tpus queued-resources describe "$TPU_QUEUED_RESOURCE" \
      "${LOC_FLAGS[@]}" "--format=value(state.state)" || true
    echo "${DRY_RUN_STATE:-SUSPENDED}"
    return
  fi
  local out
  if out=$(gcloud compute tpus queued-resources describe "$TPU_QUEUED_RESOURCE" \
    "${LOC_FLAGS[@]}" "--format=value(state.state)" 2>&1); then
    echo "${out:-UNKNOWN}"
  elif grep -qiE 'not.?found|404' <<<"$out"; then
    echo NOT_FOUND
  else
    log "describe failed: ${out}"
    echo UNKNOWN
  fi
}

node_state() {
  if is_dry_run; then
    query gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOC_FLAGS[@]}" \
      "--format=value(state)" || true
    echo "${DRY_RUN_NODE_STATE:-READY}"
    return
  fi
  gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOC_FLAGS[@]}" \
    "--format=value(state)" 2>/dev/null || echo UNKNOWN
}

# Prints STOPPED if the sweep is not running on at least one worker, RUNNING
# if it runs everywhere, UNKNOWN if ssh failed.
sweep_health() {
  local logdir remote out
  logdir=$(rpath "$REMOTE_LOG_DIR")
  remote="PIDF=${logdir}/$(shq "$RUN").pid; "
  remote+="if [ -f \"\$PIDF\" ] && kill -0 \"\$(cat \"\$PIDF\")\" 2>/dev/null; then echo SWEEP_RUNNING; else echo SWEEP_STOPPED; fi"
  if ! out=$(query gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOC_FLAGS[@]}" \
    --worker=all "--command=${remote}" 2>/dev/null); then
    echo UNKNOWN
  elif grep -q SWEEP_STOPPED <<<"$out"; then
    echo STOPPED
  elif grep -q SWEEP_RUNNING <<<"$out"; then
    echo RUNNING
  else
    echo UNKNOWN
  fi
}

restarts=0
count_restart() {
  restarts=$((restarts + 1))
  if ((restarts > MAX_RESTARTS)); then
    log "giving up after ${MAX_RESTARTS} recoveries; check the logs (logs.sh) and fix the cause"
    exit 1
  fi
}

recreate() {
  local state="$1"
  count_restart
  log "recovering (${state}): delete + create ${TPU_QUEUED_RESOURCE} (recovery ${restarts}/${MAX_RESTARTS})"
  if [[ "$state" != NOT_FOUND ]]; then
    step delete.sh --yes || { log "delete failed; retrying next poll"; return 1; }
  fi
  step create.sh || { log "create failed; retrying next poll"; return 1; }
  needs_launch=1
}

setup_and_launch() {
  step setup.sh || { log "setup failed; retrying next poll"; return 1; }
  step launch.sh || { log "launch failed; retrying next poll"; return 1; }
  needs_launch=0
}

needs_launch=0
log "babysitting ${TPU_QUEUED_RESOURCE} / ${TPU_NAME}, run ${GS_RUN} (poll ${POLL_SECONDS}s)"
while true; do
  if sweep_done; then
    log "sweep finished: ${GS_RUN}/DONE exists"
    if ((delete_when_done)); then step delete.sh --yes; fi
    exit 0
  fi

  state=$(qr_state)
  case "$state" in
    ACTIVE)
      node=$(node_state)
      case "$node" in
        READY)
          if ((needs_launch)); then
            log "TPU READY: setting up and launching"
            setup_and_launch || true
          else
            health=$(sweep_health)
            if [[ "$health" == STOPPED ]]; then
              count_restart
              log "sweep not running on some worker: relaunching (recovery ${restarts}/${MAX_RESTARTS})"
              step stop.sh || true
              setup_and_launch || true
            else
              log "TPU READY, sweep ${health}"
            fi
          fi
          ;;
        PREEMPTED | TERMINATED | STOPPED | NOT_FOUND)
          recreate "node ${node}" || true
          ;;
        *) log "queued resource ACTIVE, TPU ${node}: waiting" ;;
      esac
      ;;
    FAILED | SUSPENDED | NOT_FOUND)
      if recreate "$state" && is_dry_run; then
        # Nothing to wait for in a dry run: show what follows once ACTIVE.
        setup_and_launch
      fi
      ;;
    *) log "queued resource ${state}: waiting" ;;
  esac

  if ((once)); then exit 0; fi
  sleep "$POLL_SECONDS"
done
