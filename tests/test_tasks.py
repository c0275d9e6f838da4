"""Task specs (flatjax.data.tasks): every per-task fact in one place, so that a new
task is one register call that every command then trains and evaluates."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from flatjax.data import glue, tasks
from flatjax.data.tasks import TaskSpec, TsvLayout, get_task
from flatjax.errors import FlatjaxInputError
from flatjax.recipes import compare, imp
from flatjax.recipes.finetune import TrainConfig, fit
from flatjax.train.distill import DistillConfig

COLOURS = ("red", "green", "blue")


@pytest.fixture
def toy():
  spec = tasks.register(TaskSpec(
      "toy3", ("text",), COLOURS, ("accuracy",), "accuracy", default_max_length=24,
      glue_folder="TOY3", tsv=TsvLayout(("text",), "colour"), reference_sparsity=0.3,
      distill_layer_weight=0.8))
  yield spec
  del tasks.TASKS["toy3"]


def _write_toy(folder, n_train=24, n_dev=9):
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True)
  for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
    labels = [COLOURS[i % 3] for i in range(n)]
    rows = ["text\tcolour"] + [f"the {c} {rng.choice(['cat', 'car', 'sky'])} is {c}\t{c}"
                               for c in labels]
    (folder / name).write_text("\n".join(rows) + "\n")
  return folder.parent


def test_a_registered_task_trains_end_to_end(toy, tmp_path, tiny_model_dir):
  data = _write_toy(tmp_path / "glue" / "TOY3")   # the classic layout: glue/TOY3/*.tsv
  examples = glue.load_glue("toy3", data, "validation")
  assert list(examples.labels) == [0, 1, 2] * 3 and examples.text_b is None
  results = fit(TrainConfig.from_dict({
      "data": {"task": "toy3", "source": str(data), "max_length": 24},
      "model": {"name": str(tiny_model_dir)}, "optimizer": {"learning_rate": 1e-3},
      "run": {"output": str(tmp_path / "run"), "epochs": 1, "batch_size": 8,
              "progress": False}}))
  assert results["finished"] and results["main_metric"] == "accuracy"
  accuracy = results["best"]["validation/accuracy"]
  assert round(accuracy * 9 / 100, 6).is_integer()   # a share of the 9 dev sentences
  saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
  head = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
  assert head["classifier.weight"].shape == (3, saved["hidden_size"])  # a logit per colour
  assert saved["finetuning_task"] == "toy3"
  assert saved["id2label"] == {"0": "red", "1": "green", "2": "blue"}


def test_a_registered_task_brings_its_reference_sparsity_and_distillation(toy):
  rows = [{"round": r, "target_sparsity": s, "sparsity": s, "metric": m,
           "metric_name": "validation/accuracy"}
          for r, s, m in ((0, 0.0, 70.0), (1, 0.15, 69.5), (2, 0.3, 60.0))]
  report = imp.ticket_report(rows, "toy3", tolerance=1.0)
  assert report["reference_sparsity"] == 0.3 and report["at_reference"]["metric"] == 60.0
  config = compare.CompareConfig(train=TrainConfig.from_dict(
      {"data": {"task": "toy3"}, "run": {"output": "unused"}}), imp_rounds=None)
  assert config.target_sparsity() == 0.3 and config.rounds() == 3
  d = DistillConfig.for_task("toy3")
  assert (d.layer_weight, d.prediction_weight) == (0.8, 0.2)
  assert get_task("TOY3") is toy


def test_builtin_facts_are_the_papers():
  want = {"mnli": 0.7, "qqp": 0.9, "stsb": 0.5, "qnli": 0.7, "mrpc": 0.5, "rte": 0.6,
          "sst2": 0.6, "cola": 0.5, "squad": 0.4}   # Chen et al. 2020, bert-base
  assert {n: t.reference_sparsity for n, t in tasks.TASKS.items()} == want
  weights = {n: DistillConfig.for_task(n).layer_weight for n in ("sst2", "qnli", "qqp", "mnli")}
  assert weights == {"sst2": 0.9, "qnli": 0.9, "qqp": 0.7, "mnli": 0.7}   # Na et al. 2022
  assert DistillConfig.for_task("mnli").prediction_weight == pytest.approx(0.3)
  assert get_task("squad").default_max_length == 384 and get_task("rte").default_max_length == 128


def test_bad_specs_are_refused():
  with pytest.raises(FlatjaxInputError, match="main metric"):
    tasks.register(TaskSpec("bad", ("t",), ("a", "b"), ("accuracy",), "f1"))
  with pytest.raises(FlatjaxInputError, match="kind"):
    tasks.register(TaskSpec("bad", ("t",), ("a", "b"), ("accuracy",), "accuracy", kind="rank"))
  assert "bad" not in tasks.TASKS
