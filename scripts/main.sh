#!/usr/bin/env bash
# Sets up .venv and runs the main job: train flat, then compress.
# `python -m experiments.run compare --tasks TASK --seeds 0 --check` (TASK=sst2 by default):
# `flatjax compare` at its cpu preset fine-tunes MiniLM with Adam and with SAM (2 epochs,
# lr 1e-4), then compresses each fine-tuned model by IMP to the task's reference sparsity
# (2 rounds, rewinding), one-shot magnitude pruning and int8 dynamic quantization. The run
# goes to runs/compare/TASK-seed0; its table, rows and plot to runs/compare/; the last lines
# say whether its rows equal experiments/results/compare's (exit 1 if not). SST-2: 1,000
# training sentences, max length 128, all 872 dev sentences (about 14 min on a 2-core CPU).
#   bash scripts/main.sh                 # SST-2
#   TASK=rte bash scripts/main.sh        # any of rte mrpc sst2 qnli mnli qqp squad
# Reads ../shared/data where it exists, else the Hugging Face hub. Extra arguments go to the
# runner (e.g. --scale full on an accelerator). Running it again resumes the run, or
# reprints its table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m experiments.run compare --tasks "${TASK:-sst2}" --seeds 0 --check "$@"
