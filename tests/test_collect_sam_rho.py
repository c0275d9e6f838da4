"""experiments/collect_sam_rho.py on a hand-made folder of ``flatjax train`` runs with known
numbers, laid out as the sam_rho item's steps write it (RUN/adam, RUN/sam-rhoR), and the
item's config: its steps write there with the radii their names say, and it claims nothing."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner
from flatjax import cli

#: run name -> (optimizer, its settings, best dev accuracy, final dev accuracy)
RUNS = {"adam": ("adam", {}, 66.6, 66.6), "sam-rho0.01": ("sam", {"rho": 0.01}, 64.6, 60.0),
        "sam-rho0.05": ("sam", {"rho": 0.05}, 53.2, 53.2)}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _train_run(run: Path, optimizer: str, settings: dict, best: float, final: float,
               predictions: bool) -> None:
  """What ``flatjax train`` leaves in its folder: config.json, run.json, metrics.jsonl,
  results.json, and with ``predictions`` the best model's dev predictions (not kept under
  ``--no-keep-best``)."""
  metric = "validation/accuracy"
  _write(run / "config.json", {"config": {
      "data": {"task": "qnli", "max_train_examples": 1280, "max_length": 64,
               "max_eval_examples": 500},
      "run": {"output": str(run), "seed": 0, "epochs": 2.0, "keep_best": predictions},
      "model": {"name": "minilm"},
      "optimizer": {"name": optimizer, "learning_rate": 1e-4, "settings": settings},
      "pruning": {"mask": None, "method": None}}, "train_examples": 1280})
  _write(run / "run.json", {"flatjax": {"revision": "abcdef1234", "dirty": False},
                            "resumed": [{"flatjax": {"revision": "fedcba9876", "dirty": False}}]})
  _write(run / "metrics.jsonl", [
      {"step": 40, "kind": "eval", metric: best, "best": True},
      {"step": 80, "kind": "eval", metric: final, "best": final >= best}])
  _write(run / "results.json", {
      "task": "qnli", "optimizer": optimizer, "finished": True, "step": 80, "total_steps": 80,
      "main_metric": "accuracy", "best": {"step": 40, metric: best}, "final": {metric: final},
      "train_examples": 1280, "train_seconds": 95.0})
  if predictions:
    _write(run / "best" / "predictions.json",
           {"validation": {"labels": "0110", "predictions": "0100"}})


def test_sam_rho_rows_from_a_hand_made_run(tmp_path):
  for name, (optimizer, settings, best, final) in RUNS.items():
    _train_run(tmp_path / name, optimizer, settings, best, final, predictions=name != "adam")
  _write(tmp_path / "sam-rho0.02" / "config.json", {"config": {}})   # started, not finished
  rows = collect.collect({"collect": "sam_rho", "scale": "tiny"}, tmp_path)
  assert [(r["optimizer"], r["rho"], r["score"]) for r in rows] == [
      ("adam", None, 66.6), ("sam", 0.01, 64.6), ("sam", 0.05, 53.2)]   # best, not final
  assert {(r["task"], r["seed"], r["compression"], r["sparsity"], r["scale"], r["revision"],
           r["metric"]) for r in rows} == {
      ("qnli", 0, "none", 0.0, "tiny", "abcdef1+fedcba9", "validation/accuracy")}
  assert "labels" not in rows[0] and "predictions" not in rows[0]
  assert (rows[1]["labels"], rows[1]["predictions"]) == ("0110", "0100")


def test_the_sam_rho_steps_name_their_radii_and_claim_nothing(tmp_path):
  config = runner.load_config("sam_rho")
  assert config["claims"] == []
  run = tmp_path / "qnli-seed0"
  found = []
  for step in config["steps"]:
    command, values = cli.parse(runner.step_argv(step, "qnli", 0, tmp_path / "qnli", run))
    assert command == "train" and values["data"]["max_eval_examples"] == 500
    found.append((values["run"]["output"], values["optimizer"]["name"],
                  values["optimizer"]["settings"].get("rho")))
  assert found == [(str(run / "adam"), "adam", None)] + [
      (str(run / f"sam-rho{r}"), "sam", r) for r in (0.01, 0.02, 0.05)]
