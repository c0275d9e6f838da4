"""Finding the fine-tuned model in a ``flatjax train`` run folder (or a model folder).

``flatjax cofi --teacher``, ``flatjax quantize`` and ``flatjax sharpness`` take
either; this is the one place that reads a run's settings to find its model,
task and data.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from flatjax.data.tasks import TaskSpec, get_task
from flatjax.errors import FlatjaxInputError


@dataclasses.dataclass
class FineTuned:
  """A fine-tuned model and what its run recorded (``None`` for a bare model folder)."""
  model_dir: Path          # the model folder: RUN/best (else RUN/final) or the folder given
  task: TaskSpec
  base_model: str | None   # the model it was fine-tuned from (the run's --model)
  data: str | None
  optimizer: str | None
  run_dir: Path | None = None
  settings: dict = dataclasses.field(default_factory=dict)  # the run's config (recorded())


def recorded(config: dict) -> dict:
  """A saved TrainConfig as one flat dict: its sections' fields, with the names
  the flat configuration used for the rest (model, optimizer, lr, data,
  eval_data, mask, pruning); runs saved flat, before it had sections, are
  returned as they are."""
  if not isinstance(config.get("run"), dict):
    return config
  data, optimizer, pruning = config["data"], config["optimizer"], config["pruning"]
  return {**data, **config["run"], **optimizer, "model": config["model"]["name"],
          "dtype": config["model"]["dtype"], "optimizer": optimizer["name"],
          "lr": optimizer["learning_rate"], "data": data["source"],
          "eval_data": data["eval_source"], "mask": pruning["mask"],
          "pruning": pruning["method"]}


def resolve_finetuned(path: str, task: str | None = None, role: str = "model") -> FineTuned:
  """The model of a ``flatjax train`` run folder (its ``best/``, else ``final/``)
  or a model folder (which must record its task unless ``task`` is given).

  ``role`` names the argument in error messages (``"teacher"``, ``"model"``).
  """
  root = Path(path)
  if not root.is_dir():
    raise FlatjaxInputError(f"{role} {path} is not a folder")
  run_file = root / "config.json"
  try:
    settings = json.loads(run_file.read_text()) if run_file.is_file() else {}
  except json.JSONDecodeError as e:
    raise FlatjaxInputError(f"{role} {path}: config.json is not valid JSON ({e})") from None
  if "config" in settings:  # a flatjax run folder
    run = recorded(settings["config"])
    model_dir = next((root / d for d in ("best", "final") if (root / d / "config.json").is_file()),
                     None)
    if model_dir is None:
      raise FlatjaxInputError(f"{role} run {path} has no best/ or final/ model yet")
    name = task or run["task"]
    if get_task(name).name != get_task(run["task"]).name:
      raise FlatjaxInputError(f"{role} run {path} was fine-tuned on {run['task']}, not {name}")
    return FineTuned(model_dir, get_task(name), run.get("model"), run.get("data"),
                     run.get("optimizer"), root, run)
  if not run_file.is_file():
    raise FlatjaxInputError(f"{role} {path} holds neither a flatjax run nor a model "
                            "(no config.json)")
  name = task or settings.get("finetuning_task")
  if not name:
    raise FlatjaxInputError(f"{role} model {path} does not record its task; pass --task")
  return FineTuned(root, get_task(name), None, None, None)
