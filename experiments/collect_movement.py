"""Rows of the movement item's run folder (:mod:`experiments.collect` describes a row): one
``flatjax train --pruning movement`` run per optimizer in ``RUN/OPTIMIZER``.

Each run's row is its model at the run's target sparsity (compression ``movement``): the best
dev score among the evaluations at that sparsity (``flatjax train`` counts no earlier one as
best), with the dev labels and predictions of that model. The run fine-tunes no dense model,
so a row has no ``base``: the item's claim compares where the optimizers end (``score``).
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.collect_sam_rho import train_row, train_runs


def rows(config: dict, folder: Path) -> list[dict]:
  """A row per finished movement-pruning run in ``folder``'s sub-folders."""
  out = []
  for run in train_runs(folder):
    pruning = json.loads((run / "config.json").read_text())["config"]["pruning"]
    out.append({**train_row(config, run), "compression": pruning["method"],
                "sparsity": pruning["sparsity"]})
  return out
