#!/usr/bin/env bash
# Table 5's "Std" rows at CPU scale: pruning without rewinding (training continues from the
# pruned fine-tuned weights each round), Adam vs SAM, MiniLM on SST-2 with compare's cpu-preset
# settings and seed (1,000 training sentences, 2 epochs per round, lr 1e-4, batch 32), to SST-2's
# reference sparsity (60% of the encoder scope) in 2 rounds of 30%, like compare's IMP. About
# 15 min per seed on the 2-core CPU. -> experiments/results/std_sst2/seed<N>/
#
#   SEEDS="0 1" bash experiments/std_sst2.sh
#
# The paper's scale: MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5 RATE=0.1 ROUNDS=6.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
SEEDS=${SEEDS:-0}
RATE=${RATE:-0.3}
ROUNDS=${ROUNDS:-2}
for seed in $SEEDS; do
  train_args_for sst2 "$seed"
  run=runs/std-sst2-seed$seed
  resume=(); [ -f "$run/imp.json" ] && resume=(--resume)
  .venv/bin/flatjax imp "${TRAIN_ARGS[@]}" --optimizer adam --optimizer sam --mode std \
    --rate "$RATE" --rounds "$ROUNDS" --scope encoder --granularity global --no-keep-best \
    --output "$run" "${resume[@]}"
  out=experiments/results/std_sst2/seed$seed
  mkdir -p "$out"
  cp "$run"/{imp.png,summary.md} "$out/"
  for opt in adam sam; do
    mkdir -p "$out/$opt"
    cp "$run/$opt"/{imp.json,rounds.jsonl} "$out/$opt/"
  done
done
