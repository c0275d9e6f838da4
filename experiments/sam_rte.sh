#!/usr/bin/env bash
# Adam vs SAM (rho 0.05, Adam base) fine-tuning MiniLM on RTE: the full training set
# (2,490 pairs), 3 epochs, max length 128, batch 32, lr 1e-4 with 23 warmup steps (10%)
# then linear decay, evaluated on all 277 dev pairs after each epoch; seeds 0 and 1.
# Results: experiments/results/sam_rte/ (per-run config/metrics/results, summary.csv,
# summary.json, curves.png). CPU scale: ~10 min per Adam run, ~20 min per SAM run.
#
# The paper's scale (bert-base-uncased, 10 epochs, lr 2e-5, no warmup, 3 seeds) on a GPU/TPU:
#   MODEL=bert-base-uncased EPOCHS=10 LR=2e-5 WARMUP=0 SEEDS="0 1 2" bash experiments/sam_rte.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/glue/RTE}
MODEL=${MODEL:-minilm}
EPOCHS=${EPOCHS:-3}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-23}
SEEDS=${SEEDS:-"0 1"}
OUT=experiments/results/sam_rte
COMMON=(--task rte --data "$DATA" --model "$MODEL" --epochs "$EPOCHS" --max-length 128
        --batch-size 32 --lr "$LR" --warmup-steps "$WARMUP" --no-progress)
runs=()
for seed in $SEEDS; do
  for opt in adam sam; do
    run=runs/rte-$MODEL-$opt-seed$seed
    resume=(); [ -f "$run/config.json" ] && resume=(--resume)
    .venv/bin/flatjax train "${COMMON[@]}" --optimizer "$opt" --seed "$seed" --output "$run" \
      "${resume[@]}" > /dev/null
    runs+=("$run")
    mkdir -p "$OUT/$opt-seed$seed"
    cp "$run"/{config.json,metrics.jsonl,results.json} "$OUT/$opt-seed$seed/"
  done
done
.venv/bin/python experiments/summarize_runs.py "${runs[@]}" --out "$OUT"
.venv/bin/python experiments/plot_run.py "${runs[@]}" --out "$OUT/curves.png"
