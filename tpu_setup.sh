#!/usr/bin/env bash
# Creates (or reuses) a Cloud TPU VM or pod slice with gcloud, installs JAX for TPU
# and flatjax on every worker, and launches a flatjax command on all workers at once.
# Run `bash tpu_setup.sh --help` for the steps and options; `--dry-run` prints the
# commands instead of running them (and needs no gcloud).
set -euo pipefail

PROG=${0##*/}
_src=${BASH_SOURCE[0]}
if [[ $_src == */* ]]; then _dir=${_src%/*}; else _dir=.; fi
SCRIPT_DIR=$(cd "$_dir" && pwd)

# Defaults (see usage).
NAME=flatjax-tpu
ZONE=us-central2-b
ACCELERATOR=v4-8
VERSION=tpu-ubuntu2204-base
PROJECT=
REPO=
CAPACITY=          # "", spot or preemptible
DRY_RUN=0
STEP=
FLATJAX_ARGS=()

# Where things live on each worker (relative to the login user's home).
REMOTE_DIR=flatjax
REMOTE_VENV=flatjax-venv
LIBTPU_URL=https://storage.googleapis.com/jax-releases/libtpu_releases.html
STAGE=             # local staging folder for the checkout copy (removed on exit)

usage() {  # (no cat: --help works with nothing but bash on PATH)
  local text
  IFS= read -r -d '' text <<EOF || true
Usage: $PROG [OPTIONS] STEP [-- FLATJAX ARGS...]

Creates (or reuses) a Google Cloud TPU VM or pod slice, installs JAX for TPU and
flatjax on every worker, and launches a flatjax command on all workers.

Steps:
  create            create the TPU unless it exists (checked with
                    'gcloud compute tpus tpu-vm describe'); an existing READY TPU is reused
  install           on all workers: put flatjax in ~/$REMOTE_DIR (copy of the checkout, or
                    git clone), make the venv ~/$REMOTE_VENV, pip install -U "jax[tpu]"
                    (find-links $LIBTPU_URL),
                    then pip install -e ~/$REMOTE_DIR
  run -- ARGS...    run 'flatjax ARGS...' in ~/$REMOTE_DIR on all workers at once
                    (e.g. run -- train --task sst2 --output runs/x)
  delete            delete the TPU (no confirmation prompt)
  all -- ARGS...    create, install, then run

Options (each VALUE option also takes the form --option=VALUE):
  --name NAME               TPU name (default: $NAME)
  --zone ZONE               zone (default: $ZONE)
  --accelerator-type TYPE   accelerator type, e.g. v4-8, v4-32, v5litepod-8
                            (default: $ACCELERATOR)
  --version RUNTIME         TPU runtime (software) version (default: $VERSION;
                            v5e wants v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5,
                            v6e v2-alpha-tpuv6e)
  --project PROJECT         Google Cloud project, passed as --project
                            (default: gcloud's configured project)
  --repo URL_OR_PATH        where flatjax on the workers comes from: a local checkout
                            (copied with 'gcloud compute tpus tpu-vm scp --recurse
                            --worker=all'; git-tracked and untracked-but-not-ignored
                            files only) or a git URL to clone (default: copy this
                            checkout, $SCRIPT_DIR)
  --spot                    create a Spot TPU
  --preemptible             create a preemptible TPU
  --dry-run                 print every command (one a line, prefixed '+ ') instead
                            of running it; needs no gcloud
  -h, --help                show this help and exit

Multi-host (pod slices such as v4-32, with more than one worker): the same command
is started on every worker at once, and that is the whole launch: the script sets
FLATJAX_DISTRIBUTED=1, so flatjax calls jax.distributed.initialize() (no arguments
needed on Cloud TPU: it finds the other workers of the slice by itself) before it
uses JAX. Worker 0 writes the logs and models; every worker writes its shards of the
checkpoints, so on a pod slice --output must be a folder all workers share (an NFS
or gcsfuse mount). If ssh drops, the run on the workers stops with it.
A copy (default --repo) is laid over ~/$REMOTE_DIR, so outputs there (runs/) survive.

Examples:
  $PROG --dry-run --accelerator-type v4-32 --name pod all -- train --task sst2 --output runs/x
  $PROG --name pod run -- train --task sst2 --output runs/y
  $PROG --name pod delete
EOF
  printf '%s' "$text"
}

die_usage() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  printf "Try '%s --help'.\n" "$PROG" >&2
  exit 2
}

die() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  exit 1
}

log() {
  if ((DRY_RUN)); then printf '# %s\n' "$1"; else printf '%s: %s\n' "$PROG" "$1" >&2; fi
}

# One word, quoted for a POSIX shell only where it needs it (--option=VALUE keeps
# --option= outside the quotes).
quote_word() {
  local w=$1 plain='^[A-Za-z0-9_@%+=:,./-]+$' option='^--[A-Za-z0-9-]+='
  if [[ $w =~ $plain ]]; then
    printf '%s' "$w"
  elif [[ $w =~ $option ]]; then
    printf '%s' "${BASH_REMATCH[0]}"
    quote_word "${w#"${BASH_REMATCH[0]}"}"
  else
    printf "'%s'" "${w//\'/\'\\\'\'}"
  fi
}

# A command line, as a shell would read it back.
quote_cmd() {
  local out="" w
  for w in "$@"; do
    out+="${out:+ }$(quote_word "$w")"
  done
  printf '%s' "$out"
}

# Runs a command, or only prints it in dry-run mode (the printed line goes to
# stdout there, to stderr otherwise).
run_cmd() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(quote_cmd "$@")"
  else
    printf '+ %s\n' "$(quote_cmd "$@")" >&2
    "$@"
  fi
}

set_option() {  # OPTION VALUE
  if [[ -z $2 || $2 == -* ]]; then die_usage "option $1 needs a value"; fi
  case $1 in
    --name) NAME=$2 ;;
    --zone) ZONE=$2 ;;
    --accelerator-type) ACCELERATOR=$2 ;;
    --version) VERSION=$2 ;;
    --project) PROJECT=$2 ;;
    --repo) REPO=$2 ;;
  esac
}

set_capacity() {  # spot | preemptible
  if [[ -n $CAPACITY && $CAPACITY != "$1" ]]; then
    die_usage "--spot and --preemptible exclude each other"
  fi
  CAPACITY=$1
}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --spot) set_capacity spot ;;
    --preemptible) set_capacity preemptible ;;
    --name | --zone | --accelerator-type | --version | --project | --repo)
      if (($# < 2)); then die_usage "option $1 needs a value"; fi
      set_option "$1" "$2"
      shift
      ;;
    --name=* | --zone=* | --accelerator-type=* | --version=* | --project=* | --repo=*)
      set_option "${1%%=*}" "${1#*=}"
      ;;
    --) shift; FLATJAX_ARGS=("$@"); break ;;
    -*) die_usage "unknown option '$1'" ;;
    *)
      if [[ -n $STEP ]]; then
        die_usage "unexpected argument '$1' (flatjax arguments go after --)"
      fi
      STEP=$1
      ;;
  esac
  shift
done

case $STEP in
  create | install | delete)
    if ((${#FLATJAX_ARGS[@]})); then die_usage "step '$STEP' takes no arguments after --"; fi
    ;;
  run | all)
    # "run -- flatjax train ..." means the same as "run -- train ...".
    if ((${#FLATJAX_ARGS[@]})) && [[ ${FLATJAX_ARGS[0]} == flatjax ]]; then
      FLATJAX_ARGS=("${FLATJAX_ARGS[@]:1}")
    fi
    if ((${#FLATJAX_ARGS[@]} == 0)); then
      die_usage "step '$STEP' needs the flatjax arguments after --, e.g.
  $STEP -- train --task sst2 --output runs/x"
    fi
    ;;
  "") die_usage "no step given (create, install, run, delete or all)" ;;
  *) die_usage "unknown step '$STEP' (create, install, run, delete or all)" ;;
esac

if [[ ! $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
  die_usage "--name '$NAME': lowercase letters, digits and hyphens, starting with a letter"
fi

# Where flatjax comes from: a local folder to copy (SOURCE_DIR) or a git URL (GIT_URL).
SOURCE_DIR=
GIT_URL=
if [[ -z $REPO ]]; then
  SOURCE_DIR=$SCRIPT_DIR
elif [[ -d $REPO ]]; then
  SOURCE_DIR=$(cd "$REPO" && pwd)
elif [[ $REPO == *://* || $REPO == *@*:* ]]; then
  GIT_URL=$REPO
else
  die_usage "--repo '$REPO' is neither a folder nor a git URL"
fi
if [[ -n $SOURCE_DIR && ! -f $SOURCE_DIR/pyproject.toml ]]; then
  die_usage "--repo '$SOURCE_DIR' has no pyproject.toml (not a flatjax checkout)"
fi
if [[ -n $SOURCE_DIR && $SOURCE_DIR == *:* ]]; then
  die_usage "--repo '$SOURCE_DIR': gcloud scp would read a path with ':' as remote"
fi

if ((!DRY_RUN)); then
  if ! command -v gcloud >/dev/null 2>&1; then
    die "gcloud not found on PATH; install the Google Cloud SDK\
 (https://cloud.google.com/sdk/docs/install), or use --dry-run to print the commands"
  fi
fi

TPU=(gcloud compute tpus tpu-vm)
GCLOUD_FLAGS=(--zone="$ZONE")
if [[ -n $PROJECT ]]; then GCLOUD_FLAGS+=(--project="$PROJECT"); fi

cleanup() {
  if [[ -n $STAGE ]]; then rm -rf -- "$STAGE"; fi
}
trap cleanup EXIT

on_all_workers() {  # REMOTE_COMMAND
  run_cmd "${TPU[@]}" ssh "$NAME" "${GCLOUD_FLAGS[@]}" --worker=all --command="$1"
}

step_create() {
  local describe=("${TPU[@]}" describe "$NAME" "${GCLOUD_FLAGS[@]}" --format='value(state)')
  local create=("${TPU[@]}" create "$NAME" "${GCLOUD_FLAGS[@]}"
    --accelerator-type="$ACCELERATOR" --version="$VERSION" ${CAPACITY:+"--$CAPACITY"})
  local state
  if ((DRY_RUN)); then
    run_cmd "${describe[@]}"
    log "if the describe above finds no TPU '$NAME' (else it is reused when READY):"
    run_cmd "${create[@]}"
    return
  fi
  printf '+ %s\n' "$(quote_cmd "${describe[@]}")" >&2
  if state=$("${describe[@]}" 2>/dev/null); then
    if [[ $state == READY ]]; then
      log "TPU '$NAME' exists in $ZONE and is READY; reusing it"
      return
    fi
    die "TPU '$NAME' exists in $ZONE but is ${state:-in an unknown state}, not READY; wait for\
 it, or delete it with: $PROG --name $NAME --zone $ZONE${PROJECT:+ --project $PROJECT} delete"
  fi
  log "no TPU '$NAME' in $ZONE; creating it ($ACCELERATOR, $VERSION${CAPACITY:+, $CAPACITY})"
  run_cmd "${create[@]}"
}

# Passes on the NUL-separated paths (relative to SOURCE_DIR) that exist: git lists
# tracked files deleted in the work tree too, and tar would stop at them.
skip_deleted() {
  local f
  while IFS= read -r -d '' f; do
    if [[ -e $SOURCE_DIR/$f || -L $SOURCE_DIR/$f ]]; then printf '%s\0' "$f"; fi
  done
}

# Copies SOURCE_DIR's git-tracked and untracked-but-not-ignored files (everything
# but .git, .venv, runs/ and the like when it is no git work tree) into DEST.
stage_checkout() {  # DEST
  local dest=$1 list
  local excludes=(--exclude=.git --exclude=.venv --exclude=runs --exclude=__pycache__
    --exclude='*.egg-info' --exclude=.pytest_cache --exclude=build)
  local untar=(tar -C "$dest" -xf -)
  run_cmd mkdir -p "$dest"
  if command -v git >/dev/null 2>&1 &&
    git -C "$SOURCE_DIR" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    list=(git -C "$SOURCE_DIR" ls-files -z --cached --others --exclude-standard)
    local pack=(tar -C "$SOURCE_DIR" --null -T - -cf -)
    if ((DRY_RUN)); then
      printf '+ %s | skip_deleted | %s | %s\n' "$(quote_cmd "${list[@]}")" \
        "$(quote_cmd "${pack[@]}")" "$(quote_cmd "${untar[@]}")"
    else
      "${list[@]}" | skip_deleted | "${pack[@]}" | "${untar[@]}"
    fi
  else
    local pack=(tar -C "$SOURCE_DIR" "${excludes[@]}" -cf - .)
    if ((DRY_RUN)); then
      printf '+ %s | %s\n' "$(quote_cmd "${pack[@]}")" "$(quote_cmd "${untar[@]}")"
    else
      "${pack[@]}" | "${untar[@]}"
    fi
  fi
}

step_install() {
  # "~" in these strings is expanded by the worker's shell, not here.
  local fetch venv=\~/$REMOTE_VENV
  local venv_py=$venv/bin/python
  if [[ -n $SOURCE_DIR ]]; then
    local incoming=$REMOTE_DIR.incoming stage='<staging-dir>'
    if ((!DRY_RUN)); then
      STAGE=$(mktemp -d "${TMPDIR:-/tmp}/flatjax-stage.XXXXXX")
      stage=$STAGE
    fi
    log "copying $SOURCE_DIR to ~/$REMOTE_DIR on all workers of '$NAME'"
    stage_checkout "$stage/$REMOTE_DIR"
    on_all_workers "rm -rf ~/$incoming"
    run_cmd "${TPU[@]}" scp --recurse "$stage/$REMOTE_DIR" "$NAME:$incoming" \
      "${GCLOUD_FLAGS[@]}" --worker=all
    # Laid over the old copy, so that outputs under ~/flatjax (runs/) stay.
    fetch="mkdir -p ~/$REMOTE_DIR; cp -a ~/$incoming/. ~/$REMOTE_DIR/; rm -rf ~/$incoming"
  else
    local url
    printf -v url '%q' "$GIT_URL"
    fetch="if [ -d ~/$REMOTE_DIR/.git ]; then git -C ~/$REMOTE_DIR pull --ff-only;"
    fetch+=" elif [ -e ~/$REMOTE_DIR ]; then"
    fetch+=" echo \"~/$REMOTE_DIR exists and is no git clone; remove it\" >&2; exit 1;"
    fetch+=" else git clone $url ~/$REMOTE_DIR; fi"
  fi
  local steps=(
    "set -e"
    "$fetch"
    # Ubuntu's python3 lacks ensurepip until python3-venv is installed.
    "if [ ! -x $venv/bin/pip ]; then python3 -m venv $venv || { sudo apt-get update -qq;\
 sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv;\
 python3 -m venv --clear $venv; }; fi"
    "$venv_py -m pip install -q -U pip"
    "$venv_py -m pip install -U \"jax[tpu]\" -f $LIBTPU_URL"
    "$venv_py -m pip install -e ~/$REMOTE_DIR"
    "$venv_py -c \"import flatjax, jax; print(jax.__version__)\""
  )
  local remote="" s
  for s in "${steps[@]}"; do remote+="${remote:+; }$s"; done
  log "installing JAX for TPU and flatjax on all workers of '$NAME'"
  on_all_workers "$remote"
}

step_run() {
  local args
  printf -v args '%q ' "${FLATJAX_ARGS[@]}"
  log "launching flatjax on all workers of '$NAME' (one process per worker; on a pod slice,\
 jax.distributed.initialize() in each finds the others)"
  # FLATJAX_DISTRIBUTED=1: flatjax calls jax.distributed.initialize() before it uses JAX.
  on_all_workers "cd ~/$REMOTE_DIR && FLATJAX_DISTRIBUTED=1 ~/$REMOTE_VENV/bin/flatjax ${args% }"
}

step_delete() {
  log "deleting TPU '$NAME' in $ZONE"
  run_cmd "${TPU[@]}" delete "$NAME" "${GCLOUD_FLAGS[@]}" --quiet
}

case $STEP in
  create) step_create ;;
  install) step_install ;;
  run) step_run ;;
  delete) step_delete ;;
  all) step_create; step_install; step_run ;;
esac
