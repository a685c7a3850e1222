#!/usr/bin/env bash
# Start the sweep on every worker of the TPU VM slice, in the background
# (nohup), so it survives the ssh session. Each worker runs exactly
#
#   python -m scaling sweep "$EXPERIMENT" [--set KEY=VALUE ...] --out "gs://$BUCKET/$RUN" --distributed
#
# logging to ~/scaling-logs/$RUN.log, which a background loop copies to
# gs://BUCKET/RUN/logs/worker-N.log every LOG_SYNC_SECONDS. The data settings
# (SCALING_DATA_* in env.sh, --set data.*=...) are forwarded as --set overrides;
# before starting, each worker loads the experiment with them (bad keys fail
# here, not in the log) and reports which data it will train on. A sweep on the
# stdlib demo corpus gets a loud warning. Relaunching is safe: a worker whose
# sweep is still alive is left alone, and the sweep resumes from its
# checkpoints and skips finished runs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--experiment=PATH] [--set KEY=VALUE ...] [--worker=all|N]
                 [--ssh-flag=FLAG ...] [--dry-run] [--help]

Launch the sweep on ${TPU_NAME} (${TPU_ZONE}, project ${TPU_PROJECT}):
  experiment    ${EXPERIMENT}   (relative to the checkout ${REMOTE_REPO})
  data          source=${SCALING_DATA_SOURCE:--} name=${SCALING_DATA_NAME:--} data_dir=${SCALING_DATA_DIR:--} tokenizer=${SCALING_TOKENIZER:--}
                (- = as in the experiment file; SCALING_TFDS_DIR=${SCALING_TFDS_DIR:--})
  outputs       ${GS_RUN}/
  logs          ${GS_RUN}/logs/worker-N.log (synced every ${LOG_SYNC_SECONDS}s)

Options:
  --experiment=PATH  experiment file (default: \$EXPERIMENT = ${EXPERIMENT})
  --set KEY=VALUE    override a SweepConfig field on the workers, e.g.
                     --set data.source=tfds (repeatable; after the SCALING_DATA_*
                     settings of env.sh, which become --set data.*=...)
  --worker=W         which worker(s) to launch on (default: all; the sweep
                     is distributed, so all workers must run it)
  --ssh-flag=FLAG    passed to gcloud's --ssh-flag (repeatable)
  --dry-run          print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help         show this help
USAGE
}

