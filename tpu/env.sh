# shellcheck shell=bash
# Shared configuration and helpers for the TPU VM scripts in this directory.
#
# Sourced (never executed) by every tpu/*.sh script. Edit the defaults below
# once for your project, or override any of them per invocation through the
# environment, e.g.
#
#   TPU_PROJECT=my-proj BUCKET=my-bucket RUN=isoflop-v5e ./tpu/create.sh
#
# Every value is exported so that scripts started by other scripts (babysit.sh
# runs delete.sh, create.sh, setup.sh and launch.sh) see the same settings.

# --- Google Cloud ------------------------------------------------------------
: "${TPU_PROJECT:=my-project}"              # gcloud project id
# TPU v5e (default): 8 chips on one host. Zones with v5e include us-west4-a,
# us-central1-a, us-east5-b, europe-west4-b; check your quota page.
: "${TPU_ZONE:=us-west4-a}"
: "${TPU_ACCELERATOR_TYPE:=v5litepod-8}"
# TPU software ("runtime") version for JAX, per the Cloud TPU docs:
#   v5e: v2-alpha-tpuv5-lite   v5p: v2-alpha-tpuv5   v6e: v2-alpha-tpuv6e
#   v4 and older: tpu-ubuntu2204-base
# For TPU v4 use e.g.:
#   TPU_ZONE=us-central2-b TPU_ACCELERATOR_TYPE=v4-8 TPU_RUNTIME_VERSION=tpu-ubuntu2204-base
: "${TPU_RUNTIME_VERSION:=v2-alpha-tpuv5-lite}"
: "${TPU_NAME:=scaling-tpu}"                # the TPU VM (node) name
: "${TPU_QUEUED_RESOURCE:=${TPU_NAME}-qr}"  # the queued-resource request id
: "${TPU_SPOT:=1}"                          # 1: Spot VMs (cheap, preemptible); 0: on-demand

# --- Sweep -------------------------------------------------------------------
: "${BUCKET:=my-bucket}"                    # gs://BUCKET (without the gs:// prefix)
: "${RUN:=tpu-v5e-sweep}"                   # everything lands under gs://BUCKET/RUN/
: "${EXPERIMENT:=experiments/tpu_v5e.py}"   # path inside the repository checkout
: "${SCALING_GIT_URL:=https://github.com/your-org/scaling.git}"
: "${SCALING_GIT_REF:=main}"                # branch, tag or commit installed on the workers

# --- On the TPU workers ------------------------------------------------------
: "${TPU_PYTHON:=python3.11}"               # interpreter for the venv (package needs >= 3.11)
# Remote paths; a leading ~ is expanded on the worker, not here.
: "${REMOTE_VENV:=~/scaling-venv}"
: "${REMOTE_REPO:=~/scaling}"
: "${REMOTE_LOG_DIR:=~/scaling-logs}"
: "${LOG_SYNC_SECONDS:=60}"                 # how often worker logs are copied to gs://

# --- babysit.sh ----------------------------------------------------------------
: "${POLL_SECONDS:=300}"
: "${MAX_RESTARTS:=50}"                     # give up after this many recoveries
: "${DRY_RUN:=0}"

export TPU_PROJECT TPU_ZONE TPU_ACCELERATOR_TYPE TPU_RUNTIME_VERSION TPU_NAME \
  TPU_QUEUED_RESOURCE TPU_SPOT BUCKET RUN EXPERIMENT SCALING_GIT_URL \
  SCALING_GIT_REF TPU_PYTHON REMOTE_VENV REMOTE_REPO REMOTE_LOG_DIR \
  LOG_SYNC_SECONDS POLL_SECONDS MAX_RESTARTS DRY_RUN

# Used by the scripts that source this file.
# shellcheck disable=SC2034
TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034
GS_RUN="gs://${BUCKET}/${RUN}"
# Flags shared by every gcloud call that addresses the TPU or queued resource.
LOC_FLAGS=("--zone=${TPU_ZONE}" "--project=${TPU_PROJECT}")

# fd 3 = the script's stdout, so dry-run lines printed from inside $(...)
# still reach the terminal instead of the captured value.
exec 3>&1

# --- helpers -------------------------------------------------------------------

is_dry_run() {
  case "${DRY_RUN}" in 1 | true | yes | on) return 0 ;; *) return 1 ;; esac
}

# Shell-quote one word, readably: plain words stay bare, anything else is
# single-quoted, so a printed command can be copy-pasted into a shell.
shq() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# Print a command as one line: "+ word word ...".
show_cmd() {
  local line="+" w
  for w in "$@"; do line+=" $(shq "$w")"; done
  printf '%s\n' "$line"
}

# Run a command that changes something (or print it under --dry-run).
run() {
  if is_dry_run; then
    show_cmd "$@" >&3
    return 0
  fi
  show_cmd "$@" >&2
  "$@"
}

# Run a read-only query whose output or status is used by the caller. Under
# --dry-run it is printed and "fails" with no output (= not found / unknown).
query() {
  if is_dry_run; then
    show_cmd "$@" >&3
    return 1
  fi
  "$@"
}

log() { printf '[%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

unknown_flag() {
  printf 'error: unknown flag: %s (see %s --help)\n' "$1" "$(basename "$0")" >&2
  exit 2
}

# Handle the flags every script accepts. Returns 1 when $1 is not one of them.
# The calling script must define usage().
common_flag() {
  case "$1" in
    --dry-run) DRY_RUN=1; export DRY_RUN ;;
    -h | --help) usage; exit 0 ;;
    *) return 1 ;;
  esac
}

# Refuse to talk to Google Cloud with the placeholder configuration.
require_config() {
  is_dry_run && return 0
  command -v gcloud >/dev/null 2>&1 ||
    die "gcloud not found: install the Google Cloud CLI (see tpu/README.md)"
  [[ "$TPU_PROJECT" != my-project ]] ||
    die "set TPU_PROJECT (edit tpu/env.sh or export TPU_PROJECT=...)"
  [[ "$BUCKET" != my-bucket ]] ||
    die "set BUCKET (edit tpu/env.sh or export BUCKET=...)"
}

# setup.sh clones SCALING_GIT_URL on the workers: it must be a real one.
require_git_url() {
  is_dry_run && return 0
  [[ "$SCALING_GIT_URL" != *your-org* ]] ||
    die "set SCALING_GIT_URL to the repository the TPU workers should clone (tpu/env.sh)"
}

# Quote a path for the remote (worker) shell; a leading ~/ becomes "$HOME"/ so
# that it is expanded on the worker.
rpath() {
  local p="$1"
  # shellcheck disable=SC2088  # a literal ~ is what we are looking for
  if [[ "$p" == "~/"* ]]; then
    # shellcheck disable=SC2016  # $HOME is expanded by the remote shell
    printf '"$HOME"/%s' "$(shq "${p#"~/"}")"
  else
    shq "$p"
  fi
}

# gcloud compute tpus tpu-vm ssh on the given worker(s) ("all" or an index).
tpu_ssh() {
  local worker="$1" command="$2"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOC_FLAGS[@]}" \
    "--worker=${worker}" "--command=${command}"
}
