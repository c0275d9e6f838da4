#!/usr/bin/env bash
# The efficient SAM variants' compressibility against their cost (beyond the paper), CPU scale:
# MiniLM fine-tuned on SST-2 with each variant (LookSAM k=5, ASAM rho 0.5, GSAM alpha 0.1; all on
# Adam) with compare's cpu-preset settings and seed (1,000 training sentences, 2 epochs, lr 1e-4,
# batch 32), then one-shot global magnitude pruning of the encoder scope in 10% steps to 60% and
# int8 dynamic quantization of each, beside compare_sst2's Adam and SAM models of the same seed.
# A step's cost relative to Adam comes from benchmarks/sam_overhead.py (measured side by side in
# one process; benchmarks/results/sam_overhead_cpu.jsonl). About 12 min per seed on the 2-core
# CPU (run experiments/compare_tasks.sh for sst2 first). -> experiments/results/variants_sst2/seed<N>/
#
#   SEEDS="0 1" VARIANTS="looksam asam gsam" bash experiments/variants_sst2.sh
#
# The paper's scale: MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
SEEDS=${SEEDS:-0}
VARIANTS=${VARIANTS:-"looksam asam gsam"}
for seed in $SEEDS; do
  train_args_for sst2 "$seed"
  eval_args_for sst2 "$seed"
  compare=runs/compare-sst2-seed$seed
  out=experiments/results/variants_sst2/seed$seed
  models=(--model "adam=$compare/adam/imp/round_00/best" --model "sam=$compare/sam/imp/round_00/best")
  mkdir -p "$out"
  for opt in $VARIANTS; do
    run=runs/variant-sst2-$opt-seed$seed
    resume=(); [ -f "$run/config.json" ] && resume=(--resume)
    .venv/bin/flatjax train "${TRAIN_ARGS[@]}" --optimizer "$opt" --output "$run" "${resume[@]}" > /dev/null
    .venv/bin/flatjax quantize "$run" --scheme dynamic --batch-size 32 --no-save \
      --output "$run/int8" --no-progress > /dev/null
    models+=(--model "$opt=$run/best")
    mkdir -p "$out/$opt"
    cp "$run"/{config.json,metrics.jsonl,results.json} "$run/int8/quantize.json" "$out/$opt/"
  done
  .venv/bin/flatjax oneshot "${EVAL_ARGS[@]}" --step 0.1 --max 0.6 --scope encoder \
    --granularity global "${models[@]}" --output "runs/variants-sst2-seed$seed-oneshot"
  cp "runs/variants-sst2-seed$seed-oneshot"/{oneshot.jsonl,oneshot.md,oneshot.png} "$out/"
done
