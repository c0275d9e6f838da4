#!/usr/bin/env bash
# Table 2 at CPU scale: CoFi structured pruning with distillation from a MiniLM teacher
# fine-tuned with Adam and one fine-tuned with SAM (rho 0.05), on SST-2. The pruning
# procedure is the same for both; only the teacher's optimizer differs.
#
# CPU scale, the defaults (this 2-core machine, about 75 min for both teachers and both runs):
#   teachers: 4,000 of SST-2's 67,349 training sentences (seeded subset), 2 epochs, max
#   length 64, batch 32, lr 1e-4 with 25 warmup steps;
#   CoFi: the same 4,000 sentences, target 80% of the encoder's prunable weights (MiniLM keeps
#   2.1M of 10.6M, about half of what 95% leaves of bert-base's 85M), 4 pruning epochs (1
#   distillation-only, target warmed up over 2), 2 fine-tuning epochs, lr 1e-4, fine-tuning
#   lr 1e-4, gate/multiplier lr 0.1 (CoFi: 0.01 over thousands of steps; at 375 gate steps
#   0.01 cannot move the gates), head/block/hidden gates starting at log-alpha 3 (CoFi: 10;
#   with 10 and lr 0.1 they stayed open and only FFN neurons were pruned, 65% at the end of
#   a first try), the student starting from the teacher's weights (STUDENT=pretrained for
#   CoFi's start). Dev: all 872 sentences. SEEDS (default 0) picks the seeds; each seed
#   draws its own training subset, trains its own teachers and prunes them:
#     SEEDS="0 1" bash experiments/cofi_sst2.sh
#   Results: experiments/results/cofi_sst2/$NAME/seed<N>/ (NAME defaults to sst2-4k-target80).
#   Runs: $RUNS for seed 0 (where sharpness_sst2.sh and int8_glue.sh find the teachers),
#   $RUNS-seed<N> for the others. TEACHER_ADAM / TEACHER_SAM, when set, serve every seed.
#
# The first CPU-scale run (experiments/results/cofi_sst2/sst2-2k-target95/, both students
# collapsed) used prune_sst2.sh's IMP round-0 teachers and:
#   TEACHER_ADAM=runs/prune-sst2-minilm/imp/adam/round_00 \
#   TEACHER_SAM=runs/prune-sst2-minilm/imp/sam/round_00 RUNS=runs/cofi-sst2-minilm \
#   TRAIN_EXAMPLES=2000 EPOCHS=1 WARMUP=6 TARGET=0.95 LAG_WARMUP=1 REG_LR=0.2 GATE_INIT=10 \
#   NAME=sst2-2k-target95 \
#     bash experiments/cofi_sst2.sh
#
# The paper's scale (bert-base-uncased teachers on the full training set; CoFi 20 + 20 epochs,
# lr 2e-5 / 3e-5, gate lr 0.01, student from the pre-trained model) on a GPU/TPU:
#   MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5 WARMUP=0 MAXLEN=128 \
#   TARGET=0.95 PRUNE_EPOCHS=20 FT_EPOCHS=20 COFI_LR=2e-5 FT_LR=3e-5 REG_LR=0.01 GATE_INIT=10 \
#   STUDENT=pretrained NAME=sst2-full-target95 bash experiments/cofi_sst2.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/glue/SST-2}
# After DATA: _tasks.sh would otherwise default it to the whole data folder.
source experiments/_tasks.sh
MODEL=${MODEL:-minilm}
TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-4000}
EPOCHS=${EPOCHS:-2}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-25}
MAXLEN=${MAXLEN:-64}
SEEDS=${SEEDS:-0}
TARGET=${TARGET:-0.8}
PRUNE_EPOCHS=${PRUNE_EPOCHS:-4}
LAG_WARMUP=${LAG_WARMUP:-2}
FT_EPOCHS=${FT_EPOCHS:-2}
COFI_LR=${COFI_LR:-1e-4}
FT_LR=${FT_LR:-1e-4}
REG_LR=${REG_LR:-0.1}
GATE_INIT=${GATE_INIT:-3}
STUDENT=${STUDENT:-teacher}
NAME=${NAME:-sst2-4k-target80}
RUNS=${RUNS:-runs/cofi-$NAME-$MODEL}
OUT=experiments/results/cofi_sst2/$NAME
SUBSET=(); [ "$TRAIN_EXAMPLES" != 0 ] && SUBSET=(--max-train-examples "$TRAIN_EXAMPLES")

for seed in $SEEDS; do
  runs=$(cofi_runs_for "$RUNS" "$seed")
  out=$OUT/seed$seed
  for opt in adam sam; do
    var=TEACHER_${opt^^}
    teacher=${!var:-$runs/teacher-$opt}
    if [ ! -f "$teacher/results.json" ]; then
      .venv/bin/flatjax train --task sst2 --data "$DATA" --model "$MODEL" "${SUBSET[@]}" \
        --epochs "$EPOCHS" --batch-size 32 --lr "$LR" --warmup-steps "$WARMUP" \
        --max-length "$MAXLEN" --seed "$seed" --optimizer "$opt" --output "$teacher" \
        --no-progress > /dev/null
    fi
    run=$runs/cofi-$opt
    resume=(); [ -f "$run/cofi.json" ] && resume=(--resume)
    [ -f "$run/results.json" ] && continue
    .venv/bin/flatjax cofi --teacher "$teacher" --data "$DATA" "${SUBSET[@]}" \
      --max-length "$MAXLEN" --seed "$seed" --student "$STUDENT" --target-sparsity "$TARGET" \
      --pruning-epochs "$PRUNE_EPOCHS" --prepruning-epochs 1 --lagrangian-warmup-epochs "$LAG_WARMUP" \
      --finetune-epochs "$FT_EPOCHS" --lr "$COFI_LR" --finetune-lr "$FT_LR" --reg-lr "$REG_LR" \
      --gate-init "$GATE_INIT" \
      --no-progress --output "$run" "${resume[@]}" > /dev/null
  done

  mkdir -p "$out"
  for opt in adam sam; do
    mkdir -p "$out/$opt"
    cp "$runs/cofi-$opt"/{cofi.json,metrics.jsonl,results.json,structure.json} "$out/$opt/"
  done
  .venv/bin/python experiments/cofi_table.py "$out" "${COMMAND:-SEEDS=$seed bash experiments/cofi_sst2.sh}" \
    > "$out/README.md"
  cat "$out/README.md"
done
