#!/usr/bin/env bash
# Keep a Spot TPU sweep alive until it finishes. Every POLL_SECONDS:
#   1. gs://BUCKET/RUN/DONE exists (written by the sweep at the end) -> exit 0
#      (with --delete-when-done, delete the TPU first).
#   2. Queued resource SUSPENDED (preempted) or gone, or its TPU VM PREEMPTED /
#      TERMINATED -> a preemption: delete.sh, create.sh, and once it is ACTIVE
#      again setup.sh + launch.sh. setup.sh installs the run's locked code and
#      versions; the sweep resumes from its checkpoints in gs://BUCKET/RUN/ and
#      skips the runs that already finished.
#   3. Queued resource FAILED (the request was rejected: quota, zone, type) ->
#      its reason is printed; counted as a crash, then recreated.
#   4. TPU READY but the sweep died on some worker -> a crash: stop.sh +
#      setup.sh + launch.sh. A TPU where it was never launched is just launched.
# Preemptions and crashes have separate budgets (MAX_PREEMPTIONS, MAX_CRASHES;
# a failed delete/create/setup/launch counts as a crash): a sweep that crashes
# on start gives up after a few tries instead of looping on a billed slice.
# Waiting states (WAITING_FOR_RESOURCES, PROVISIONING, ...) are waited out.
# States are read from gcloud's stdout only; its warnings (stderr) never count.
# Run it somewhere that stays up: tmux/screen on a workstation or a small
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
                  [--spot | --no-spot] [--experiment=PATH] [--set KEY=VALUE ...]
                  [--ssh-flag=FLAG ...] [--dry-run] [--help]

Watch queued resource ${TPU_QUEUED_RESOURCE} / TPU VM ${TPU_NAME} (${TPU_ZONE},
project ${TPU_PROJECT}); recreate, set up and relaunch after preemption until
${GS_RUN}/DONE exists.

Options:
  --interval=S        seconds between checks (default: POLL_SECONDS=${POLL_SECONDS})
  --once              do a single check/recovery and exit (e.g. from cron)
  --delete-when-done  delete the TPU once DONE exists, to stop billing
  --spot, --no-spot   how to recreate the TPU (default: TPU_SPOT=${TPU_SPOT})
  --experiment=PATH   passed to launch.sh
  --set KEY=VALUE     passed to launch.sh (repeatable)
  --ssh-flag=FLAG     passed to setup.sh, launch.sh, stop.sh and the health check
  --dry-run           one iteration, printing the commands (or DRY_RUN=1);
                      DRY_RUN_STATE=ACTIVE etc. picks the simulated state
  -h, --help          show this help
Gives up (exit 1) after MAX_PREEMPTIONS=${MAX_PREEMPTIONS} preemptions or
MAX_CRASHES=${MAX_CRASHES} crashes.
USAGE
}

