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
# TPU software ("runtime") version. Empty: derived from the accelerator type
# (runtime_for_accelerator below, per https://cloud.google.com/tpu/docs/runtimes).
: "${TPU_RUNTIME_VERSION:=}"
: "${TPU_NAME:=scaling-tpu}"                # the TPU VM (node) name
: "${TPU_QUEUED_RESOURCE:=${TPU_NAME}-qr}"  # the queued-resource request id
: "${TPU_SPOT:=1}"                          # 1: Spot VMs (cheap, preemptible); 0: on-demand

# --- Sweep -------------------------------------------------------------------
: "${BUCKET:=my-bucket}"                    # gs://BUCKET (without the gs:// prefix)
: "${RUN:=tpu-v5e-sweep}"                   # everything lands under gs://BUCKET/RUN/
: "${EXPERIMENT:=experiments/tpu_v5e.py}"   # path inside the repository checkout
# The code the workers run. Empty SCALING_GIT_URL (default): setup.sh ships this
# working tree (tracked and untracked, not ignored, files). A URL: setup.sh
# installs SCALING_GIT_REF of that repository. Either way the first setup.sh of
# a RUN pins the code and the resolved pip versions in gs://BUCKET/RUN/setup/,
# and every later setup (after a preemption) installs exactly those.
: "${SCALING_GIT_URL:=}"
: "${SCALING_GIT_REF:=main}"                # branch, tag or commit (git mode only)

# --- Data (forwarded by launch.sh as --set data.*=...) ------------------------
# Empty: the experiment file decides. experiments/tpu_v5e.py reads TFDS lm1b
# from SCALING_TFDS_DIR and otherwise trains on the stdlib demo corpus, which a
# TPU budget repeats many times over: launch.sh warns loudly when that happens.
: "${SCALING_DATA_SOURCE:=}"                # stdlib | synthetic | tfds
: "${SCALING_DATA_NAME:=}"                  # TFDS dataset, e.g. lm1b
: "${SCALING_DATA_DIR:=}"                   # TFDS data_dir, e.g. gs://BUCKET/tensorflow_datasets
: "${SCALING_TOKENIZER:=}"                  # byte, or a SentencePiece .model path on the workers
: "${SCALING_TFDS_DIR:=}"                   # exported to the workers (read by experiments/tpu_v5e.py)

# --- On the TPU workers ------------------------------------------------------
: "${TPU_PYTHON:=python3.11}"               # interpreter for the venv (package needs >= 3.11)
# Remote paths; a leading ~ is expanded on the worker, not here.
: "${REMOTE_VENV:=~/scaling-venv}"
: "${REMOTE_REPO:=~/scaling}"
: "${REMOTE_LOG_DIR:=~/scaling-logs}"
: "${LOG_SYNC_SECONDS:=60}"                 # how often worker logs are copied to gs://

# --- ssh -----------------------------------------------------------------------
# The key gcloud uses. One with a passphrase must be loaded in an ssh-agent:
# --worker=all opens one ssh per worker, each would ask (babysit.sh cannot answer).
: "${TPU_SSH_KEY:=${HOME}/.ssh/google_compute_engine}"
: "${TPU_SSH_AGENT_CHECK:=1}"               # 0 skips that check

# --- babysit.sh ----------------------------------------------------------------
: "${POLL_SECONDS:=300}"
: "${MAX_PREEMPTIONS:=100}"                 # give up after this many preemption recoveries
: "${MAX_CRASHES:=5}"                       # ... or this many crashes / failed steps
: "${DRY_RUN:=0}"

export TPU_PROJECT TPU_ZONE TPU_ACCELERATOR_TYPE TPU_RUNTIME_VERSION TPU_NAME \
  TPU_QUEUED_RESOURCE TPU_SPOT BUCKET RUN EXPERIMENT SCALING_GIT_URL \
  SCALING_GIT_REF SCALING_DATA_SOURCE SCALING_DATA_NAME SCALING_DATA_DIR \
  SCALING_TOKENIZER SCALING_TFDS_DIR TPU_PYTHON REMOTE_VENV REMOTE_REPO \
  REMOTE_LOG_DIR LOG_SYNC_SECONDS TPU_SSH_KEY TPU_SSH_AGENT_CHECK POLL_SECONDS \
  MAX_PREEMPTIONS MAX_CRASHES DRY_RUN

