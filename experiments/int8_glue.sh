#!/usr/bin/env bash
# Table 8 at CPU scale: PyTorch-style post-training dynamic int8 quantization of every Linear
# (flatjax quantize --scheme dynamic; per-channel weights beside it) of MiniLM models
# fine-tuned with Adam and with SAM, dev metric in float32 and int8, and flatjax's int8
# predictions against PyTorch's quantize_dynamic on the same weights and batches.
#
# Models (already trained; nothing is trained here):
#   SST-2: the teachers of cofi_sst2.sh (4,000 training sentences, 2 epochs, max length 64,
#          the seeds in SST2_SEEDS, default 0 and 1): dev = all 872 sentences;
#   RTE:   the runs of sam_rte.sh (full training set, 3 epochs, max length 128, seeds 0 and 1):
#          dev = all 277 pairs.
# Eval batch 32, padded to each batch's longest sequence (dynamic activation scales depend on
# the batch; the batch is part of the result). About 2 min per model on this 2-core CPU.
# Results: experiments/results/int8_glue/<task>-<optimizer>-seed<N>/ (quantize.json and
# torch.json), README.md. One group of models alone, e.g. SST-2's seed 1:
#   SST2_SEEDS=1 RTE_RUNS= bash experiments/int8_glue.sh
#
# The paper's scale: bert-base-uncased fine-tuned on the full data of each task, e.g.
#   SST2_RUNS="runs/cofi-sst2-full-target95-bert-base-uncased/teacher-adam ..." bash experiments/int8_glue.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
SST2=${SST2:-runs/cofi-sst2-4k-target80-minilm}
SST2_SEEDS=${SST2_SEEDS:-"0 1"}
default_sst2_runs=""
for seed in $SST2_SEEDS; do
  dir=$(cofi_runs_for "$SST2" "$seed")
  default_sst2_runs+=" $dir/teacher-adam $dir/teacher-sam"
done
SST2_RUNS=${SST2_RUNS-$default_sst2_runs}
RTE_RUNS=${RTE_RUNS-"runs/rte-minilm-adam-seed0 runs/rte-minilm-sam-seed0 runs/rte-minilm-adam-seed1 runs/rte-minilm-sam-seed1"}
OUT=${OUT:-experiments/results/int8_glue}
mkdir -p "$OUT"
for run in $SST2_RUNS $RTE_RUNS; do
  [ -f "$run/results.json" ] || { echo "missing $run: train it first (see this script's header)" >&2; exit 1; }
  name=$(.venv/bin/python -c "import json,sys; c = json.load(open(sys.argv[1]))['config']; print(f\"{c['task']}-{c['optimizer']}-seed{c['seed']}\")" "$run/config.json")
  mkdir -p "$OUT/$name"
  .venv/bin/flatjax quantize "$run" --scheme dynamic --scheme dynamic-per-channel \
    --batch-size 32 --output "$run/int8" --no-progress > /dev/null
  cp "$run/int8/quantize.json" "$OUT/$name/"
  .venv/bin/python -W ignore experiments/int8_vs_torch.py "$run" --batch-size 32 \
    > "$OUT/$name/torch.json"
  echo "$name done"
done
.venv/bin/python experiments/int8_table.py "$OUT" "bash experiments/int8_glue.sh" > "$OUT/README.md"
cat "$OUT/README.md"
