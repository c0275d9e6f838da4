#!/usr/bin/env bash
# Sets up .venv and runs the main job: MiniLM fine-tuned with Adam on 10,000 SST-2
# sentences (1 epoch, max length 64, lr 1e-4 with 30 warmup steps), evaluated on the
# 872 dev sentences.
# Reads ../shared/data/glue/SST-2 when it exists, else the Hugging Face hub (nyu-mll/glue).
# Extra arguments go to `flatjax train` (e.g. --optimizer adamw --lr 3e-5 --output runs/x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT=runs/sst2-minilm-adam
DATA=()
if [ -d ../shared/data/glue/SST-2 ]; then DATA=(--data ../shared/data/glue/SST-2); fi
RESUME=()
if [ -f "$OUT/config.json" ]; then RESUME=(--resume); fi   # continue (or re-report) a run
exec .venv/bin/flatjax train --task sst2 "${DATA[@]}" --max-train-examples 10000 --epochs 1 \
  --max-length 64 --lr 1e-4 --warmup-steps 30 --output "$OUT" "${RESUME[@]}" "$@"