worker=all
user_sets=()
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  ssh_flag "$1" && { shift; continue; }
  case "$1" in
    --experiment=*) EXPERIMENT="${1#*=}" ;;
    --experiment) [[ $# -ge 2 ]] || die "--experiment needs a value"; EXPERIMENT="$2"; shift ;;
    --set=*) user_sets+=("${1#*=}") ;;
    --set) [[ $# -ge 2 ]] || die "--set needs KEY=VALUE"; user_sets+=("$2"); shift ;;
    --worker=*) worker="${1#*=}" ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; worker="$2"; shift ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
for s in ${user_sets[@]+"${user_sets[@]}"}; do
  [[ "$s" == ?*=* ]] || die "--set expects KEY=VALUE, got '${s}'"
done
require_config
check_ssh_agent

# The data settings as --set overrides; source last, because DataConfig checks
# each assignment (source=tfds needs the name already set).
sets=()
[[ -z "$SCALING_DATA_NAME" ]] || sets+=("data.name=${SCALING_DATA_NAME}")
[[ -z "$SCALING_DATA_DIR" ]] || sets+=("data.data_dir=${SCALING_DATA_DIR}")
[[ -z "$SCALING_TOKENIZER" ]] || sets+=("data.tokenizer=${SCALING_TOKENIZER}")
[[ -z "$SCALING_DATA_SOURCE" ]] || sets+=("data.source=${SCALING_DATA_SOURCE}")
sets+=(${user_sets[@]+"${user_sets[@]}"})
set_args=""  # KEY=VALUE ..., for the check
set_flags="" # --set KEY=VALUE ..., for the sweep
for s in ${sets[@]+"${sets[@]}"}; do
  set_args+=" $(shq "$s")"
  set_flags+=" --set $(shq "$s")"
done
data_given=0
if [[ -n "$SCALING_TFDS_DIR" ]] || [[ " ${sets[*]-} " == *" data."* ]]; then data_given=1; fi

venv=$(rpath "$REMOTE_VENV")
repo=$(rpath "$REMOTE_REPO")
logdir=$(rpath "$REMOTE_LOG_DIR")
dest="$(shq "${GS_RUN}/logs/worker-")\"\$W\".log"
meta="http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number"
# Loads the experiment with the overrides exactly as the sweep will, and prints
# the data it will train on (one line; launch.sh looks for source=stdlib).
check_py="import sys; from scaling import experiment, sweep; d = experiment.load(sys.argv[1], sys.argv[2:], expect=sweep.SweepConfig).data; "
check_py+="print('data source=%s name=%s data_dir=%s tokenizer=%s' % (d.source, d.name, d.data_dir, d.tokenizer))"

# One line of shell, run by bash on each worker. $W is the worker index.
remote="set -e; "
remote+="export BUCKET=$(shq "$BUCKET") RUN=$(shq "$RUN") EXPERIMENT=$(shq "$EXPERIMENT") PYTHONUNBUFFERED=1; "
if [[ -n "$SCALING_TFDS_DIR" ]]; then remote+="export SCALING_TFDS_DIR=$(shq "$SCALING_TFDS_DIR"); "; fi
remote+="W=\$(curl -sf -H Metadata-Flavor:Google ${meta} || echo 0); "
remote+="mkdir -p ${logdir}; LOG=${logdir}/\"\$RUN\".log; PIDF=${logdir}/\"\$RUN\".pid; DEST=${dest}; "
remote+="if [ -f \"\$PIDF\" ] && kill -0 \"\$(cat \"\$PIDF\")\" 2>/dev/null; then echo \"worker \$W: sweep already running (pid \$(cat \"\$PIDF\"))\"; exit 0; fi; "
remote+="cd ${repo}; . ${venv}/bin/activate; "
remote+="DATA=\$(python -c $(shq "$check_py") \"\$EXPERIMENT\"${set_args}); echo \"worker \$W: \$DATA\"; "
# Continue the log of an earlier (preempted) incarnation instead of overwriting it.
remote+="[ -f \"\$LOG\" ] || gcloud storage cp \"\$DEST\" \"\$LOG\" >/dev/null 2>&1 || true; "
remote+="echo \"=== launch \$(date -u +%FT%TZ) on \$(hostname) (worker \$W), \$DATA\" >> \"\$LOG\"; "
remote+="nohup python -m scaling sweep \"\$EXPERIMENT\"${set_flags} --out \"gs://\$BUCKET/\$RUN\" --distributed >> \"\$LOG\" 2>&1 < /dev/null & "
remote+="PID=\$!; echo \"\$PID\" > \"\$PIDF\"; "
remote+="(trap \"\" HUP; while kill -0 \"\$PID\" 2>/dev/null; do gcloud storage cp \"\$LOG\" \"\$DEST\" >/dev/null 2>&1 || true; sleep $(shq "$LOG_SYNC_SECONDS"); done; gcloud storage cp \"\$LOG\" \"\$DEST\" >/dev/null 2>&1 || true) > /dev/null 2>&1 < /dev/null & "
remote+="echo \"\$!\" > ${logdir}/\"\$RUN\".sync.pid; "
remote+="echo \"worker \$W: started sweep (pid \$PID), log \$LOG -> \$DEST\""

stdlib_warning() {
  cat >&2 <<WARN

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: this TPU sweep trains on the stdlib DEMO corpus
!!
!! The Python standard library's source is a few tens of MB of bytes: at TPU
!! budgets every run repeats it many times over, and a law fitted on heavily
!! repeated data is not the law of fresh data. It is meant for CPU demos and
!! smoke tests. To train on a real corpus, stop this sweep (./tpu/stop.sh) and
!! relaunch with the data settings, e.g.
!!   SCALING_DATA_NAME=lm1b SCALING_DATA_SOURCE=tfds \\
!!   SCALING_DATA_DIR=gs://${BUCKET}/tensorflow_datasets ./tpu/launch.sh
!! (or --set data.source=tfds --set ..., or SCALING_TFDS_DIR=... for
!! experiments/tpu_v5e.py). Use a new RUN: finished runs are never retrained.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

WARN
}

log "launching ${EXPERIMENT} on ${TPU_NAME} (worker=${worker}), outputs in ${GS_RUN}/"
if ((!data_given)); then
  log "no data settings given (SCALING_DATA_* / SCALING_TFDS_DIR / --set data.*): the experiment file's own data config is used"
fi
if is_dry_run; then
  tpu_ssh "$worker" "$remote"
  exit 0
fi
if ! out=$(tpu_ssh "$worker" "$remote"); then
  [[ -z "$out" ]] || printf '%s\n' "$out"
  die "launch failed on ${TPU_NAME} (see the messages above)"
fi
printf '%s\n' "$out"
if grep -q 'data source=stdlib' <<<"$out"; then stdlib_warning; fi
