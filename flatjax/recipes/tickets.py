"""Lottery-ticket controls: which mask, retrained with which optimizer.

The paper's Table 6 (Na et al. 2022): masks found by IMP with Adam or with
SAM, and a random mask with the same per-tensor sparsities, are each applied
to the *pre-trained* weights and fine-tuned with Adam and with SAM. Its
transfer experiment is the same with a mask found on another task. Every cell
is a complete ``flatjax train`` run under the mask, so any registered
optimizer can be a column. The run folder::

  tickets.json                the settings
  masks/random.safetensors    the random control (when asked for)
  <mask>-<optimizer>/         each cell's run folder
  tickets.jsonl               one row per finished cell
  tickets.md                  the grid: masks x optimizers, best dev metric

A stopped run resumes cell by cell (a started cell from its checkpoint).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import jax

from flatjax import files, jsonl, provenance
from flatjax.console import say
from flatjax.errors import FlatjaxInputError
from flatjax.optim import registry
from flatjax.recipes import finetune
from flatjax.recipes import imp as imp_lib
from flatjax.sparsity import masks as masks_lib
from flatjax.train.trainer import check_driver_folder


def resolve_mask(source: str, sparsity: float | None = None) -> Path:
  """A mask file from a file path, a run folder holding ``mask.safetensors``,
  or an IMP run folder (then ``sparsity`` picks its round's mask)."""
  path = Path(source)
  if path.is_file():
    return path
  if (path / masks_lib.MASK_FILE).is_file():
    return path / masks_lib.MASK_FILE
  if (path / "imp.json").is_file():
    if sparsity is None:
      raise FlatjaxInputError(f"{path} is an IMP run: give --sparsity to pick its mask")
    found = imp_lib.mask_path(path, sparsity)
    if not found.is_file():
      raise FlatjaxInputError(f"IMP run {path} has no mask at sparsity {sparsity:g} "
                              f"(expected {found})")
    return found
  raise FlatjaxInputError(f"no mask at {path}: expected a mask file, a run folder with "
                          f"{masks_lib.MASK_FILE}, or an IMP run folder")


@dataclasses.dataclass
class TicketsConfig:
  """``train``: the fine-tuning recipe (``output`` is the grid's folder,
  ``model`` the pre-trained weights every cell starts from); ``masks``: label
  -> mask file; ``random_like``: also a random mask with the per-tensor
  sparsities of that label's mask; ``optimizers``: the columns."""
  train: finetune.TrainConfig
  masks: dict[str, str]
  """label -> a mask: a file, a run folder, or an IMP run folder (with --sparsity)"""
  optimizers: tuple[str, ...] = ("adam", "sam")
  """the optimizers, one column each"""
  random_like: str | None = None
  """also a random mask with the per-tensor sparsities of this label's"""
  random_seed: int = 0
  """seeds the random mask"""

  def validate(self) -> None:
    if not self.masks:
      raise FlatjaxInputError("give at least one --mask LABEL=PATH")
    if self.random_like is not None and self.random_like not in self.masks:
      raise FlatjaxInputError(f"--random-like {self.random_like!r} is not a mask label "
                              f"({', '.join(self.masks)})")
    if "random" in self.masks and self.random_like is not None:
      raise FlatjaxInputError("the label 'random' is taken by --random-like")
    for label, path in self.masks.items():
      if not label or label in (".", "..") or Path(label).name != label or "\\" in label:
        # a label names the cell's folder, OUTPUT/LABEL-OPTIMIZER: it stays inside OUTPUT
        raise FlatjaxInputError(f"mask label {label!r} must be a plain name, not a path")
      if not Path(path).is_file():
        raise FlatjaxInputError(f"mask {label}: {path} does not exist")
      recorded = masks_lib.mask_metadata(path).get("sparsity", "0")
      try:
        float(recorded)
      except ValueError:
        raise FlatjaxInputError(f"mask {label}: {path} records its sparsity as {recorded!r}, "
                                "not a number") from None
    for name in self.optimizers:
      self.cell(name).validate()

  def cell(self, optimizer: str, output: str | None = None, mask: str | None = None):
    """The fine-tuning run of one cell of the grid."""
    return dataclasses.replace(self.train.replace(
        run={"output": output or self.train.run.output}, pruning={"mask": mask}),
        optimizer=registry.switched(self.train.optimizer, optimizer))

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    for k in ("progress", "stop_after_steps"):
      d["train"]["run"].pop(k, None)
    return d


def run_tickets(config: TicketsConfig, resume: bool = False,
                log: Callable[[str], None] | None = None) -> list[dict]:
  """Fine-tunes every (mask, optimizer) cell; returns the rows of ``tickets.jsonl``."""
  log = log or say
  config.validate()
  out = Path(config.train.run.output)
  resumed = check_driver_folder(out, "tickets.json", config.to_json(), resume, "a tickets run")
  if not resumed:
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "tickets.json", config.to_json())
  inputs = {**config.train.data_sources(),
            **{f"mask {label}": path for label, path in config.masks.items()}}
  provenance.write_run_json(out, config, inputs, resumed=resumed)
  sources = dict(config.masks)
  if config.random_like is not None:
    random_path = out / "masks" / "random.safetensors"
    if not random_path.exists():
      model = finetune.load_model(config.train)
      like = masks_lib.load_mask(sources[config.random_like], model.params)
      masks_lib.save_mask(random_path, masks_lib.random_mask(
          like, jax.random.key(config.random_seed)), metadata={
              "source": f"random, like {config.random_like}", "seed": str(config.random_seed)})
    sources["random"] = str(random_path)
  rows_path = out / "tickets.jsonl"
  rows = jsonl.read(rows_path)
  done = {(r["mask"], r["optimizer"]) for r in rows}
  for label, path in sources.items():
    meta = masks_lib.mask_metadata(path)
    for opt in config.optimizers:
      if (label, opt) in done:
        continue
      cell = config.cell(opt, str(out / f"{label}-{opt}"), str(path))
      started = (Path(cell.run.output) / "config.json").exists()
      log(f"ticket {label} ({float(meta.get('sparsity', 0)):.0%} sparse) fine-tuned with {opt}")
      results = finetune.fit(cell, resume=started)
      if not results["finished"]:
        return rows
      main_key = next(k for k in results["best"] if k != "step")
      task = config.train.data.task
      row = {"mask": label, "optimizer": opt, "task": task, "mask_task": meta.get("task", task),
             "mask_optimizer": meta.get("optimizer"), "sparsity": results["sparsity"],
             "metric": results["best"][main_key], "metric_name": main_key,
             "best": results["best"], "final": results["final"], "steps": results["step"]}
      rows.append(row)
      jsonl.append(rows_path, row)
  (out / "tickets.md").write_text(grid_table(rows) + "\n")
  return rows


def grid_table(rows: list[dict]) -> str:
  """Markdown: one line per mask, one column per optimizer (best dev metric)."""
  masks = list(dict.fromkeys(r["mask"] for r in rows))
  opts = list(dict.fromkeys(r["optimizer"] for r in rows))
  cell = {(r["mask"], r["optimizer"]): r for r in rows}
  name = rows[0]["metric_name"] if rows else "metric"
  lines = [f"Task {rows[0]['task'] if rows else '?'}, dev {name}, mask x final optimizer.", "",
           "| mask (found on) | sparsity | " + " | ".join(opts) + " |",
           "|---|---|" + "---|" * len(opts)]
  for m in masks:
    first = next(r for r in rows if r["mask"] == m)
    found = first["mask_task"] + (f", {first['mask_optimizer']}" if first["mask_optimizer"]
                                  else "")
    lines.append(f"| {m} ({found}) | {first['sparsity']:.0%} | " + " | ".join(
        f"{cell[(m, o)]['metric']:.2f}" if (m, o) in cell else "" for o in opts) + " |")
  return "\n".join(lines)
