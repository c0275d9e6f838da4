#!/usr/bin/env bash
# MiniLM fine-tuned with Adam on 10,000 SST-2 training sentences (seeded subset), 1 epoch,
# max length 64, batch 32; dev accuracy on all 872 dev sentences. CPU scale.
# Results: experiments/results/finetune_sst2/ (configs, metrics.jsonl, results.json, curves.png).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/glue/SST-2}
COMMON=(--task sst2 --data "$DATA" --max-train-examples 10000 --epochs 1 --max-length 64)
.venv/bin/flatjax train "${COMMON[@]}" --lr 1e-4 --warmup-steps 30 --output runs/sst2-minilm-adam
.venv/bin/flatjax train "${COMMON[@]}" --output runs/sst2-minilm-adam-2e-5
.venv/bin/python experiments/plot_run.py runs/sst2-minilm-adam runs/sst2-minilm-adam-2e-5 \
  --out experiments/results/finetune_sst2/curves.png
for pair in "sst2-minilm-adam adam-lr1e-4" "sst2-minilm-adam-2e-5 adam-lr2e-5"; do
  set -- $pair
  mkdir -p "experiments/results/finetune_sst2/$2"
  cp "runs/$1"/{config.json,metrics.jsonl,results.json} "experiments/results/finetune_sst2/$2/"
done
