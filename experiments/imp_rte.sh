#!/usr/bin/env bash
# IMP with lottery-ticket rewinding (Chen et al. 2020), Adam vs SAM (rho 0.05), MiniLM on
# RTE, 10% of the prunable weights per round up to 60% (RTE's reference sparsity), and the
# one-shot curves (5% steps up to 60%, no retraining) of the two full RTE models of
# experiments/sam_rte.sh (seed 0).
#
# CPU scale (this 2-core machine, ~1 h): each IMP round fine-tunes on 800 of RTE's 2,490
# training pairs (seeded subset) for 2 epochs (50 steps), max length 128, batch 32, lr 1e-4
# with 5 warmup steps, and evaluates on all 277 dev pairs after each epoch; 1 seed.
# Results: experiments/results/imp_rte/ (rounds, tickets, masks' sparsity, plots, summary).
#
# The paper's scale (bert-base-uncased, the full training set, 10 epochs per round, lr 2e-5,
# no warmup, 9 rounds up to 90%, 3 seeds) on a GPU/TPU:
#   MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=10 LR=2e-5 WARMUP=0 ROUNDS=9 \
#     bash experiments/imp_rte.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/glue/RTE}
MODEL=${MODEL:-minilm}
TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-800}
EPOCHS=${EPOCHS:-2}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-6}
SEED=${SEED:-0}
RUN=${RUN:-runs/imp-rte-$MODEL}
OUT=experiments/results/imp_rte
SUBSET=(); [ "$TRAIN_EXAMPLES" != 0 ] && SUBSET=(--max-train-examples "$TRAIN_EXAMPLES")
resume=(); [ -d "$RUN" ] && resume=(--resume)
.venv/bin/flatjax imp --task rte --data "$DATA" --model "$MODEL" "${SUBSET[@]}" \
  --epochs "$EPOCHS" --max-length 128 --batch-size 32 --lr "$LR" --warmup-steps "$WARMUP" \
  --seed "$SEED" --optimizer adam --optimizer sam --mode imp --rate 0.1 --rounds "$ROUNDS" \
  --no-keep-best --no-progress --output "$RUN" "${resume[@]}"

# One-shot pruning of the full models that experiments/sam_rte.sh fine-tuned (seed 0).
ONESHOT=${ONESHOT:-runs/oneshot-rte-$MODEL}
.venv/bin/flatjax oneshot --task rte --data "$DATA" --max-length 128 --step 0.05 --max 0.6 \
  --model adam=runs/rte-$MODEL-adam-seed0/best --model sam=runs/rte-$MODEL-sam-seed0/best \
  --output "$ONESHOT" --no-progress

mkdir -p "$OUT"
cp "$RUN"/{imp.png,summary.md} "$OUT/"
for opt in adam sam; do
  mkdir -p "$OUT/$opt"
  cp "$RUN/$opt"/{imp.json,rounds.jsonl,ticket.json} "$OUT/$opt/"
  cp "$RUN/$opt"/masks/*.json "$OUT/$opt/"
done
cp "$ONESHOT"/{oneshot.jsonl,oneshot.md,oneshot.png} "$OUT/"
