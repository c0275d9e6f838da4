#!/usr/bin/env bash
# Tables 3/4 across seeds and tasks, at CPU scale: Keskar epsilon-sharpness (epsilon 1e-3 and
# 5e-3, full parameter space, 10 L-BFGS-B iterations, x100) and the Hessian's top eigenvalue
# (power iteration, at most 10 steps) of the Adam and SAM models that
# experiments/compare_tasks.sh fine-tuned (run it first), on a fixed sample of 128 training
# examples (seed 0) of each task. No loss surfaces or trace here (sharpness_sst2.sh has them
# for the CoFi teachers). About 3 min per model on the 2-core CPU.
# -> experiments/results/sharpness_compare/<task>/seed<N>/<optimizer>/sharpness.json
#
#   TASKS="sst2 mrpc" SEEDS="0 1" bash experiments/sharpness_tasks.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TASKS=${TASKS:-"sst2 mrpc"}
SEEDS=${SEEDS:-"0 1"}
EXAMPLES=${EXAMPLES:-128}
for task in $TASKS; do
  for seed in $SEEDS; do
    for opt in adam sam; do
      run=runs/compare-$task-seed$seed/$opt/imp/round_00
      [ -d "$run/best" ] || { echo "missing $run: run experiments/compare_tasks.sh first" >&2; exit 1; }
      out=experiments/results/sharpness_compare/$task/seed$seed/$opt
      if [ ! -f "$run/sharpness/sharpness.json" ]; then
        .venv/bin/flatjax sharpness "$run" --examples "$EXAMPLES" --batch-size 32 \
          --epsilon 1e-3 --epsilon 5e-3 --maxiter 10 --hessian-iterations 10 \
          --hutchinson-samples 0 --surface-points 0 --contour-points 0 --seed 0 --no-progress \
          > /dev/null
      fi
      mkdir -p "$out"
      cp "$run/sharpness/sharpness.json" "$out/"
    done
  done
done
