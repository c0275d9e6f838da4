"""Rows of an ``int8`` run folder (:mod:`experiments.collect` describes a row).

Per optimizer, ``flatjax train`` wrote ``OPT/`` and ``flatjax quantize`` ``OPT/int8/``
(``quantize.json``; ``torch.json`` beside it where ``experiments/int8_vs_torch.py`` was run).
Each model gives its dense row (the float32 score ``flatjax quantize`` measured, with the dev
labels and predictions), a row per int8 scheme (base: that float32 score) and, from
``torch.json``, PyTorch's own ``quantize_dynamic`` of the same weights (``int8-torch``; base:
PyTorch's float32 score of the same batches).

The helpers here (a trained model's identity, a ``quantize.json``'s rows, revisions over
several folders) serve the swa and variants collectors too.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.collect import revision, rho
from flatjax.data.tasks import get_task
from flatjax.train.runs import recorded

#: The compression name of ``flatjax quantize``'s default scheme (PyTorch's recipe).
DYNAMIC = "dynamic"


def rows(config: dict, folder: Path) -> list[dict]:
  out = []
  for path in sorted(folder.glob("*/int8/quantize.json")):
    model = path.parent.parent
    ids = {**train_ids(model), "scale": config["scale"],
           "revision": revisions(model, path.parent)}
    quantized = json.loads(path.read_text())
    out += quantize_rows(ids, quantized, dense=True)
    out += torch_rows(ids, path.parent / "torch.json", main_metric(quantized))
  return out


def train_ids(folder: Path) -> dict:
  """Task, seed, optimizer and radius of the ``flatjax train`` run in ``folder`` (its
  ``config.json``; runs saved before the config had sections, too)."""
  run = recorded(json.loads((folder / "config.json").read_text())["config"])
  given = run.get("settings", run.get("optimizer_args")) or {}
  return {"task": run["task"], "seed": run["seed"], "optimizer": run["optimizer"],
          "rho": rho(run["optimizer"], given)}


def revisions(*folders: Path) -> str:
  """The flatjax revisions the ``run.json`` of each of ``folders`` records, each once, in
  order, joined by ``+`` (a model trained by one command and measured by another)."""
  names = []
  for folder in folders:
    for name in revision(folder).split("+"):
      if name not in names:
        names.append(name)
  return "+".join(names)


def main_metric(quantized: dict) -> str:
  """``"validation/accuracy"``: the first dev split and the task's main metric."""
  split = next(iter(quantized["float32"]))
  return f"{split}/{get_task(quantized['task']).main_metric}"


def compression(scheme: str) -> str:
  """A scheme's compression name: ``int8`` for PyTorch's recipe, ``int8-per-channel`` for
  ``dynamic-per-channel``, ``int8-weight-only`` for ``weight-only``."""
  return "int8" if scheme == DYNAMIC else "int8-" + scheme.removeprefix(DYNAMIC + "-")


def quantize_rows(ids: dict, quantized: dict, dense: bool = False) -> list[dict]:
  """A ``quantize.json``'s rows: one per scheme, based on its float32 score, and, with
  ``dense``, the float32 model's row itself."""
  metric = main_metric(quantized)
  split, name = metric.split("/", 1)
  base = quantized["float32"][split][name]
  out = []
  if dense:
    kept = quantized.get("float32_predictions", {}).get(split) or {}
    out.append({**ids, "compression": "none", "sparsity": 0.0, "metric": metric,
                "score": base, "labels": kept.get("labels"),
                "predictions": kept.get("predictions")})
  for scheme, entry in quantized["int8"].items():
    kept = entry.get("predictions", {}).get(split) or {}
    out.append({**ids, "compression": compression(scheme), "sparsity": None,
                "metric": metric, "score": entry["metrics"][split][name], "base": base,
                "predictions": kept.get("predictions")})
  return out


def torch_rows(ids: dict, path: Path, metric: str) -> list[dict]:
  """PyTorch's ``quantize_dynamic`` score (and dev predictions, where recorded) from
  ``int8_vs_torch.py``'s ``torch.json``, where it has the metric (it scores accuracy only)
  and the file is there."""
  if not path.is_file():
    return []
  found = json.loads(path.read_text())
  name = metric.split("/")[-1]
  if f"torch_int8_{name}" not in found:
    return []
  return [{**ids, "compression": "int8-torch", "sparsity": None, "metric": metric,
           "score": found[f"torch_int8_{name}"], "base": found[f"torch_float_{name}"],
           "predictions": found.get("torch_int8_predictions")}]
