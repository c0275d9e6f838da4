#!/usr/bin/env bash
# Sets up .venv and runs the main job: train flat, then compress.
# `flatjax compare --task TASK` (TASK=sst2 by default) at its cpu preset: MiniLM fine-tuned
# with Adam and with SAM (2 epochs, lr 1e-4), then each fine-tuned model compressed by IMP to
# the task's reference sparsity (2 rounds, rewinding), one-shot magnitude pruning and int8
# dynamic quantization. One table and a plot in runs/compare-TASK. SST-2: 1,000 training
# sentences, max length 128, all 872 dev sentences (about 14 min on a 2-core CPU).
#   bash scripts/main.sh                 # SST-2
#   TASK=rte bash scripts/main.sh        # any of rte mrpc sst2 qnli mnli qqp squad
# Reads ../shared/data when it exists (the CPU-scale sizes of experiments/_tasks.sh), else the
# Hugging Face hub. Extra arguments go to `flatjax compare` (e.g. --preset full on an
# accelerator). Running it again resumes the run, or reprints its table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
TASK=${TASK:-sst2}
OUT=runs/compare-$TASK
ARGS=(--task "$TASK")
if [ -d ../shared/data ]; then
  source experiments/_tasks.sh
  eval_args_for "$TASK" 0
  ARGS=()
  for a in "${EVAL_ARGS[@]}"; do [ "$a" = --no-progress ] || ARGS+=("$a"); done  # keep the bars
  ARGS+=(--max-train-examples "$(train_examples_for "$TASK")")
fi
RESUME=()
if [ -f "$OUT/compare.json" ]; then RESUME=(--resume); fi   # continue (or re-report) a run
exec .venv/bin/flatjax compare "${ARGS[@]}" --output "$OUT" "${RESUME[@]}" "$@"
