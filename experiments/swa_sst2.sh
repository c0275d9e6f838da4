#!/usr/bin/env bash
# SWA, the paper's third baseline, at CPU scale: MiniLM fine-tuned on SST-2 with Adam while
# averaging the weights (SWA), then the averaged model compressed as compare compresses the
# others: one-shot global magnitude pruning of the encoder scope in 10% steps to 60% (no
# retraining) and int8 dynamic quantization. The SWA run uses compare's cpu-preset settings and
# seed (1,000 training sentences, 2 epochs = 64 steps, lr 1e-4, batch 32), so its Adam
# trajectory is the one compare's Adam model followed; the average is taken every 8 steps over
# the second half of the run ("--swa 0.5:8": with 2 epochs, the paper's end-of-epoch recipe
# would average a single checkpoint). The Adam and SAM models of compare_sst2 (same seed) are
# pruned beside it. About 6 min per seed on the 2-core CPU (run experiments/compare_tasks.sh
# for sst2 first). -> experiments/results/swa_sst2/seed<N>/
#
#   SEEDS="0 1" bash experiments/swa_sst2.sh
#
# The paper's scale: MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5 SWA=paper.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
SEEDS=${SEEDS:-0}
SWA=${SWA:-0.5:8}
for seed in $SEEDS; do
  train_args_for sst2 "$seed"
  eval_args_for sst2 "$seed"
  run=runs/swa-sst2-seed$seed
  compare=runs/compare-sst2-seed$seed
  resume=(); [ -f "$run/config.json" ] && resume=(--resume)
  .venv/bin/flatjax train "${TRAIN_ARGS[@]}" --optimizer adam --swa "$SWA" --output "$run" \
    "${resume[@]}" > /dev/null
  .venv/bin/flatjax oneshot "${EVAL_ARGS[@]}" --step 0.1 --max 0.6 --scope encoder \
    --granularity global --model "adam=$compare/adam/imp/round_00/best" \
    --model "sam=$compare/sam/imp/round_00/best" --model "swa=$run/swa" --output "$run/oneshot"
  .venv/bin/flatjax quantize "$run/swa" --task sst2 --data "$(data_for sst2)" --scheme dynamic \
    --batch-size 32 --no-save --output "$run/int8" --no-progress > /dev/null
  out=experiments/results/swa_sst2/seed$seed
  mkdir -p "$out"
  cp "$run"/{config.json,metrics.jsonl,results.json} "$out/"
  cp "$run/oneshot"/{oneshot.jsonl,oneshot.md,oneshot.png} "$out/"
  cp "$run/int8/quantize.json" "$out/"
done