# Used by the scripts that source this file.
# shellcheck disable=SC2034
TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034
REPO_ROOT="$(cd "${TPU_DIR}/.." && pwd)"
# shellcheck disable=SC2034
GS_RUN="gs://${BUCKET}/${RUN}"
# The run's pinned code and versions (written by the first setup.sh).
# shellcheck disable=SC2034
GS_SETUP="${GS_RUN}/setup"
# Flags shared by every gcloud call that addresses the TPU or queued resource.
LOC_FLAGS=("--zone=${TPU_ZONE}" "--project=${TPU_PROJECT}")
# --ssh-flag=... options given on the command line, passed to every tpu-vm ssh.
SSH_FLAGS=()

# fd 3 = the script's stdout, so dry-run lines printed from inside $(...)
# still reach the terminal instead of the captured value. Commands run without
# it (3>&-), so nothing they leave behind holds the script's stdout open.
exec 3>&1

# --- helpers -------------------------------------------------------------------

is_dry_run() {
  case "${DRY_RUN}" in 1 | true | yes | on) return 0 ;; *) return 1 ;; esac
}

# The runtime version JAX needs on an accelerator type (Cloud TPU "TPU software
# versions" page); fails for types it does not know.
runtime_for_accelerator() {
  case "$1" in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) return 1 ;;
  esac
}
if [[ -z "$TPU_RUNTIME_VERSION" ]]; then
  TPU_RUNTIME_VERSION=$(runtime_for_accelerator "$TPU_ACCELERATOR_TYPE") || TPU_RUNTIME_VERSION=""
  export TPU_RUNTIME_VERSION
fi

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
  "$@" 3>&-
}

# Run a read-only query whose output or status is used by the caller. Under
# --dry-run it is printed and "fails" with no output (= not found / unknown).
query() {
  if is_dry_run; then
    show_cmd "$@" >&3
    return 1
  fi
  "$@" 3>&-
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

# --ssh-flag=VALUE (repeatable), for the scripts that ssh to the workers: passed
# on to gcloud's own --ssh-flag, e.g. --ssh-flag='-o ServerAliveInterval=30'.
ssh_flag() {
  case "$1" in
    --ssh-flag=*) SSH_FLAGS+=("$1") ;;
    --ssh-flag) die "--ssh-flag needs a value: --ssh-flag=VALUE (e.g. --ssh-flag=-vvv)" ;;
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

# create.sh needs a runtime version: derived, or set by hand for other types.
require_runtime() {
  [[ -n "$TPU_RUNTIME_VERSION" ]] ||
    die "no runtime version known for TPU_ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE}: set TPU_RUNTIME_VERSION (https://cloud.google.com/tpu/docs/runtimes)"
}

# A passphrase-protected ssh key that is not in an ssh-agent makes every ssh of
# --worker=all ask for the passphrase (babysit.sh would hang): refuse early.
check_ssh_agent() {
  is_dry_run && return 0
  case "${TPU_SSH_AGENT_CHECK}" in 0 | false | no | off) return 0 ;; esac
  local key="$TPU_SSH_KEY" err fp
  [[ -f "$key" ]] || return 0               # gcloud creates a key on first use
  command -v ssh-keygen >/dev/null 2>&1 || return 0
  if err=$(ssh-keygen -y -P "" -f "$key" 2>&1 >/dev/null); then return 0; fi
  grep -qi passphrase <<<"$err" || return 0 # unreadable for another reason: let ssh say why
  fp=$(ssh-keygen -l -f "${key}.pub" 2>/dev/null || ssh-keygen -l -f "$key" 2>/dev/null || true)
  fp=$(awk '{print $2}' <<<"$fp")
  if [[ -n "${SSH_AUTH_SOCK:-}" && -n "$fp" ]] && ssh-add -l 2>/dev/null | grep -qF -- "$fp"; then
    return 0
  fi
  die "ssh key ${key} has a passphrase and is not loaded in an ssh-agent: ssh to --worker=all would ask once per worker (and babysit.sh cannot answer). Run: eval \"\$(ssh-agent -s)\" && ssh-add ${key}   (or TPU_SSH_AGENT_CHECK=0 to skip this check)"
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

# The gcloud ssh command line for the given worker(s) ("all" or an index).
ssh_cmd() {
  local worker="$1" command="$2"
  SSH_CMD=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOC_FLAGS[@]}"
    "--worker=${worker}" ${SSH_FLAGS[@]+"${SSH_FLAGS[@]}"} "--command=${command}")
}

# gcloud compute tpus tpu-vm ssh on the given worker(s).
tpu_ssh() {
  ssh_cmd "$1" "$2"
  run "${SSH_CMD[@]}"
}

# The state word in the stdout of `gcloud ... --format=value(state...)`: the
# first line that is one upper-case word. gcloud writes warnings and progress to
# stderr, which is never parsed as a state.
state_word() {
  awk 'NF == 1 && $1 ~ /^[A-Z][A-Z_]*$/ { print $1; exit }'
}
