#!/usr/bin/env bash
# Sets up .venv and runs the main job: train flat, then compress, on SST-2.
# `flatjax compare --task sst2` at its cpu preset with 1,000 training sentences: MiniLM
# fine-tuned with Adam and with SAM (2 epochs, max length 128, lr 1e-4), then each fine-tuned
# model compressed by IMP to 60% sparsity (2 rounds, rewinding), one-shot magnitude pruning
# and int8 dynamic quantization; all 872 dev sentences. One table and a plot in
# runs/compare-sst2.
# Reads ../shared/data/glue/SST-2 when it exists, else the Hugging Face hub (nyu-mll/glue).
# Extra arguments go to `flatjax compare` (e.g. --preset full on an accelerator).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT=runs/compare-sst2
DATA=()
if [ -d ../shared/data/glue/SST-2 ]; then DATA=(--data ../shared/data/glue/SST-2); fi
RESUME=()
if [ -f "$OUT/compare.json" ]; then RESUME=(--resume); fi   # continue (or re-report) a run
exec .venv/bin/flatjax compare --task sst2 "${DATA[@]}" --max-train-examples 1000 \
  --output "$OUT" "${RESUME[@]}" "$@"
