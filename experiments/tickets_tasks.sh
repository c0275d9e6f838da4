#!/usr/bin/env bash
# Table 6 (mask source x final optimizer) and ticket transfer, at CPU scale, from the IMP masks
# that experiments/compare_tasks.sh found (run it first for the tasks and seeds named here).
#
# Table 6: for each task in TABLE6_TASKS and seed in SEEDS, the Adam and the SAM IMP masks at
# the task's reference sparsity and a random mask with the Adam mask's per-tensor sparsities,
# each applied to the pre-trained weights and fine-tuned with Adam and with SAM, with the
# settings of the compare run (cpu preset: MiniLM, each task's CPU-scale subset and length from
# experiments/_tasks.sh, 2 epochs, lr 1e-4, batch 32). -> experiments/results/table6_<task>/seed<N>/
#
# Transfer: for each target in TRANSFER_TASKS and seed in TRANSFER_SEEDS, the Adam and SAM masks
# found on every other task in TRANSFER_TASKS by the compare run of that seed (each at its source
# task's reference sparsity) fine-tuned on the target with Adam, with that seed; the heatmap is
# SAM ticket minus Adam ticket. -> experiments/results/transfer/seed<N>/<target>/
#
#   TABLE6_TASKS=sst2 SEEDS="0 1" TRANSFER_TASKS="sst2 qnli" TRANSFER_SEEDS="0 1" bash experiments/tickets_tasks.sh
#
# SOURCE_RHO takes the transfer's source masks from the compare runs made with that SAM radius
# (compare_tasks.sh RHO=...: runs/compare-<source>-rho<R>-seed<N>), labels them
# <source>_rho<R>-<opt> and writes experiments/results/transfer_rho<R>/seed<N>/<target>/;
# TRANSFER_TARGETS (default: TRANSFER_TASKS) picks the targets, e.g. QNLI's rho-0.02 tickets
# fine-tuned on SST-2:
#   TABLE6_TASKS="" SOURCE_RHO=0.02 TRANSFER_TARGETS=sst2 TRANSFER_SEEDS="0 1" bash experiments/tickets_tasks.sh
#
# The paper's scale: run compare_tasks.sh with PRESET=full first, then this with
# MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5 (10 epochs for RTE and MRPC).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
TABLE6_TASKS=${TABLE6_TASKS-sst2}
SEEDS=${SEEDS:-0}
TRANSFER_TASKS=${TRANSFER_TASKS-"sst2 qnli"}
TRANSFER_SEEDS=${TRANSFER_SEEDS:-0}
TRANSFER_TARGETS=${TRANSFER_TARGETS:-$TRANSFER_TASKS}
SOURCE_RHO=${SOURCE_RHO:-}
variant=${SOURCE_RHO:+_rho$SOURCE_RHO}

for task in $TABLE6_TASKS; do
  for seed in $SEEDS; do
    src=runs/compare-$task-seed$seed
    need_compare_run "$src"
    sparsity=$(target_sparsity "$task" "$seed")
    train_args_for "$task" "$seed"
    run=runs/table6-$task-seed$seed
    resume=(); [ -f "$run/tickets.json" ] && resume=(--resume)
    echo "== Table 6 $task seed $seed ($sparsity)"
    .venv/bin/flatjax tickets "${TRAIN_ARGS[@]}" --no-keep-best --sparsity "$sparsity" \
      --mask "adam=$src/adam/imp" --mask "sam=$src/sam/imp" --random-like adam \
      --optimizer adam --optimizer sam --output "$run" "${resume[@]}"
    out=experiments/results/table6_$task/seed$seed
    mkdir -p "$out"
    cp "$run"/{tickets.json,tickets.jsonl,tickets.md} "$out/"
  done
done

for seed in $TRANSFER_SEEDS; do
  for target in $TRANSFER_TARGETS; do
    masks=()
    for source in $TRANSFER_TASKS; do
      [ "$source" = "$target" ] && continue
      src=runs/compare-$source${SOURCE_RHO:+-rho$SOURCE_RHO}-seed$seed
      need_compare_run "$src"
      sparsity=$(target_sparsity "$source" "$seed" "$src")
      for opt in adam sam; do
        masks+=(--mask "$source$variant-$opt=$(.venv/bin/python -c "
import sys; from flatjax.recipes import tickets
print(tickets.resolve_mask(sys.argv[1], float(sys.argv[2])))" "$src/$opt/imp" "$sparsity")")
      done
    done
    train_args_for "$target" "$seed"
    run=runs/transfer$variant-$target-seed$seed
    resume=(); [ -f "$run/tickets.json" ] && resume=(--resume)
    echo "== transfer to $target, seed $seed"
    .venv/bin/flatjax tickets "${TRAIN_ARGS[@]}" --no-keep-best "${masks[@]}" --optimizer adam \
      --output "$run" "${resume[@]}"
    out=experiments/results/transfer$variant/seed$seed/$target
    mkdir -p "$out"
    cp "$run"/{tickets.json,tickets.jsonl,tickets.md} "$out/"
  done
done
