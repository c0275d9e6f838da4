#!/usr/bin/env bash
# Sets up .venv with the test extra and runs the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest tests "$@"