once=0
delete_when_done=0
launch_args=()
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  ssh_flag "$1" && { shift; continue; }
  case "$1" in
    --interval=*) POLL_SECONDS="${1#*=}" ;;
    --interval) [[ $# -ge 2 ]] || die "--interval needs a value"; POLL_SECONDS="$2"; shift ;;
    --once) once=1 ;;
    --delete-when-done) delete_when_done=1 ;;
    --spot) TPU_SPOT=1 ;;
    --no-spot | --on-demand) TPU_SPOT=0 ;;
    --experiment=* | --set=*) launch_args+=("$1") ;;
    --experiment | --set) [[ $# -ge 2 ]] || die "$1 needs a value"; launch_args+=("$1" "$2"); shift ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
[[ -z "${MAX_RESTARTS:-}" ]] ||
  die "MAX_RESTARTS is replaced by MAX_PREEMPTIONS (default 100) and MAX_CRASHES (default 5)"
for v in POLL_SECONDS MAX_PREEMPTIONS MAX_CRASHES; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "${v} must be a whole number, got '${!v}'"
done
export TPU_SPOT
require_config
check_ssh_agent
if is_dry_run; then once=1; fi

ERRF=$(mktemp)
trap 'rm -f "$ERRF"' EXIT

# The other scripts, run with the same (exported) configuration; the ssh ones
# also get the --ssh-flag options.
step() {
  local script="$1"
  shift
  bash "${TPU_DIR}/${script}" "$@"
}
ssh_step() {
  local script="$1"
  shift
  step "$script" "$@" ${SSH_FLAGS[@]+"${SSH_FLAGS[@]}"}
}

sweep_done() {
  query gcloud storage ls "${GS_RUN}/DONE" >/dev/null 2>&1
}

# The state of a queued resource ("queued-resources", format state.state) or TPU
# VM ("tpu-vm", format state): the state word from stdout, NOT_FOUND when gcloud
# says it does not exist, UNKNOWN when the call failed otherwise.
describe_state() {
  local kind="$1" name="$2" field="$3" dry="$4" out
  if is_dry_run; then
    query gcloud compute tpus "$kind" describe "$name" "${LOC_FLAGS[@]}" "--format=value(${field})" || true
    echo "$dry"
    return
  fi
  if out=$(gcloud compute tpus "$kind" describe "$name" "${LOC_FLAGS[@]}" "--format=value(${field})" 2>"$ERRF"); then
    out=$(state_word <<<"$out")
    if [[ -z "$out" ]]; then log "${kind} describe printed no state"; out=UNKNOWN; fi
    echo "$out"
  elif grep -qE '^ERROR: .*(NOT_FOUND|[Nn]ot found|404)' "$ERRF"; then  # gcloud's error line, not a warning
    echo NOT_FOUND
  else
    log "${kind} describe failed: $(tail -n 3 "$ERRF")"
    echo UNKNOWN
  fi
}

qr_state() { describe_state queued-resources "$TPU_QUEUED_RESOURCE" state.state "${DRY_RUN_STATE:-SUSPENDED}"; }
node_state() { describe_state tpu-vm "$TPU_NAME" state "${DRY_RUN_NODE_STATE:-READY}"; }

# Why a queued resource is FAILED, as gcloud reports it.
failed_reason() {
  local reason
  reason=$(query gcloud compute tpus queued-resources describe "$TPU_QUEUED_RESOURCE" "${LOC_FLAGS[@]}" \
    "--format=value(state.failedData.error.message)" 2>"$ERRF") || true
  echo "${reason:-(no reason given)}"
}

# RUNNING when the sweep runs on every worker, DEAD when it was launched on some
# worker and is gone there, NONE when some worker never launched it (fresh VMs),
# UNKNOWN when ssh failed.
sweep_health() {
  local logdir remote out
  logdir=$(rpath "$REMOTE_LOG_DIR")
  remote="PIDF=${logdir}/$(shq "$RUN").pid; "
  remote+="if [ ! -f \"\$PIDF\" ]; then echo SWEEP_NONE; elif kill -0 \"\$(cat \"\$PIDF\")\" 2>/dev/null; then echo SWEEP_RUNNING; else echo SWEEP_DEAD; fi"
  ssh_cmd all "$remote"
  if ! out=$(query "${SSH_CMD[@]}" 2>"$ERRF"); then
    echo UNKNOWN
  elif grep -q SWEEP_DEAD <<<"$out"; then
    echo DEAD
  elif grep -q SWEEP_NONE <<<"$out"; then
    echo NONE
  elif grep -q SWEEP_RUNNING <<<"$out"; then
    echo RUNNING
  else
    echo UNKNOWN
  fi
}

preemptions=0
crashes=0
# count preemption|crash WHY: one more against that budget; exit 1 past it.
count() {
  local kind="$1" why="$2" n budget
  if [[ "$kind" == preemption ]]; then
    preemptions=$((preemptions + 1)); n=$preemptions; budget=MAX_PREEMPTIONS
  else
    crashes=$((crashes + 1)); n=$crashes; budget=MAX_CRASHES
  fi
  log "${kind} ${n}/${!budget}: ${why}"
  if ((n > ${!budget})); then
    log "giving up: more than ${budget}=${!budget} ${kind}s; check the logs (logs.sh) and fix the cause"
    exit 1
  fi
}

seen_qr=0     # the queued resource existed at some point of this babysit
recovering=0  # deleted and not yet recreated: do not count the preemption twice
needs_launch=0

# Delete (unless gone) and create the queued resource; setup + launch follow
# once it is ACTIVE and READY.
recreate() {
  local state="$1"
  log "recreating ${TPU_QUEUED_RESOURCE} (${state})"
  if [[ "$state" != NOT_FOUND ]]; then
    step delete.sh --yes || { count crash "delete.sh failed; retrying next poll"; return 1; }
  fi
  recovering=1
  step create.sh || { count crash "create.sh failed; retrying next poll"; return 1; }
  recovering=0
  needs_launch=1
}

setup_and_launch() {
  ssh_step setup.sh || { count crash "setup.sh failed; retrying next poll"; return 1; }
  ssh_step launch.sh ${launch_args[@]+"${launch_args[@]}"} || { count crash "launch.sh failed; retrying next poll"; return 1; }
  needs_launch=0
}

log "babysitting ${TPU_QUEUED_RESOURCE} / ${TPU_NAME}, run ${GS_RUN} (poll ${POLL_SECONDS}s, budgets: ${MAX_PREEMPTIONS} preemptions, ${MAX_CRASHES} crashes)"
while true; do
  if sweep_done; then
    log "sweep finished: ${GS_RUN}/DONE exists"
    if ((delete_when_done)); then step delete.sh --yes; fi
    exit 0
  fi

  state=$(qr_state)
  [[ "$state" == NOT_FOUND || "$state" == UNKNOWN ]] || seen_qr=1
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
            case "$health" in
              DEAD)
                count crash "the sweep died on some worker: relaunching"
                ssh_step stop.sh || true
                setup_and_launch || true
                ;;
              NONE)
                log "TPU READY, sweep not launched on some worker: setting up and launching"
                setup_and_launch || true
                ;;
              RUNNING) log "TPU READY, sweep running" ;;
              *) log "TPU READY, sweep state unknown (ssh failed: $(tail -n 1 "$ERRF" 2>/dev/null)); checking again next poll" ;;
            esac
          fi
          ;;
        PREEMPTED | TERMINATED | STOPPED | NOT_FOUND)
          ((recovering)) || count preemption "TPU VM ${node}"
          recreate "TPU ${node}" || true
          ;;
        UNKNOWN) log "queued resource ACTIVE, TPU state unknown: checking again next poll" ;;
        *) log "queued resource ACTIVE, TPU ${node}: waiting" ;;
      esac
      ;;
    SUSPENDED)
      ((recovering)) || count preemption "queued resource SUSPENDED (preempted)"
      recreate "$state" || true
      ;;
    FAILED)
      log "queued resource FAILED: $(failed_reason)"
      count crash "queued resource FAILED"
      recreate "$state" || true
      ;;
    NOT_FOUND)
      if ((seen_qr)) && ((!recovering)); then count preemption "queued resource gone"; fi
      recreate "$state" || true
      ;;
    SUSPENDING) log "queued resource SUSPENDING (being preempted): recovering once it is SUSPENDED" ;;
    UNKNOWN) log "queued resource state unknown (gcloud failed): checking again next poll" ;;
    *) log "queued resource ${state}: waiting" ;;
  esac
  if ((needs_launch)) && is_dry_run; then
    # Nothing to wait for in a dry run: show what follows once ACTIVE.
    setup_and_launch
  fi

  if ((once)); then exit 0; fi
  sleep "$POLL_SECONDS"
done
