"""Rows of the cofi item's run folder (:mod:`experiments.collect` describes a row): per
teacher optimizer, ``flatjax train`` wrote the teacher in ``RUN/teacher-OPT`` and ``flatjax
cofi`` its structurally pruned student in ``RUN/cofi-OPT`` (``cofi.json``, ``results.json``,
``run.json``).

Each CoFi run gives two rows, both from its ``results.json``, so that the student's change is
measured against its teacher in the same evaluation: the teacher (compression ``none``) and
the student (compression ``cofi``, ``sparsity`` the run's target, ``sparsity_reached`` what
the deterministic gates keep, ``base`` the teacher's score), each with the dev predictions
``flatjax cofi`` recorded. Runs made before it recorded them give the teacher the
predictions its ``best/`` model kept, where that folder is at hand, and the student none:
their claim gets means but no interval.

``setting`` names the configuration (``"4k-target80"``: training examples and target), so
that runs of several configurations on one task and seed stay apart.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.collect import revision, rho
from experiments.collect_std import saved_predictions

#: Paths a run records are relative to the checkout, where the runner runs them.
ROOT = Path(__file__).resolve().parent.parent


def rows(config: dict, folder: Path) -> list[dict]:
  """The teacher's and the student's rows of each finished CoFi run in ``folder``."""
  out = []
  for run in sorted(d for d in folder.iterdir()
                    if (d / "cofi.json").is_file() and (d / "results.json").is_file()):
    settings = json.loads((run / "cofi.json").read_text())
    results = json.loads((run / "results.json").read_text())
    common = {"revision": revision(run), "scale": config["scale"]}
    out += cofi_rows(settings, results, common, teacher_run(settings))
  return out


def cofi_rows(settings: dict, results: dict, common: dict,
              teacher: Path | None = None) -> list[dict]:
  """The teacher's and the student's rows of one run's ``cofi.json`` and ``results.json``
  (``teacher``: the teacher's run folder, for its radius and dev predictions)."""
  run, metric = settings["config"], results["main_metric"]
  optimizer = results["teacher_optimizer"]
  ids = {**common, "task": results["task"], "seed": run["seed"], "optimizer": optimizer,
         "rho": rho(optimizer, teacher_settings(teacher)), "setting": setting(run),
         "metric": metric}
  split = metric.split("/", 1)[0]
  kept = {model: (by_split or {}).get(split) or {}
          for model, by_split in (results.get("predictions") or {}).items()}
  if not kept.get("teacher") and teacher:
    kept["teacher"] = saved_predictions(resolve(settings["teacher_model"]), metric)
  teacher_kept, student_kept = kept.get("teacher") or {}, kept.get("pruned") or {}
  score = results["teacher"][metric]
  student = {**ids, "compression": "cofi", "sparsity": run["target_sparsity"],
             "sparsity_reached": round(results["sparsity"], 4),
             "score": results["pruned"][metric], "base": score}
  if student_kept:
    student["predictions"] = student_kept["predictions"]
  return [{**ids, "compression": "none", "sparsity": 0.0, "score": score,
           "labels": teacher_kept.get("labels"), "predictions": teacher_kept.get("predictions")},
          student]


def setting(run: dict) -> str:
  """``"4k-target80"``: the run's training examples (``full`` for all) and target."""
  examples = run.get("max_train_examples")
  size = f"{examples / 1000:g}k" if examples else "full"
  return f"{size}-target{round(100 * run['target_sparsity'])}"


def resolve(path: str) -> Path:
  """A path a run recorded, relative to the checkout unless absolute."""
  return Path(path) if Path(path).is_absolute() else ROOT / path


def teacher_run(settings: dict) -> Path | None:
  """The teacher's ``flatjax train`` run folder, where it is at hand (``--teacher`` may
  name a model folder, or a run made elsewhere)."""
  folder = resolve(settings["config"]["teacher"])
  return folder if (folder / "config.json").is_file() else None


def teacher_settings(teacher: Path | None) -> dict:
  """The optimizer settings the teacher was trained with (none known: the defaults)."""
  if teacher is None:
    return {}
  return seed_and_settings(json.loads((teacher / "config.json").read_text())["config"])[1]


def seed_and_settings(train: dict) -> tuple[int, dict]:
  """The seed and the optimizer settings of a saved TrainConfig (its sections, or the flat
  configuration of runs saved before them); the sharpness and tickets collectors use it too."""
  if isinstance(train.get("run"), dict):
    return train["run"]["seed"], train["optimizer"].get("settings") or {}
  return train["seed"], train.get("optimizer_args") or {}
