#!/usr/bin/env bash
# Tail one worker's sweep log: from gs://BUCKET/RUN/logs/ (default; works even
# after the TPU is gone, lags by up to LOG_SYNC_SECONDS) or live over ssh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--worker=N] [-n LINES] [--ssh] [-f]
                [--ssh-flag=FLAG ...] [--dry-run] [--help]

Show the end of the log of run ${RUN}, worker N:
  gs:   ${GS_RUN}/logs/worker-N.log
  ssh:  ${REMOTE_LOG_DIR}/${RUN}.log on TPU VM ${TPU_NAME}

Options:
  --worker=N       worker index (default: 0)
  -n, --lines=N    number of lines (default: 100)
  --ssh            read the live log on the worker instead of the gs:// copy
  -f, --follow     keep following the log (implies --ssh); Ctrl-C to stop
  --ssh-flag=FLAG  passed to gcloud's --ssh-flag (repeatable)
  --dry-run        print the commands instead of running them (or DRY_RUN=1)
  -h, --help       show this help
USAGE
}

worker=0
lines=100
ssh=0
follow=0
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  ssh_flag "$1" && { shift; continue; }
  case "$1" in
    --worker=*) worker="${1#*=}" ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; worker="$2"; shift ;;
    --lines=*) lines="${1#*=}" ;;
    -n | --lines) [[ $# -ge 2 ]] || die "$1 needs a value"; lines="$2"; shift ;;
    --ssh) ssh=1 ;;
    -f | --follow) follow=1; ssh=1 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
[[ "$worker" =~ ^[0-9]+$ ]] || die "--worker must be a worker index, got '${worker}'"
[[ "$lines" =~ ^[0-9]+$ ]] || die "--lines must be a number, got '${lines}'"
require_config

if ((ssh)); then
  tail_flags="-n ${lines}"
  if ((follow)); then tail_flags+=" -F"; fi
  tpu_ssh "$worker" "tail ${tail_flags} $(rpath "$REMOTE_LOG_DIR")/$(shq "$RUN").log"
else
  run gcloud storage cat "${GS_RUN}/logs/worker-${worker}.log" | tail -n "$lines"
fi
