#!/usr/bin/env bash
# Stop the sweep on every worker (SIGTERM, then SIGKILL after a grace period).
# The TPU keeps running (and billing): use delete.sh to release it. The log
# sync loop notices the exit, uploads the log one last time and ends.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--worker=all|N] [--grace=SECONDS] [--pkill]
                [--ssh-flag=FLAG ...] [--dry-run] [--help]

Kill the sweep of run ${RUN} on TPU VM ${TPU_NAME} (${TPU_ZONE}, project ${TPU_PROJECT}),
using the pid file written by launch.sh (${REMOTE_LOG_DIR}/${RUN}.pid).

Options:
  --worker=W       which worker(s) (default: all)
  --grace=SECONDS  wait this long after SIGTERM before SIGKILL (default: 30)
  --pkill          also kill any other 'python -m scaling sweep' process on
                   the workers (e.g. one started by hand or for another RUN)
  --ssh-flag=FLAG  passed to gcloud's --ssh-flag (repeatable)
  --dry-run        print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help       show this help
USAGE
}

worker=all
grace=30
pk=0
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  ssh_flag "$1" && { shift; continue; }
  case "$1" in
    --worker=*) worker="${1#*=}" ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; worker="$2"; shift ;;
    --grace=*) grace="${1#*=}" ;;
    --pkill) pk=1 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
[[ "$grace" =~ ^[0-9]+$ ]] || die "--grace must be a number of seconds, got '${grace}'"
require_config
check_ssh_agent

logdir=$(rpath "$REMOTE_LOG_DIR")
remote="PIDF=${logdir}/$(shq "$RUN").pid; "
remote+="if [ -f \"\$PIDF\" ] && P=\$(cat \"\$PIDF\") && kill -0 \"\$P\" 2>/dev/null; then "
remote+="kill -TERM \"\$P\"; for _ in \$(seq ${grace}); do kill -0 \"\$P\" 2>/dev/null || break; sleep 1; done; "
remote+="if kill -0 \"\$P\" 2>/dev/null; then kill -KILL \"\$P\"; fi; echo \"\$(hostname): stopped sweep (pid \$P)\"; "
remote+="else echo \"\$(hostname): no sweep running for run $(shq "$RUN")\"; fi"
if ((pk)); then
  remote+="; pkill -TERM -f \"^python -m scaling sweep\" && echo \"\$(hostname): pkill sent SIGTERM\" || true"
fi

log "stopping run ${RUN} on ${TPU_NAME} (worker=${worker})"
tpu_ssh "$worker" "$remote"
