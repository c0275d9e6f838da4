"""Rows of the sam_rho item's run folder (:mod:`experiments.collect` describes a row): one
``flatjax train`` run per optimizer and radius in ``RUN/NAME`` (``adam``, ``sam-rho0.01``,
...), each the fine-tuned model (compression ``none``) at its best dev score, the score
compare gives a fine-tuned model.

:func:`train_row` reads any ``flatjax train`` run folder (``config.json``, ``results.json``,
``run.json``, ``best/predictions.json``); the movement item's collector uses it too.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.collect import revision, rho
from experiments.collect_std import saved_predictions


def rows(config: dict, folder: Path) -> list[dict]:
  """A row per finished ``flatjax train`` run in ``folder``'s sub-folders."""
  return [train_row(config, run) for run in train_runs(folder)]


def train_runs(folder: Path) -> list[Path]:
  """The sub-folders of ``folder`` holding a finished ``flatjax train`` run, by name."""
  return sorted(d for d in folder.iterdir()
                if (d / "results.json").is_file() and (d / "config.json").is_file())


def train_row(config: dict, run: Path) -> dict:
  """The model a ``flatjax train`` run folder made: its best dev score on the main metric
  (with a learned mask, the best at the final sparsity), with the dev labels and predictions
  its best model kept."""
  results = json.loads((run / "results.json").read_text())
  settings = json.loads((run / "config.json").read_text())["config"]
  optimizer = settings["optimizer"]
  metric = next(k for k in results["best"] if k != "step")
  kept = saved_predictions(run / "best", metric)
  return {"task": results["task"], "seed": settings["run"]["seed"], "revision": revision(run),
          "scale": config["scale"], "optimizer": optimizer["name"],
          "rho": rho(optimizer["name"], optimizer.get("settings", {})), "compression": "none",
          "sparsity": 0.0, "metric": metric, "score": results["best"][metric],
          "labels": kept.get("labels"), "predictions": kept.get("predictions")}
