"""train/runs.py: which model a run folder or a model folder stands for."""

import json

import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.train.runs import resolve_finetuned


def _run_folder(root, task="rte", models=("best", "final"), **config):
  root.mkdir()
  settings = {"task": task, "model": "minilm", "data": "some/data", "optimizer": "sam", **config}
  (root / "config.json").write_text(json.dumps({"config": settings}))
  for name in models:
    (root / name).mkdir()
    (root / name / "config.json").write_text("{}")
  return root


def test_run_folder_gives_best_then_final(tmp_path):
  run = resolve_finetuned(str(_run_folder(tmp_path / "a")))
  assert run.model_dir == tmp_path / "a" / "best"
  assert (run.task.name, run.base_model, run.data, run.optimizer) == (
      "rte", "minilm", "some/data", "sam")
  assert run.run_dir == tmp_path / "a"
  run = resolve_finetuned(str(_run_folder(tmp_path / "b", models=("final",))))
  assert run.model_dir == tmp_path / "b" / "final"


def test_model_folder_records_its_task(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"finetuning_task": "sst2"}))
  run = resolve_finetuned(str(tmp_path))
  assert (run.model_dir, run.task.name, run.optimizer, run.run_dir) == (
      tmp_path, "sst2", None, None)
  assert resolve_finetuned(str(tmp_path), task="mrpc").task.name == "mrpc"


@pytest.mark.parametrize("make, task, message", [
    (lambda p: p / "missing", None, "is not a folder"),
    (lambda p: p, None, "no config.json"),
    (lambda p: _run_folder(p / "r", models=()), None, "no best/ or final/"),
    (lambda p: _run_folder(p / "r"), "sst2", "fine-tuned on rte, not sst2"),
])
def test_bad_folders(tmp_path, make, task, message):
  with pytest.raises(FlatjaxInputError, match=message):
    resolve_finetuned(str(make(tmp_path)), task, role="teacher")


def test_model_folder_without_task(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(FlatjaxInputError, match="pass --task"):
    resolve_finetuned(str(tmp_path))
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(FlatjaxInputError, match="not valid JSON"):
    resolve_finetuned(str(tmp_path))


def test_a_run_saved_with_sections_reads_like_a_flat_one(tmp_path):
  import dataclasses
  from flatjax.recipes.finetune import TrainConfig
  from flatjax.train.runs import recorded
  config = TrainConfig.from_dict({
      "data": {"task": "rte", "source": "some/data", "max_length": 64},
      "model": {"name": "minilm"}, "optimizer": {"name": "sam", "learning_rate": 1e-4},
      "run": {"output": str(tmp_path / "a"), "seed": 2}})
  saved = json.loads(json.dumps(dataclasses.asdict(config)))
  flat = recorded(saved)
  assert (flat["task"], flat["model"], flat["data"], flat["eval_data"], flat["optimizer"],
          flat["lr"], flat["seed"], flat["max_length"], flat["mask"]) == (
      "rte", "minilm", "some/data", None, "sam", 1e-4, 2, 64, None)
  root = _run_folder(tmp_path / "a")
  (root / "config.json").write_text(json.dumps({"config": saved}))
  run = resolve_finetuned(str(root))
  assert (run.task.name, run.base_model, run.data, run.optimizer) == (
      "rte", "minilm", "some/data", "sam")
  assert recorded({"task": "rte", "lr": 2e-5}) == {"task": "rte", "lr": 2e-5}  # saved flat
