#!/usr/bin/env bash
# Table 2 at CPU scale: CoFi structured pruning with distillation from a MiniLM teacher
# fine-tuned with Adam and one fine-tuned with SAM (rho 0.05), on SST-2. The pruning
# procedure is the same for both; only the teacher's optimizer differs.
#
# CPU scale (this 2-core machine, ~25 min with the teachers already trained):
#   teachers: 2,000 of SST-2's 67,349 training sentences (seeded subset), 1 epoch, max
#   length 64, batch 32, lr 1e-4 with 6 warmup steps (the settings of prune_sst2.sh's IMP
#   round 0, whose runs can be passed as TEACHER_ADAM / TEACHER_SAM);
#   CoFi: the same 2,000 sentences, target 95% of the encoder's prunable weights, 4 pruning
#   epochs (1 distillation-only, target warmed up over 1), 2 fine-tuning epochs, lr 1e-4,
#   fine-tuning lr 1e-4, gate/multiplier lr 0.2 (CoFi: 0.01 over thousands of steps; at 189
#   gate steps 0.01 cannot move the gates, which start at log-alpha 10), the student starting
#   from the teacher's weights (STUDENT=pretrained for CoFi's start), 1 seed. Dev: all 872
#   sentences. Results: experiments/results/cofi_sst2/.
#
# The paper's scale (bert-base-uncased teachers on the full training set; CoFi 20 + 20 epochs,
# lr 2e-5 / 3e-5, gate lr 0.01, student from the pre-trained model) on a GPU/TPU:
#   MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5 WARMUP=0 MAXLEN=128 \
#   PRUNE_EPOCHS=20 FT_EPOCHS=20 COFI_LR=2e-5 FT_LR=3e-5 REG_LR=0.01 STUDENT=pretrained \
#     bash experiments/cofi_sst2.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/glue/SST-2}
MODEL=${MODEL:-minilm}
TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-2000}
EPOCHS=${EPOCHS:-1}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-6}
MAXLEN=${MAXLEN:-64}
SEED=${SEED:-0}
TARGET=${TARGET:-0.95}
PRUNE_EPOCHS=${PRUNE_EPOCHS:-4}
FT_EPOCHS=${FT_EPOCHS:-2}
COFI_LR=${COFI_LR:-1e-4}
FT_LR=${FT_LR:-1e-4}
REG_LR=${REG_LR:-0.2}
STUDENT=${STUDENT:-teacher}
RUNS=${RUNS:-runs/cofi-sst2-$MODEL}
OUT=experiments/results/cofi_sst2
SUBSET=(); [ "$TRAIN_EXAMPLES" != 0 ] && SUBSET=(--max-train-examples "$TRAIN_EXAMPLES")

for opt in adam sam; do
  var=TEACHER_${opt^^}
  teacher=${!var:-$RUNS/teacher-$opt}
  if [ ! -f "$teacher/results.json" ]; then
    .venv/bin/flatjax train --task sst2 --data "$DATA" --model "$MODEL" "${SUBSET[@]}" \
      --epochs "$EPOCHS" --batch-size 32 --lr "$LR" --warmup-steps "$WARMUP" \
      --max-length "$MAXLEN" --seed "$SEED" --optimizer "$opt" --output "$teacher" \
      --no-progress > /dev/null
  fi
  run=$RUNS/cofi-$opt
  resume=(); [ -f "$run/cofi.json" ] && resume=(--resume)
  [ -f "$run/results.json" ] && continue
  .venv/bin/flatjax cofi --teacher "$teacher" --data "$DATA" "${SUBSET[@]}" \
    --max-length "$MAXLEN" --seed "$SEED" --student "$STUDENT" --target-sparsity "$TARGET" \
    --pruning-epochs "$PRUNE_EPOCHS" --prepruning-epochs 1 --lagrangian-warmup-epochs 1 \
    --finetune-epochs "$FT_EPOCHS" --lr "$COFI_LR" --finetune-lr "$FT_LR" --reg-lr "$REG_LR" \
    --no-progress --output "$run" "${resume[@]}" > /dev/null
done

mkdir -p "$OUT"
for opt in adam sam; do
  mkdir -p "$OUT/$opt"
  cp "$RUNS/cofi-$opt"/{cofi.json,metrics.jsonl,results.json,structure.json} "$OUT/$opt/"
done
.venv/bin/python experiments/cofi_table.py "$OUT" > "$OUT/README.md"
cat "$OUT/README.md"
