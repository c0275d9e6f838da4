"""Run folders -> result rows: one JSON object per (task, seed, optimizer, compression,
sparsity), each naming the revision of flatjax that made it.

A row::

  {"task": "sst2", "seed": 0, "optimizer": "sam", "rho": 0.05, "compression": "imp",
   "sparsity": 0.6, "metric": "validation/accuracy", "score": 77.87, "base": 78.78,
   "predictions": "0110...", "revision": "5824551", "scale": "MiniLM-L6, ..."}

``compression`` is ``none`` (the fine-tuned model; its row also holds the dev ``labels``),
``imp``, ``oneshot``, ``int8`` or another an item names; ``base`` is the score of the model
it compressed in the same evaluation; ``setting`` (optional) tells apart models of one
optimizer (``"swa"``, ``"sam-mask"``); ``metric`` may also name a measurement that is not
a dev score (``"sharpness/epsilon_0.001"``); ``predictions`` (the predicted class of each
dev example, a digit string; for SQuAD, each question's F1 in points, a list) is there for
the models a claim compares, so that an analysis can pair them example by example.
``revision`` is the commit recorded in the run's ``run.json`` (``-dirty`` when the checkout
had changes; several joined by ``+`` when the run was resumed under another); ``machine`` the
device it recorded (a CPU's model and vector instruction set: int8 scores are reproducible on
the same set only, see flatjax.provenance.cpu).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ROWS_FILE = "results.jsonl"
KEY = ("task", "seed", "optimizer", "rho", "setting", "compression", "sparsity", "metric")


def scale_of(config: dict, task: str) -> str:
  """The scale a row of ``task`` states: the config's ``task_scale`` for it (a task whose
  ``task_steps`` run another recipe), else its ``scale``."""
  return (config.get("task_scale") or {}).get(task, config["scale"])


def row_key(row: dict) -> tuple:
  return tuple(row.get(k) for k in KEY)


def read_rows(path: Path) -> list[dict]:
  path = Path(path)
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def merge(old: list[dict], new: list[dict]) -> list[dict]:
  """``old`` without the (task, seed, setting) triples ``new`` has, then ``new``; sorted by
  key. A rerun replaces the rows of the settings it made and keeps those of a setting the
  config no longer makes (cofi's first try, "2k-target95")."""
  run = lambda r: (r["task"], r["seed"], r.get("setting"))
  fresh = {run(r) for r in new}
  kept = [r for r in old if run(r) not in fresh]
  order = lambda r: tuple("" if v is None else str(v) for v in row_key(r))
  return sorted(kept + new, key=order)


def revision(folder: Path) -> str:
  """The flatjax revision(s) ``folder/run.json`` records, short."""
  run = json.loads((Path(folder) / "run.json").read_text())
  names = []
  for invocation in [run, *run.get("resumed", [])]:
    state = invocation.get("flatjax") or {}
    name = (state.get("revision") or "unknown")[:7] + ("-dirty" if state.get("dirty") else "")
    if name not in names:
      names.append(name)
  return "+".join(names)


def machine(folder: Path) -> str | None:
  """The machine(s) the runs under ``folder`` recorded in their ``run.json``
  (``"cpu: AMD EPYC, avx512_vnni"``), joined by `` + `` where they differ; None where
  none recorded one."""
  from flatjax.provenance import machine as of   # here: the report does not load jax
  found = []
  for path in sorted(Path(folder).rglob("run.json")):
    name = of(json.loads(path.read_text()))
    if name and name not in found:
      found.append(name)
  return " + ".join(found) or None


def collect(config: dict, folder: Path) -> list[dict]:
  """The rows of one finished run folder of ``config``'s item, by its collector
  (``collect: NAME`` in the config: ``experiments/collect_NAME.py``'s ``rows``), each
  with the ``machine`` its runs recorded and its task's scale (:func:`scale_of`)."""
  module = importlib.import_module(f"experiments.collect_{config['collect']}")
  where = machine(Path(folder))
  return [{k: v for k, v in {**row, "scale": scale_of(config, row["task"]),
                             "machine": where}.items() if v is not None or k in KEY}
          for row in module.rows(config, Path(folder))]


def label(row: dict) -> str:
  """A row's model in words: ``"adam"``, ``"sam ρ 0.05"``, ``"adam (swa)"``."""
  return (row["optimizer"] + (f" ρ {row['rho']:g}" if row.get("rho") is not None else "")
          + (f" ({row['setting']})" if row.get("setting") else ""))


def rho(optimizer: str, given: dict) -> float | None:
  """The radius ``optimizer`` ran with (the registry's default unless given)."""
  from flatjax.optim import registry   # here: the report reads rows without loading jax
  takes = registry.settings(optimizer)
  return {**takes, **{k: v for k, v in given.items() if k in takes}}.get("rho")
