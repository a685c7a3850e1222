#!/usr/bin/env bash
# Install the code and its dependencies on every worker of the TPU VM slice,
# pinned for the whole run.
#
# The first setup of a RUN resolves and records, in gs://BUCKET/RUN/setup/:
#   source.tar.gz     the code: this working tree (default: tracked and
#                     untracked files git does not ignore), or SCALING_GIT_REF
#                     of SCALING_GIT_URL resolved to one commit (git archive)
#   source.txt        where it came from (commit, host, path, uncommitted changes)
#   requirements.lock `pip freeze` of worker 0 after `pip install -e '.[tpu]'`
#                     (jax[tpu] + TFDS + matplotlib + gcsfs)
# Every later setup (babysit.sh runs one after each preemption) installs exactly
# that code and those versions on every worker: nothing is re-fetched or
# re-resolved, so versions cannot drift mid-sweep. --relock records anew (after
# you changed the code on purpose).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--worker=all|N] [--relock] [--ssh-flag=FLAG ...] [--dry-run] [--help]

Install python venv + scaling[tpu] on the TPU VM workers, pinned by the lock in
${GS_SETUP}/:
  TPU           ${TPU_NAME} (${TPU_ZONE}, project ${TPU_PROJECT})
  code          $(if [[ -n "$SCALING_GIT_URL" ]]; then echo "${SCALING_GIT_URL} @ ${SCALING_GIT_REF}"; else echo "this working tree, ${REPO_ROOT}"; fi)
  checkout      ${REMOTE_REPO}   venv ${REMOTE_VENV}   python ${TPU_PYTHON}

Options:
  --worker=W       which worker(s) to install on (default: all)
  --relock         ship the code and resolve the versions again, replacing the
                   run's lock (the default reuses it)
  --ssh-flag=FLAG  passed to gcloud's --ssh-flag (repeatable)
  --dry-run        print the gcloud commands instead of running them (or DRY_RUN=1)
  -h, --help       show this help
USAGE
}

worker=all
relock=0
while [[ $# -gt 0 ]]; do
  common_flag "$1" && { shift; continue; }
  ssh_flag "$1" && { shift; continue; }
  case "$1" in
    --worker=*) worker="${1#*=}" ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; worker="$2"; shift ;;
    --relock) relock=1 ;;
    *) unknown_flag "$1" ;;
  esac
  shift
done
require_config
# The checkout is replaced wholesale on the workers: refuse paths that are not a
# dedicated directory.
repo_re='^(~|/[^/]+)/[^/]+'
[[ "$REMOTE_REPO" =~ $repo_re && "$REMOTE_REPO" != *..* ]] ||
  die "REMOTE_REPO must be a dedicated directory such as ~/scaling, got '${REMOTE_REPO}'"
if [[ -z "$SCALING_GIT_URL" ]]; then
  git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    die "${REPO_ROOT} is not a git checkout: shipping the working tree needs git (it decides which files to ship); or set SCALING_GIT_URL"
fi
check_ssh_agent

# The files of this working tree that git does not ignore (deleted ones left out).
tree_files() {
  git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      if [[ -e "${REPO_ROOT}/${f}" || -L "${REPO_ROOT}/${f}" ]]; then printf '%s\0' "$f"; fi
    done
}

# Upload this working tree as the run's source.tar.gz, and where it came from.
ship_working_tree() {
  local n head changes
  n=$(tree_files | tr -cd '\0' | wc -c | tr -d ' ')
  head=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  changes=$(git -C "$REPO_ROOT" status --porcelain | wc -l | tr -d ' ')
  log "shipping ${n} files of ${REPO_ROOT} (HEAD ${head}, ${changes} uncommitted changes) to ${GS_SETUP}/source.tar.gz"
  if is_dry_run; then
    show_cmd gcloud storage cp - "${GS_SETUP}/source.tar.gz" >&3
    show_cmd gcloud storage cp - "${GS_SETUP}/source.txt" >&3
    return 0
  fi
  tree_files | tar -C "$REPO_ROOT" --null -T - -czf - | run gcloud storage cp - "${GS_SETUP}/source.tar.gz"
  printf 'working tree %s:%s, HEAD %s, %s uncommitted changes, shipped %s\n' \
    "$(hostname)" "$REPO_ROOT" "$head" "$changes" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" |
    run gcloud storage cp - "${GS_SETUP}/source.txt"
}

