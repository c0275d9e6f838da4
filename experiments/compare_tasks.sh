#!/usr/bin/env bash
# Tables 1/5 (IMP), 8 (int8) and the one-shot curves across tasks, at CPU scale: one
# `flatjax compare` per task and seed (fine-tune with Adam and with SAM, rho 0.05; IMP to the
# task's reference sparsity in 2 rounds with rewinding; one-shot magnitude pruning in 10%
# steps; int8 dynamic quantization), each copied to experiments/results/compare_<task>/seed<N>/.
#
# CPU scale (the `cpu` preset): MiniLM, a seeded subset of the training set (SST-2 1,000
# sentences; QNLI, MNLI and QQP 1,280 pairs and MRPC 2,560 at max length 64; RTE 640 pairs at
# max length 128; SQuAD 400 questions at max length 192, stride 64; experiments/_tasks.sh), 2 epochs,
# batch 32, lr 1e-4,
# encoder scope (MiniLM's pooler is untrained). Dev: all of RTE (277), MRPC (408), SST-2 (872);
# a seeded random EVAL_EXAMPLES (500) rows of the hub-schema subsets' validation files (QNLI, MNLI
# matched, QQP) and 200 (SQUAD_EVAL_EXAMPLES) questions of the SQuAD dev split (the subsets are
# drawn with the run's seed). About 8-20 min per task and seed on the 2-core CPU.
#
#   TASKS="mrpc qnli" SEEDS="0 1" bash experiments/compare_tasks.sh
#   RHO=0.02 TASKS=qnli SEEDS=0 bash experiments/compare_tasks.sh   # -> compare_qnli_rho0.02/
#
# The paper's scale on a GPU/TPU (bert-base-uncased, all data, 3 epochs, lr 2e-5, IMP 10% per
# round, 3 seeds): PRESET=full TRAIN_EXAMPLES=0 EVAL_EXAMPLES=0 SQUAD_EVAL_EXAMPLES=0 SEEDS="0 1 2" bash experiments/compare_tasks.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
TASKS=${TASKS:-"rte mrpc sst2 qnli mnli qqp squad"}
SEEDS=${SEEDS:-"0 1"}
PRESET=${PRESET:-cpu}
# SAM's radius (default: the paper's 0.05); another value writes compare_<task>_rho<RHO>/.
RHO=${RHO:-}

for task in $TASKS; do
  for seed in $SEEDS; do
    train=$(train_examples_for "$task")
    eval_args_for "$task" "$seed"
    args=("${EVAL_ARGS[@]}" --preset "$PRESET")
    [ "$train" != 0 ] && args+=(--max-train-examples "$train")
    [ -n "$RHO" ] && args+=(--rho "$RHO")
    variant=${RHO:+_rho$RHO}
    run=runs/compare-$task${RHO:+-rho$RHO}-seed$seed
    resume=(); [ -f "$run/compare.json" ] && resume=(--resume)
    echo "== $task seed $seed: flatjax compare ${args[*]} --output $run"
    .venv/bin/flatjax compare "${args[@]}" --output "$run" "${resume[@]}"
    out=experiments/results/compare_$task$variant/seed$seed
    mkdir -p "$out"
    cp "$run"/{compare.json,results.json,summary.md,compare.png} "$out/"
    for opt_dir in "$run"/*/; do
      opt=$(basename "$opt_dir")
      [ -d "$opt_dir/imp" ] || continue
      mkdir -p "$out/$opt"
      cp "$opt_dir/imp/rounds.jsonl" "$opt_dir/oneshot/oneshot.jsonl" "$opt_dir/int8/quantize.json" "$out/$opt/"
    done
  done
done
