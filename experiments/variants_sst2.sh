#!/usr/bin/env bash
# The efficient SAM variants' compressibility against their cost (beyond the paper), CPU scale:
# MiniLM fine-tuned on SST-2 with each variant (LookSAM k=5 with its paper's alpha 0.7 and with
# alpha 0.1, ASAM rho 0.5, GSAM alpha 0.1; all on Adam) with compare's cpu-preset settings and
# seed (1,000 training sentences, 2 epochs, lr 1e-4,
# batch 32), then one-shot global magnitude pruning of the encoder scope in 10% steps to 60% and
# int8 dynamic quantization of each, beside compare_sst2's Adam and SAM models of the same seed.
# A step's cost relative to Adam comes from benchmarks/sam_overhead.py (measured side by side in
# one process; benchmarks/results/sam_overhead_cpu.jsonl). About 12 min per seed on the 2-core
# CPU (run experiments/compare_tasks.sh for sst2 first). -> experiments/results/variants_sst2/seed<N>/
#
#   SEEDS="0 1" VARIANTS="looksam looksam:alpha=0.1 asam gsam" bash experiments/variants_sst2.sh
#
# A variant is OPTIMIZER or OPTIMIZER:NAME=VALUE[,NAME=VALUE] (flatjax train's --opt-arg); the
# settings go into its label: looksam:alpha=0.1 is reported as looksam-alpha0.1.
#
# The paper's scale: MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
SEEDS=${SEEDS:-0}
VARIANTS=${VARIANTS:-"looksam looksam:alpha=0.1 asam gsam"}
for seed in $SEEDS; do
  train_args_for sst2 "$seed"
  eval_args_for sst2 "$seed"
  compare=runs/compare-sst2-seed$seed
  out=experiments/results/variants_sst2/seed$seed
  models=(--model "adam=$compare/adam/imp/round_00/best" --model "sam=$compare/sam/imp/round_00/best")
  mkdir -p "$out"
  for spec in $VARIANTS; do
    opt=${spec%%:*} opt_args=()
    label=$opt
    if [[ $spec == *:* ]]; then
      IFS=, read -ra settings <<< "${spec#*:}"
      for setting in "${settings[@]}"; do
        opt_args+=(--opt-arg "$setting")
        label+="-${setting//=/}"
      done
    fi
    run=runs/variant-sst2-$label-seed$seed
    resume=(); [ -f "$run/config.json" ] && resume=(--resume)
    .venv/bin/flatjax train "${TRAIN_ARGS[@]}" --optimizer "$opt" "${opt_args[@]}" \
      --output "$run" "${resume[@]}" > /dev/null
    .venv/bin/flatjax quantize "$run" --scheme dynamic --batch-size 32 --no-save \
      --output "$run/int8" --no-progress > /dev/null
    models+=(--model "$label=$run/best")
    mkdir -p "$out/$label"
    cp "$run"/{config.json,metrics.jsonl,results.json} "$run/int8/quantize.json" "$out/$label/"
  done
  .venv/bin/flatjax oneshot "${EVAL_ARGS[@]}" --step 0.1 --max 0.6 --scope encoder \
    --granularity global "${models[@]}" --output "runs/variants-sst2-seed$seed-oneshot"
  cp "runs/variants-sst2-seed$seed-oneshot"/{oneshot.jsonl,oneshot.md,oneshot.png} "$out/"
done
