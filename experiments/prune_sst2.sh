#!/usr/bin/env bash
# Adam vs SAM (rho 0.05) under three kinds of pruning, MiniLM on SST-2, one command:
#   1. IMP with rewinding, 10% of the prunable weights per round up to 60% (SST-2's
#      reference sparsity);
#   2. one-shot global magnitude pruning (5% steps to 60%, no retraining) of the two full
#      models that IMP's round 0 fine-tuned;
#   3. movement pruning (Sanh et al. 2020) to 60%, per-tensor top-k of -sum(w * g), cubic
#      schedule from 10% to 70% of the run; the paper does not try it.
#
# CPU scale (this 2-core machine, ~35 min): 2,000 of SST-2's 67,349 training sentences
# (seeded subset), 1 epoch per round / run (63 steps), max length 64, batch 32, lr 1e-4 with
# 6 warmup steps, evaluated on all 872 dev sentences; 1 seed.
# Results: experiments/results/prune_sst2/.
#
# SCOPE=encoder prunes the encoder's kernels only (not the pooler, whose weights in MiniLM
# are ~4x smaller than the encoder's, so global magnitude ranking removes it first), into
# experiments/results/prune_sst2_encoder/; MOVEMENT=0 skips the movement-pruning runs.
#
# The paper's scale (bert-base-uncased, the full training set, 3 epochs, lr 2e-5, no warmup,
# max length 128, 9 IMP rounds to 90%, 3 seeds) on a GPU/TPU:
#   MODEL=bert-base-uncased TRAIN_EXAMPLES=0 EPOCHS=3 LR=2e-5 WARMUP=0 MAXLEN=128 ROUNDS=9 \
#     bash experiments/prune_sst2.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/glue/SST-2}
MODEL=${MODEL:-minilm}
TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-2000}
EPOCHS=${EPOCHS:-1}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-6}
MAXLEN=${MAXLEN:-64}
ROUNDS=${ROUNDS:-6}
SEED=${SEED:-0}
SCOPE=${SCOPE:-bert}
MOVEMENT=${MOVEMENT:-1}
SUFFIX=""; [ "$SCOPE" != bert ] && SUFFIX="_$SCOPE"
RUNS=${RUNS:-runs/prune-sst2-$MODEL$SUFFIX}
OUT=experiments/results/prune_sst2$SUFFIX
SUBSET=(); [ "$TRAIN_EXAMPLES" != 0 ] && SUBSET=(--max-train-examples "$TRAIN_EXAMPLES")
COMMON=(--task sst2 --data "$DATA" --max-length "$MAXLEN" --seed "$SEED" --no-progress)
TRAIN=("${COMMON[@]}" --model "$MODEL" "${SUBSET[@]}" --epochs "$EPOCHS" --batch-size 32
       --lr "$LR" --warmup-steps "$WARMUP")

resume=(); [ -d "$RUNS/imp" ] && resume=(--resume)
.venv/bin/flatjax imp "${TRAIN[@]}" --optimizer adam --optimizer sam --mode imp --rate 0.1 \
  --rounds "$ROUNDS" --scope "$SCOPE" --no-keep-best --output "$RUNS/imp" "${resume[@]}"

.venv/bin/flatjax oneshot "${COMMON[@]}" --step 0.05 --max 0.6 --scope "$SCOPE" \
  --model "adam=$RUNS/imp/adam/round_00/final" --model "sam=$RUNS/imp/sam/round_00/final" \
  --output "$RUNS/oneshot"

for opt in adam sam; do
  [ "$MOVEMENT" = 1 ] || break
  run=$RUNS/movement-$opt
  resume=(); [ -f "$run/config.json" ] && resume=(--resume)
  .venv/bin/flatjax train "${TRAIN[@]}" --optimizer "$opt" --pruning movement --sparsity 0.6 \
    --pruning-begin 0.1 --pruning-end 0.7 --pruning-scope "$SCOPE" --output "$run" \
    "${resume[@]}" > /dev/null
done

mkdir -p "$OUT"
cp "$RUNS/imp"/{imp.png,summary.md} "$OUT/"
for opt in adam sam; do
  mkdir -p "$OUT/imp-$opt"
  cp "$RUNS/imp/$opt"/{imp.json,rounds.jsonl,ticket.json} "$OUT/imp-$opt/"
  cp "$RUNS/imp/$opt"/masks/*.json "$OUT/imp-$opt/"
  if [ "$MOVEMENT" = 1 ]; then
    mkdir -p "$OUT/movement-$opt"
    cp "$RUNS/movement-$opt"/{config.json,metrics.jsonl,results.json} "$OUT/movement-$opt/"
  fi
done
cp "$RUNS/oneshot"/{oneshot.jsonl,oneshot.md,oneshot.png} "$OUT/"
