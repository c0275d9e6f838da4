"""Rows of the sharpness item's run folder (:mod:`experiments.collect` describes a row):
``flatjax sharpness`` measured each fine-tuned model into ``RUN/SOURCE/OPT``
(``sharpness.json``, ``run.json``), SOURCE naming where the model came from
(``cofi-teacher``: the cofi item's teachers; ``compare``: the compare item's models).

A model gives a row per measure (compression ``none``, ``metric`` ``sharpness/MEASURE``,
``score`` its value): Keskar's epsilon-sharpness (x100) at each epsilon
(``sharpness/epsilon_0.001``), the Hessian's top eigenvalue (with ``converged``) and its trace
(with the estimate's ``stderr``), each with the training ``loss`` they were measured at, and,
where the run drew the 1-D loss surface (Li et al. 2018), ``sharpness/surface_1d_rise``: the
mean loss on the grid along the filter-normalised random direction (points evenly spaced over
its radius) minus the loss at the model, with the whole ``curve`` (``alphas``, ``losses``) for
the item's plot. The mean, not the highest point: far out, every model's loss saturates near
chance's, so the width of the basin is what tells models apart.
``setting`` is SOURCE. Task, seed, optimizer and radius are the measured run's own (its
``config.json``). Flatness values have no per-example bootstrap: the item lists no claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments.collect import revision, rho
from experiments.collect_cofi import resolve, seed_and_settings


def rows(config: dict, folder: Path) -> list[dict]:
  """Every measure of every model measured in ``folder``'s ``SOURCE/OPT`` folders."""
  out = []
  for path in sorted(folder.glob("*/*/sharpness.json")):
    measured = json.loads(path.read_text())
    ids = {**model_ids(measured), "setting": path.parent.parent.name,
           "revision": revision(path.parent), "scale": config["scale"]}
    out += measure_rows(ids, measured)
  return out


def model_ids(measured: dict) -> dict:
  """Task, seed, optimizer and radius of the model a ``sharpness.json`` measured, from the
  ``flatjax train`` run it names (its ``config.json``)."""
  config = json.loads((resolve(measured["run"]) / "config.json").read_text())["config"]
  seed, given = seed_and_settings(config)
  optimizer = measured["optimizer"]
  return {"task": measured["task"], "seed": seed, "optimizer": optimizer,
          "rho": rho(optimizer, given)}


def measure_rows(ids: dict, measured: dict) -> list[dict]:
  """A row per measure in ``measured`` (a ``sharpness.json``), each with ``ids``."""
  found = [(f"epsilon_{k['epsilon']:g}", k["sharpness"], {}) for k in measured["keskar"]]
  top = measured.get("hessian_top_eigenvalue")
  if top:
    found.append(("hessian_top_eigenvalue", top["eigenvalue"], {"converged": top["converged"]}))
  trace = measured.get("hessian_trace")
  if trace:
    found.append(("hessian_trace", trace["trace"], {"stderr": trace["stderr"]}))
  surface = measured.get("surface_1d")
  if surface:
    curve = {"alphas": surface["alphas"], "losses": surface["losses"]}
    at_model = np.interp(0.0, curve["alphas"], curve["losses"])
    rise = float(np.mean(curve["losses"]) - at_model)
    found.append(("surface_1d_rise", rise, {"curve": curve}))
  return [{**ids, "compression": "none", "sparsity": 0.0, "metric": f"sharpness/{name}",
           "score": value, "loss": measured["loss"], **extra} for name, value, extra in found]
