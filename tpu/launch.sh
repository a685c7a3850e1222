#!/usr/bin/env bash
# Start the sweep on every worker of the TPU VM slice, in the background
# (nohup), so it survives the ssh session. Each worker runs exactly
#
#   python -m scaling sweep "$EXPERIMENT" --out "gs://$BUCKET/$RUN" --distributed
#
# logging to ~/scaling-logs/$RUN.log, which a background loop copies to
# gs://BUCKET/RUN/logs/worker-N.log every LOG_SYNC_SECONDS. Relaunching is
# safe: a worker whose sweep is still alive is left alone, and the sweep
# resumes from its checkpoints and skips finished runs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--experiment=PATH] [--worker=all|N] [--dry-run] [--help]

Launch the sweep on ${TPU_NAME} (${TPU_ZONE}, project ${TPU_PROJECT}):
  experiment    ${EXPERIMENT}   (relative to the checkout ${REMOTE_REPO})
  outputs       ${GS_RUN}/
  logs          ${GS_RUN}/logs/worker-N.log (synced every ${LOG_SYNC_SECONDS}s)

Options:
  --experiment=PATH  experiment file (default: \$EXPERIMENT = ${EXPERIMENT})
  --worker=W         which worker(s) to launch on (default: all; the sweep
                     is distributed, so all workers must run it)
  --dry-run          print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help         show this help
USAGE
}

worker=all
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  case "$1" in
    --experiment=*) EXPERIMENT="${1#*=}" ;;
    --experiment) [[ $# -ge 2 ]] || die "--experiment needs a value"; EXPERIMENT="$2"; shift ;;
    --worker=*) worker="${1#*=}" ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; worker="$2"; shift ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
require_config

venv=$(rpath "$REMOTE_VENV")
repo=$(rpath "$REMOTE_REPO")
logdir=$(rpath "$REMOTE_LOG_DIR")
dest="$(shq "${GS_RUN}/logs/worker-")\"\$W\".log"
meta="http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number"

# One line of shell, run by bash on each worker. $W is the worker index.
remote="set -e; "
remote+="export BUCKET=$(shq "$BUCKET") RUN=$(shq "$RUN") EXPERIMENT=$(shq "$EXPERIMENT") PYTHONUNBUFFERED=1; "
remote+="W=\$(curl -sf -H Metadata-Flavor:Google ${meta} || echo 0); "
remote+="mkdir -p ${logdir}; LOG=${logdir}/\"\$RUN\".log; PIDF=${logdir}/\"\$RUN\".pid; DEST=${dest}; "
remote+="if [ -f \"\$PIDF\" ] && kill -0 \"\$(cat \"\$PIDF\")\" 2>/dev/null; then echo \"worker \$W: sweep already running (pid \$(cat \"\$PIDF\"))\"; exit 0; fi; "
# Continue the log of an earlier (preempted) incarnation instead of overwriting it.
remote+="[ -f \"\$LOG\" ] || gcloud storage cp \"\$DEST\" \"\$LOG\" >/dev/null 2>&1 || true; "
remote+="echo \"=== launch \$(date -u +%FT%TZ) on \$(hostname) (worker \$W)\" >> \"\$LOG\"; "
remote+="cd ${repo}; . ${venv}/bin/activate; "
remote+="nohup python -m scaling sweep \"\$EXPERIMENT\" --out \"gs://\$BUCKET/\$RUN\" --distributed >> \"\$LOG\" 2>&1 < /dev/null & "
remote+="PID=\$!; echo \"\$PID\" > \"\$PIDF\"; "
remote+="(trap \"\" HUP; while kill -0 \"\$PID\" 2>/dev/null; do gcloud storage cp \"\$LOG\" \"\$DEST\" >/dev/null 2>&1 || true; sleep $(shq "$LOG_SYNC_SECONDS"); done; gcloud storage cp \"\$LOG\" \"\$DEST\" >/dev/null 2>&1 || true) > /dev/null 2>&1 < /dev/null & "
remote+="echo \"\$!\" > ${logdir}/\"\$RUN\".sync.pid; "
remote+="echo \"worker \$W: started sweep (pid \$PID), log \$LOG -> \$DEST\""

log "launching ${EXPERIMENT} on ${TPU_NAME} (worker=${worker}), outputs in ${GS_RUN}/"
tpu_ssh "$worker" "$remote"
