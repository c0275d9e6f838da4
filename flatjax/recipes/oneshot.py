"""One-shot magnitude pruning of fine-tuned models, without retraining.

The paper's one-shot control (Na et al. 2022, Sec. 4): a fine-tuned model is
pruned globally by magnitude in 5% steps up to 60% and evaluated at each step;
SAM-trained models hold their accuracy longer. Each sparsity is pruned from
the full model (magnitude masks at increasing sparsity are nested, so this
equals pruning step by step).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from flatjax import jsonl, provenance
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models import pretrained
from flatjax.recipes import finetune, plots
from flatjax.sparsity import masks as masks_lib, methods
from flatjax.sparsity.pruner import prune_once
from flatjax.train import steps
from flatjax.train.trainer import check_rerun_folder


def sparsity_grid(step: float = 0.05, maximum: float = 0.6) -> list[float]:
  """``0, step, 2 step, ... <= maximum`` (rounded to 1e-6)."""
  if not 0 < step <= 1 or not 0 <= maximum <= 1:
    raise FlatjaxInputError(f"need 0 < step <= 1 and 0 <= max <= 1, got {step}, {maximum}")
  return [round(i * step, 6) for i in range(int(np.floor(maximum / step + 1e-9)) + 1)]


@dataclasses.dataclass
class OneshotConfig:
  """A ``flatjax oneshot`` run: curves of fine-tuned models pruned in steps."""
  models: dict[str, str]
  """label -> a fine-tuned model folder (e.g. RUN/best), one curve each"""
  output: str
  """folder for oneshot.jsonl, oneshot.md and oneshot.png (rows already there are reused)"""
  step: float = 0.05
  """sparsity step"""
  maximum: float = 0.6
  """largest sparsity"""
  scope: str = "bert"
  """prunable params: a scope name or a regex on param paths"""
  granularity: str = "global"
  """rank scores over the whole scope (global), within each tensor (per_tensor), or keep N of
  every M inputs of each kernel (N:M, e.g. 2:4 with step 0.25 or 0.5)"""
  method: str = "magnitude"
  """the scores pruned by: magnitude, random, or a registered method needing no training"""
  eval_batch_size: int = 64
  """examples per evaluation batch"""
  seed: int = 0
  """seeds the max_eval_examples subset"""
  progress: bool = True
  """show progress"""


def oneshot_curve(base: Any, model: str, sparsities: list[float], *, scope: str = "bert",
                  granularity: str = "global", method: str = "magnitude",
                  done: dict[float, dict] | None = None,
                  on_row: Callable[[dict], None] | None = None) -> list[dict]:
  """Rows ``{"target_sparsity", "sparsity", "metric", "metric_name", "scores",
  "predictions"}`` (predictions: ``SplitData.per_example`` per split)
  of ``model`` pruned to each of ``sparsities`` and evaluated on ``base``'s
  (a TrainConfig) evaluation data. ``done``: rows already computed, by
  sparsity (a resumed run); ``on_row`` is called with each new row."""
  config = base.replace(model={"name": model})
  loaded = finetune.load_model(config)
  splits = finetune.load_eval_splits(config, pretrained.load_tokenizer(loaded.tokenizer_dir))
  main = f"{splits[0].split}/{get_task(config.data.task).main_metric}"
  eval_step = jax.jit(steps.make_eval_step(loaded.module))   # compiled once for all sparsities
  scoring = methods.untrained_scoring(method)
  rows = []
  for s in sparsities:
    if done and s in done:
      rows.append(done[s])
      continue
    mask = prune_once(scoring, loaded.params, s, scope=scope, granularity=granularity)
    scores, predictions = finetune.predict_params(
        config, loaded, masks_lib.apply_mask(loaded.params, mask), splits, eval_step)
    row = {"target_sparsity": s, "sparsity": masks_lib.sparsity(mask), "metric": scores[main],
           "metric_name": main, "scores": scores,
           "fully_pruned": masks_lib.fully_pruned(masks_lib.sparsity_report(mask)),
           "predictions": predictions}
    rows.append(row)
    if on_row is not None:
      on_row(row)
  return rows


def run_oneshot(base: Any, models: dict[str, str], out: str | Path, *, step: float = 0.05,
                maximum: float = 0.6, scope: str = "bert", granularity: str = "global",
                method: str = "magnitude",
                log: Callable[[str], None] = print) -> dict[str, list[dict]]:
  """One-shot curves of several models (``{label: model folder}``) into ``out``:
  ``oneshot.jsonl`` (a row per label and sparsity; rows already there are
  reused, so an interrupted run continues), ``oneshot.md`` and ``oneshot.png``."""
  grid = sparsity_grid(step, maximum)
  masks_lib.check_granularity(granularity, grid)
  methods.untrained_scoring(method)
  if not models:
    raise FlatjaxInputError("give at least one --model LABEL=FOLDER")
  for label, path in models.items():
    if not Path(path).exists() and path != "minilm":
      raise FlatjaxInputError(f"model {label}: {path} does not exist")
  out = Path(out)
  check_rerun_folder(out, "oneshot.jsonl", "one-shot curves")
  out.mkdir(parents=True, exist_ok=True)
  rows_path = out / "oneshot.jsonl"
  settings = {"base": dataclasses.asdict(base), "models": models, "step": step,
              "maximum": maximum, "scope": scope, "granularity": granularity, "method": method}
  inputs = {"data": base.data.source, "eval_data": base.data.eval_source,
            **{f"model {label}": path for label, path in models.items()}}
  provenance.write_run_json(out, settings, inputs, resumed=rows_path.exists())
  previous = jsonl.read(rows_path)
  curves = {}
  for label, model in models.items():
    done = {r["target_sparsity"]: r for r in previous
            if r["label"] == label and r["model"] == str(model)}

    def write(row, label=label, model=model):
      row.update(label=label, model=str(model))
      jsonl.append(rows_path, row)
      log(f"{label}: sparsity {row['target_sparsity']:.0%}: {row['metric_name']} "
          f"{row['metric']:.2f}")
    curves[label] = oneshot_curve(base, str(model), grid, scope=scope, granularity=granularity,
                                  method=method,
                                  done=done, on_row=write)
  name = next(iter(curves.values()))[0]["metric_name"]
  table = ["| sparsity | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
  for i, s in enumerate(grid):
    table.append(f"| {s:.0%} | " + " | ".join(f"{c[i]['metric']:.2f}" for c in curves.values())
                 + " |")
  (out / "oneshot.md").write_text(
      f"One-shot global magnitude pruning ({base.data.task}, dev {name}), no retraining.\n\n"
      + "\n".join(table) + "\n")
  plots.plot_sparsity_curves(curves, out / "oneshot.png",
                             title=f"{base.data.task}: one-shot magnitude pruning, no retraining")
  return curves
