#!/usr/bin/env bash
# Beyond the paper: does SAM's neighbourhood radius explain why, at CPU scale, SAM's model stays
# at the majority label on the pair tasks (QNLI, MRPC, QQP) while Adam's learns? Fine-tunes
# MiniLM with SAM (Adam base) at each rho in RHOS, with the settings of the compare run of TASK
# and SEED (cpu preset: each task's CPU-scale subset and length from experiments/_tasks.sh,
# 2 epochs, batch 32, lr 1e-4; dev as compare scores it), and Adam once beside them.
# About 4 min per Adam run and 6 min per SAM run on QNLI on the 2-core CPU.
# -> experiments/results/sam_rho_<task>/<optimizer>-seed<N>/ (config, metrics, results),
#    summary.csv, summary.json, curves.png
#
#   TASK=qnli SEED=0 RHOS="0.01 0.02 0.05" bash experiments/sam_rho_tasks.sh
#
# The paper's scale (rho 0.05 throughout): MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
TASK=${TASK:-qnli}
SEED=${SEED:-0}
RHOS=${RHOS:-"0.01 0.02 0.05"}
OUT=experiments/results/sam_rho_$TASK
train_args_for "$TASK" "$SEED"
for spec in adam $RHOS; do
  if [ "$spec" = adam ]; then
    name=adam; opt_args=(--optimizer adam)
  else
    name=sam-rho$spec; opt_args=(--optimizer sam --rho "$spec")
  fi
  run=runs/sam-rho-$TASK-$name-seed$SEED
  resume=(); [ -f "$run/config.json" ] && resume=(--resume)
  echo "== $TASK seed $SEED: $name"
  .venv/bin/flatjax train "${TRAIN_ARGS[@]}" "${opt_args[@]}" --no-keep-best --output "$run" \
    "${resume[@]}" > /dev/null
  mkdir -p "$OUT/$name-seed$SEED"
  cp "$run"/{config.json,metrics.jsonl,results.json} "$OUT/$name-seed$SEED/"
done
# The summary and the plot cover every seed run so far, not only this one.
all_runs=()
for d in "$OUT"/*-seed*/; do
  if [ -f "$d/results.json" ]; then all_runs+=("${d%/}"); fi
done
.venv/bin/python experiments/summarize_runs.py "${all_runs[@]}" --out "$OUT"
.venv/bin/python experiments/plot_run.py "${all_runs[@]}" --out "$OUT/curves.png"
