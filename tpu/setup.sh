#!/usr/bin/env bash
# Install the software on every worker of the TPU VM slice: a Python venv,
# jax[tpu], and this repository (checked out at SCALING_GIT_REF) with the
# [tfds] extra. Safe to re-run: it updates the checkout and the packages.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--worker=all|N] [--dry-run] [--help]

Install python venv + jax[tpu] + scaling[tfds] on the TPU VM workers:
  TPU           ${TPU_NAME} (${TPU_ZONE}, project ${TPU_PROJECT})
  repository    ${SCALING_GIT_URL} @ ${SCALING_GIT_REF}
  checkout      ${REMOTE_REPO}   venv ${REMOTE_VENV}   python ${TPU_PYTHON}

Options:
  --worker=W   which worker(s) to set up (default: all)
  --dry-run    print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help   show this help
USAGE
}

worker=all
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  case "$1" in
    --worker=*) worker="${1#*=}" ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; worker="$2"; shift ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
require_config
require_git_url

py=$(shq "$TPU_PYTHON")
venv=$(rpath "$REMOTE_VENV")
repo=$(rpath "$REMOTE_REPO")
url=$(shq "$SCALING_GIT_URL")
ref=$(shq "$SCALING_GIT_REF")
apt="sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"

# One line of shell, run by bash on each worker.
remote="set -e; "
remote+="if ! command -v ${py} >/dev/null; then ${apt} update -qq && ${apt} install -y -qq ${py} ${py}-venv git; fi; "
remote+="[ -x ${venv}/bin/python ] || ${py} -m venv ${venv}; "
remote+=". ${venv}/bin/activate; "
remote+="python -m pip install -q -U pip; "
remote+="python -m pip install -q -U \"jax[tpu]\"; "
remote+="if [ -d ${repo}/.git ]; then git -C ${repo} remote set-url origin ${url}; else git clone -q ${url} ${repo}; fi; "
remote+="git -C ${repo} fetch -q origin ${ref} && git -C ${repo} checkout -q --force FETCH_HEAD; "
remote+="cd ${repo} && python -m pip install -q -e \".[tfds]\"; "
remote+="python -c \"import jax, scaling; print(jax.__version__)\"; "
remote+="echo \"setup ok: \$(hostname) \$(git -C ${repo} rev-parse --short HEAD)\""

log "setting up ${TPU_NAME} (worker=${worker}) with ${SCALING_GIT_URL}@${SCALING_GIT_REF}"
tpu_ssh "$worker" "$remote"
