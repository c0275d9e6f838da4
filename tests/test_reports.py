"""flatjax.train.reports: a run's metrics as TensorBoard events and a CSV table, checked
against its metrics.jsonl (the events read back with a TFRecord reader written here, not
tensorboardX's writer), and the curve PNG at the end of a run."""

import csv
import json
import struct

import pytest

from conftest import write_sst2
from flatjax.errors import FlatjaxInputError
from flatjax.recipes.finetune import TrainConfig, fit
from flatjax.train import reports


def _config(data, out, model, **run):
  return TrainConfig.from_dict({
      "data": {"task": "sst2", "source": str(data), "max_length": 32},
      "model": {"name": str(model)}, "optimizer": {"name": "sam", "learning_rate": 1e-3},
      "run": {"output": str(out), "epochs": 2, "batch_size": 8, "seed": 0, "log_every": 2,
              "eval_every": 3, "progress": False, **run}})


def _events(folder):
  """``{(tag, step): value}`` of every scalar in the event files under ``folder``: records
  are ``length (8 bytes), crc (4), Event proto, crc (4)``."""
  from tensorboardX.proto import event_pb2
  found = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    i = 0
    while i < len(data):
      (length,) = struct.unpack("<Q", data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      for value in event.summary.value:
        found[(value.tag, event.step)] = value.simple_value
  return found


def test_tensorboard_and_csv_hold_every_metrics_row(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=40)     # 5 steps an epoch, 10 in all
  run = tmp_path / "run"
  fit(_config(data, run, tiny_model_dir, report_to=["tensorboard", "csv"]))
  rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  with open(run / "metrics.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert len(table) == len(rows)
  for row, line in zip(rows, table):
    for key, value in row.items():
      assert line[key] == str(value), key
  events = _events(run / "tensorboard")
  train = [r for r in rows if r["kind"] == "train"]
  evals = [r for r in rows if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [3, 6, 9, 10]
  for r in train:
    assert events[("train/loss", r["step"])] == pytest.approx(r["loss"], rel=1e-6)
    assert events[("train/perturbed_loss", r["step"])] == pytest.approx(r["perturbed_loss"],
                                                                       rel=1e-6)
  for r in evals:
    assert events[("eval/validation/accuracy", r["step"])] == pytest.approx(
        r["validation/accuracy"], rel=1e-6)
  assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_run_keeps_one_csv_row_per_step(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=40)
  run = tmp_path / "run"
  fit(_config(data, run, tiny_model_dir, report_to=["csv"], stop_after_steps=4))
  assert not (run / "curves.png").exists()          # drawn when the run ends
  fit(_config(data, run, tiny_model_dir, report_to=["csv"]), resume=True)
  with open(run / "metrics.csv", newline="") as f:
    keys = [(r["kind"], r["step"]) for r in csv.DictReader(f)]
  assert len(keys) == len(set(keys)) and ("eval", "10") in keys
  assert (run / "curves.png").is_file()


def test_unknown_reporters_are_one_line_errors():
  with pytest.raises(FlatjaxInputError, match="unknown report_to 'wandb'"):
    reports.check(["wandb"])
