"""Rows of a ``flatjax tickets`` run folder (:mod:`experiments.collect` describes a row), the
table6 and transfer items' collector.

``flatjax tickets --output RUN`` fine-tunes the pre-trained weights under each mask with each
optimizer: ``tickets.json`` (the settings), ``tickets.jsonl`` (a row per finished cell),
``run.json``, and each cell's ``flatjax train`` run in ``RUN/LABEL-OPTIMIZER`` (its
``best/predictions.json``, unless run with ``--no-keep-best``).

A cell gives a row: compression ``ticket``, ``optimizer`` the one it was fine-tuned with,
``setting`` the mask's source (``"sam-mask"``: mask label ``sam``; ``"qnli-sam-mask"``: a
mask found on QNLI), ``sparsity`` the mask's (rounded to 4 places), ``score`` the cell's best
dev score, ``mask_task`` and ``mask_optimizer`` as the mask file records them. A ticket has
no dense model of its own, so no ``base``: the items' claims compare scores.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.collect import read_rows, revision, rho
from experiments.collect_cofi import seed_and_settings
from experiments.collect_std import saved_predictions


def rows(config: dict, folder: Path) -> list[dict]:
  """The cells of the tickets run in ``folder``, or of each one in its sub-folders."""
  grids = ([folder] if (folder / "tickets.json").is_file()
           else sorted(d for d in folder.iterdir() if (d / "tickets.json").is_file()))
  return [row for grid in grids for row in grid_rows(config, grid)]


def grid_rows(config: dict, grid: Path) -> list[dict]:
  """A row per finished cell of one tickets run, with the dev labels and predictions its
  best model kept."""
  settings = json.loads((grid / "tickets.json").read_text())
  common = {"revision": revision(grid), "scale": config["scale"]}
  out = []
  for cell in read_rows(grid / "tickets.jsonl"):
    best = grid / f"{cell['mask']}-{cell['optimizer']}" / "best"
    kept = saved_predictions(best, cell["metric_name"])
    out.append({**ticket_row(settings, cell), **common, "labels": kept.get("labels"),
                "predictions": kept.get("predictions")})
  return out


def ticket_row(settings: dict, cell: dict) -> dict:
  """The row of one ``tickets.jsonl`` cell of a run with ``settings`` (its
  ``tickets.json``), without revision, scale or predictions."""
  seed, given = seed_and_settings(settings["train"])
  optimizer = cell["optimizer"]
  return {"task": cell["task"], "seed": seed, "optimizer": optimizer,
          "rho": rho(optimizer, given), "setting": f"{cell['mask']}-mask",
          "compression": "ticket", "sparsity": round(cell["sparsity"], 4),
          "metric": cell["metric_name"], "score": cell["metric"],
          "mask_task": cell["mask_task"], "mask_optimizer": cell["mask_optimizer"]}

