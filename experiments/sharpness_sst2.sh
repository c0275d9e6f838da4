#!/usr/bin/env bash
# Tables 3/4 at CPU scale: flatness of the MiniLM SST-2 models fine-tuned with Adam and with
# SAM (the teachers of cofi_sst2.sh: 4,000 sentences, 2 epochs, max length 64), measured on a
# fixed, seeded sample of 128 training sentences (the loss Keskar et al. use), dropout off:
#   - Keskar epsilon-sharpness (x100) at epsilon 1e-3 and 5e-3 in the full parameter space
#     (all 22.7M params, A = I), L-BFGS-B with 10 iterations;
#   - the Hessian's top eigenvalue (power iteration, at most 20 HVPs, tol 1e-3) and its trace
#     (Hutchinson, 10 Rademacher probes);
#   - loss surfaces along filter-normalised random directions (Li et al. 2018): 21 points on
#     [-1, 1] and a 9 x 9 contour; the same seeds, so the same random directions' recipe.
# About 15 min per model on this 2-core CPU.
# Results: experiments/results/sharpness_sst2/seed<N>/<optimizer>/, README.md, surface_1d.png.
#
#   SEEDS="0 1" bash experiments/sharpness_sst2.sh
#
# The paper's scale: bert-base teachers on the full data (see cofi_sst2.sh), e.g.
#   RUNS=runs/cofi-sst2-full-target95-bert-base-uncased EXAMPLES=1000 bash experiments/sharpness_sst2.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source experiments/_tasks.sh
RUNS=${RUNS:-runs/cofi-sst2-4k-target80-minilm}
SEEDS=${SEEDS:-"0 1"}
EXAMPLES=${EXAMPLES:-128}
OUT=experiments/results/sharpness_sst2
for seed in $SEEDS; do
  dir=$(cofi_runs_for "$RUNS" "$seed")
  for opt in adam sam; do
    run=$dir/teacher-$opt
    [ -f "$run/results.json" ] || { echo "missing $run: run SEEDS=$seed bash experiments/cofi_sst2.sh first" >&2; exit 1; }
    if [ ! -f "$run/sharpness/sharpness.json" ]; then
      .venv/bin/flatjax sharpness "$run" --examples "$EXAMPLES" --batch-size 32 \
        --epsilon 1e-3 --epsilon 5e-3 --maxiter 10 --hessian-iterations 20 \
        --hutchinson-samples 10 --surface-points 21 --contour-points 9 --radius 1 --seed 0
    fi
    mkdir -p "$OUT/seed$seed/$opt"
    cp "$run"/sharpness/{sharpness.json,surface_1d.png,surface_2d.png} "$OUT/seed$seed/$opt/"
  done
done
.venv/bin/python experiments/sharpness_table.py "$OUT" "bash experiments/sharpness_sst2.sh" \
  > "$OUT/README.md"
cat "$OUT/README.md"
