"""Rows of a ``swa`` run folder (:mod:`experiments.collect` describes a row).

``flatjax train --swa`` wrote the folder itself (the average in ``swa/``), ``flatjax oneshot``
the one-shot curves of the compare item's Adam and SAM models of the same task and seed and
of the average into ``oneshot/``, and ``flatjax quantize`` the average's int8 scores into
``int8/``. Each model (``adam``, ``sam``, and ``adam`` with setting ``swa``) gives its dense
row (the curve's 0%, with the dev labels), one-shot at the curve's end (base: its 0%), the
curve's other points (no base: the plot's) and int8 (base: the float32 score of the same
evaluation). Adam's and SAM's int8 rows are the compare run's, as the old report took them.

The helpers for the compared models and a curve serve the variants collector too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from experiments.collect import read_rows, rho
from experiments.collect_int8 import quantize_rows, revisions, train_ids
from flatjax.train.runs import recorded

#: The item whose runs hold the Adam and SAM models the curves compare with.
COMPARE = "compare"
COMPARED = ("adam", "sam")


def rows(config: dict, folder: Path) -> list[dict]:
  curves = read_curves(folder / "oneshot" / "oneshot.jsonl")
  ids = {**train_ids(folder), "setting": "swa",
         "revision": revisions(folder, folder / "oneshot", folder / "int8")}
  return (compared_rows(config, folder, curves)
          + model_rows(config["scale"], ids, curves["swa"], folder / "int8" / "quantize.json"))


def compare_run(config: dict, folder: Path) -> Path:
  """The compare item's run of ``folder``'s task and seed, in the same scale's runs
  (``runs/compare/sst2-seed0`` beside ``runs/swa/sst2-seed0``; ``compare-full`` at full)."""
  scale = config.get("scale_name", "cpu")
  item = COMPARE if scale == "cpu" else f"{COMPARE}-{scale}"
  return folder.parent.parent / item / folder.name


def compare_ids(compare: Path, optimizer: str) -> dict:
  """Task, seed, optimizer and radius of one of a compare run's models."""
  train = recorded(json.loads((compare / "compare.json").read_text())["train"])
  given = train.get("settings", train.get("optimizer_args")) or {}
  return {"task": train["task"], "seed": train["seed"], "optimizer": optimizer,
          "rho": rho(optimizer, given)}


def compared_rows(config: dict, folder: Path, curves: dict) -> list[dict]:
  """The compare run's Adam and SAM models: their curves from this item's one-shot run,
  their int8 rows from the compare run."""
  compare = compare_run(config, folder)
  out = []
  for optimizer in COMPARED:
    ids = {**compare_ids(compare, optimizer),
           "revision": revisions(compare, folder / "oneshot")}
    out += model_rows(config["scale"], ids, curves[optimizer],
                      compare / optimizer / "int8" / "quantize.json")
  return out


def model_rows(scale: str, ids: dict, points: list[dict], quantize: Path) -> list[dict]:
  """One model's rows: its one-shot curve's, then its int8 scores'."""
  ids = {**ids, "scale": scale}
  return curve_rows(ids, points) + quantize_rows(ids, json.loads(quantize.read_text()))


def read_curves(path: Path) -> dict[str, list[dict]]:
  """``oneshot.jsonl``'s points by model label, from 0% up."""
  curves: dict = defaultdict(list)
  for point in read_rows(path):
    curves[point["label"]].append(point)
  return {label: sorted(points, key=lambda p: p["target_sparsity"])
          for label, points in curves.items()}


def curve_rows(ids: dict, points: list[dict]) -> list[dict]:
  """A curve's dense row (0%, with the dev labels), the points between (no base), then its
  end (based on 0%): last, as the claims take a model's last one-shot row of a seed."""
  dense, end = points[0], points[-1]
  metric = dense["metric_name"]
  split = metric.split("/")[0]
  kept = lambda p: (p.get("predictions") or {}).get(split) or {}
  return ([{**ids, "compression": "none", "sparsity": 0.0, "metric": metric,
            "score": dense["metric"], "labels": kept(dense).get("labels"),
            "predictions": kept(dense).get("predictions")}]
          + [{**ids, "compression": "oneshot", "sparsity": round(p["target_sparsity"], 4),
              "metric": metric, "score": p["metric"]} for p in points[1:-1]]
          + [{**ids, "compression": "oneshot", "sparsity": end["target_sparsity"],
              "metric": metric, "score": end["metric"], "base": dense["metric"],
              "predictions": kept(end).get("predictions")}])
