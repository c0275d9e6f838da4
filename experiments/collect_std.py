"""Rows of a ``flatjax imp`` run folder (:mod:`experiments.collect` describes a row): the std
item's Std pruning, Table 5's rows without rewinding.

``flatjax imp --output RUN`` runs each optimizer in ``RUN/OPTIMIZER`` (``imp.json``,
``rounds.jsonl``, ``run.json``, ``round_NN/best/predictions.json``). Per optimizer: the
fine-tuned model (round 0, compression ``none``), the last round's pruned model at the run's
target sparsity, whose ``base`` is round 0's score in the same evaluation, and the rounds
between as curve points without a base (as compare's IMP curve), so that a summary or a
claim reads one row per model at the target. The compression is the run's mode (``std``;
``imp`` for rewinding).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from experiments.collect import read_rows, revision, rho
from flatjax.train import evaluation


def rows(config: dict, folder: Path) -> list[dict]:
  """The rows of each optimizer's IMP run in ``folder`` (``flatjax imp``'s ``--output``)."""
  out = []
  for run in sorted(d for d in folder.iterdir() if (d / "imp.json").is_file()):
    settings = json.loads((run / "imp.json").read_text())
    train = settings["train"]
    optimizer = train["optimizer"]
    ids = {"task": train["data"]["task"], "seed": train["run"]["seed"],
           "revision": revision(run), "scale": config["scale"], "optimizer": optimizer["name"],
           "rho": rho(optimizer["name"], optimizer.get("settings", {}))}
    out += round_rows(ids, read_rows(run / "rounds.jsonl"), target(settings), settings["mode"],
                      run)
  return out


def target(settings: dict) -> float:
  """The sparsity of an IMP run's last round (``rounds`` of ``rate``), as imp rounds it."""
  return round(settings["rounds"] * settings["rate"], 6)


def round_rows(ids: dict, rounds: list[dict], goal: float, compression: str,
               run: Path | None = None) -> list[dict]:
  """One optimizer's rows from its ``rounds.jsonl``, with the dev labels and predictions
  that the best model of each round of ``run`` kept (none without ``run``)."""
  dense = rounds[0]

  def predictions(round_: int) -> dict:
    best = run / f"round_{round_:02d}" / "best" if run else None
    return saved_predictions(best, dense["metric_name"]) if best else {}

  first = predictions(0)
  out = [{**ids, "compression": "none", "sparsity": 0.0, "metric": dense["metric_name"],
          "score": dense["metric"], "labels": first.get("labels"),
          "predictions": first.get("predictions")}]
  for r in rounds[1:]:
    at_goal = math.isclose(r["target_sparsity"], goal)
    out.append({**ids, "compression": compression, "sparsity": round(r["target_sparsity"], 4),
                "metric": r["metric_name"], "score": r["metric"],
                "base": dense["metric"] if at_goal else None,
                "predictions": predictions(r["round"]).get("predictions") if at_goal else None})
  return out


def saved_predictions(model: Path, metric: str) -> dict:
  """``{"labels", "predictions"}`` on the dev split of ``metric`` (``"validation/accuracy"``)
  that a model folder kept in its ``predictions.json``; ``{}`` where it kept none (a run with
  ``--no-keep-best``, a task without classes)."""
  return evaluation.saved_predictions(model, metric.split("/", 1)[0]) or {}
