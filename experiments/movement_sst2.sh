#!/usr/bin/env bash
# Movement pruning (Sanh et al. 2020) x {Adam, SAM} (beyond the paper), CPU scale: MiniLM on
# SST-2, pruned during fine-tuning to SST-2's reference sparsity (60%) of the encoder scope,
# per-tensor top-k of the movement scores, cubic schedule from 10% to 70% of the run. Longer
# than compare's runs (EPOCHS=3: 94 steps on 1,000 sentences, lr 1e-4, batch 32): with 63 steps
# (experiments/results/prune_sst2/) too few score updates were left and both models ended at the
# majority class. About 10 min per seed on the 2-core CPU. -> experiments/results/movement_sst2/seed<N>/
#
#   SEEDS="0 1" bash experiments/movement_sst2.sh
#
# The paper's scale: MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=10 LR=2e-5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
SEEDS=${SEEDS:-0}
EPOCHS=${EPOCHS:-3}
for seed in $SEEDS; do
  train_args_for sst2 "$seed"
  for opt in adam sam; do
    run=runs/movement-sst2-$opt-seed$seed
    resume=(); [ -f "$run/config.json" ] && resume=(--resume)
    .venv/bin/flatjax train "${TRAIN_ARGS[@]}" --optimizer "$opt" --pruning movement \
      --sparsity 0.6 --pruning-begin 0.1 --pruning-end 0.7 --pruning-scope encoder \
      --no-keep-best --output "$run" "${resume[@]}" > /dev/null
    out=experiments/results/movement_sst2/seed$seed/$opt
    mkdir -p "$out"
    cp "$run"/{config.json,metrics.jsonl,results.json} "$out/"
  done
done