py=$(shq "$TPU_PYTHON")
venv=$(rpath "$REMOTE_VENV")
repo=$(rpath "$REMOTE_REPO")
repo_new=$(rpath "${REMOTE_REPO}.new")
lock=$(shq "${GS_SETUP}")
apt="sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"

# Shell programs run by bash on the workers. $T is a fresh temporary directory.
prelude="set -e; "
prelude+="if ! command -v ${py} >/dev/null; then ${apt} update -qq && ${apt} install -y -qq ${py} ${py}-venv git; fi; "
prelude+="[ -x ${venv}/bin/python ] || ${py} -m venv ${venv}; "
prelude+=". ${venv}/bin/activate; "
prelude+="python -m pip install -q -U pip; "
prelude+="T=\$(mktemp -d); "
# The run's code from the bucket, replacing the checkout.
unpack="gcloud storage cp ${lock}/source.tar.gz \"\$T\"/source.tar.gz; "
unpack+="rm -rf ${repo_new}; mkdir -p ${repo_new}; tar -xzf \"\$T\"/source.tar.gz -C ${repo_new}; "
unpack+="rm -rf ${repo}; mv ${repo_new} ${repo}; "

# First setup, on worker 0: resolve the code (git mode) and the versions.
resolve="$prelude"
if [[ -n "$SCALING_GIT_URL" ]]; then
  url=$(shq "$SCALING_GIT_URL")
  ref=$(shq "$SCALING_GIT_REF")
  resolve+="command -v git >/dev/null || { ${apt} update -qq && ${apt} install -y -qq git; }; "
  resolve+="git init -q \"\$T\"/src; git -C \"\$T\"/src fetch -q --depth=1 ${url} ${ref}; "
  resolve+="C=\$(git -C \"\$T\"/src rev-parse 'FETCH_HEAD^{commit}'); "
  resolve+="git -C \"\$T\"/src archive --format=tar.gz -o \"\$T\"/source.tar.gz \"\$C\"; "
  resolve+="gcloud storage cp \"\$T\"/source.tar.gz ${lock}/source.tar.gz; "
  resolve+="echo \"git ${url} ${ref} = commit \$C\" > \"\$T\"/source.txt; "
  resolve+="gcloud storage cp \"\$T\"/source.txt ${lock}/source.txt; "
fi
resolve+="$unpack"
resolve+="cd ${repo}; python -m pip install -q -e '.[tpu]'; "
resolve+="python -m pip freeze --exclude-editable > \"\$T\"/requirements.lock; "
resolve+="gcloud storage cp \"\$T\"/requirements.lock ${lock}/requirements.lock; "
resolve+="echo \"locked \$(wc -l < \"\$T\"/requirements.lock) packages in ${lock}/requirements.lock\""

# Every setup, on the workers: exactly the locked code and versions.
install="$prelude$unpack"
install+="gcloud storage cp ${lock}/requirements.lock ${lock}/source.txt \"\$T\"/; "
install+="python -m pip install -q -r \"\$T\"/requirements.lock; "
install+="cd ${repo}; python -m pip install -q --no-deps -e .; "
install+="V=\$(python -c 'import jax, scaling; print(jax.__version__)'); "
install+="echo \"setup ok: \$(hostname) jax \$V, code: \$(head -n 1 \"\$T\"/source.txt)\""

locked=0
if ((relock)); then
  log "--relock: replacing the lock in ${GS_SETUP}/"
  run gcloud storage rm "${GS_SETUP}/requirements.lock" >/dev/null 2>&1 || true
elif query gcloud storage ls "${GS_SETUP}/requirements.lock" >/dev/null 2>&1; then
  locked=1
fi

if ((locked)); then
  log "installing the run's locked code and versions (${GS_SETUP}/) on ${TPU_NAME} (worker=${worker})"
else
  log "first setup of ${RUN}: pinning code and versions in ${GS_SETUP}/"
  if [[ -z "$SCALING_GIT_URL" ]]; then ship_working_tree; fi
  tpu_ssh 0 "$resolve"
  log "installing the locked code and versions on ${TPU_NAME} (worker=${worker})"
fi
tpu_ssh "$worker" "$install"
