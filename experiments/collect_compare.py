"""Rows of a ``flatjax compare`` run folder (:mod:`experiments.collect` describes a row)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from experiments.collect import read_rows, revision, rho


def rows(config: dict, folder: Path) -> list[dict]:
  results = json.loads((folder / "results.json").read_text())
  settings = json.loads((folder / "compare.json").read_text())
  common = {"task": results["task"], "seed": settings["train"]["run"]["seed"],
            "revision": revision(folder), "scale": config["scale"]}
  given = settings["train"]["optimizer"].get("settings", {})
  out = []
  for optimizer, r in results["optimizers"].items():
    ids = {**common, "optimizer": optimizer, "rho": rho(optimizer, given)}
    predictions = r.get("predictions") or {}
    out.append({**ids, "compression": "none", "sparsity": 0.0, "metric": r["metric"],
                "score": r["full"], "labels": predictions.get("labels"),
                "predictions": predictions.get("full")})
    for name, score, base, sparsity in (
        ("imp", r["imp"], r["full"], results["sparsity"]),
        ("oneshot", r["oneshot"], r["oneshot_dense"], results["sparsity"]),
        ("int8", r["int8"], r["int8_float32"], None)):
      out.append({**ids, "compression": name, "sparsity": sparsity, "metric": r["metric"],
                  "score": score, "base": base, "predictions": predictions.get(name)})
    out += curve_rows(folder / optimizer, ids, r["metric"], results["sparsity"])
  return out


def curve_rows(folder: Path, ids: dict, metric: str, target: float) -> list[dict]:
  """IMP's rounds and one-shot's steps below the target sparsity (the curves' points)."""
  out = []
  for name, path in (("imp", folder / "imp" / "rounds.jsonl"),
                     ("oneshot", folder / "oneshot" / "oneshot.jsonl")):
    for point in read_rows(path):
      s = point["target_sparsity"]
      if 0 < s and not math.isclose(s, target):
        out.append({**ids, "compression": name, "sparsity": round(s, 4), "metric": metric,
                    "score": point["metric"]})
  return out
