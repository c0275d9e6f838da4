"""experiments/collect_int8.py on a hand-made int8 run folder with known numbers: per
optimizer a ``flatjax train`` folder (OPT/) and its ``flatjax quantize`` results (OPT/int8/),
with the files those commands write; PyTorch's score from torch.json where it is there.

The builders here serve tests/test_collect_swa.py and test_collect_variants.py too."""

from __future__ import annotations

import dataclasses
import json

from experiments import collect
from flatjax.recipes.finetune import TrainConfig
from flatjax.recipes.quantize import QuantizeConfig

LABELS = "01100110"


def _write(path, value):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _run_json(folder, config, revision, dirty=False, resumed=()):
  """``run.json`` as flatjax.provenance writes it (``resumed``: later revisions)."""
  state = lambda rev, dirty: {"revision": rev, "dirty": dirty, "files": []}
  _write(folder / "run.json", {
      "config": config, "argv": ["flatjax"], "cwd": "/repo", "time": "2026-01-01T00:00:00+00:00",
      "flatjax": state(revision, dirty), "versions": {}, "device": {}, "data": {},
      "resumed": [{"argv": ["flatjax"], "flatjax": state(r, True)} for r in resumed]})


def _train_config(task, seed, output, optimizer="adam", settings=None, swa=None) -> dict:
  """The ``config`` a ``flatjax train`` run saves (the TrainConfig's sections)."""
  return dataclasses.asdict(TrainConfig.from_dict({
      "data": {"task": task, "source": "data/glue/X", "max_train_examples": 1000},
      "run": {"output": str(output), "seed": seed, "epochs": 2.0},
      "model": {"name": "minilm"},
      "optimizer": {"name": optimizer, "learning_rate": 1e-4, "settings": settings or {},
                    "swa": swa}}))


def _train(folder, task, seed, optimizer="adam", settings=None, swa=None,
           revision="aaaaaaa111"):
  """A finished ``flatjax train`` folder (its model files left out)."""
  config = _train_config(task, seed, folder, optimizer, settings, swa)
  _run_json(folder, config, revision)
  _write(folder / "config.json", {"config": config, "model_source": "minilm",
                                  "train_examples": 1000, "eval_sources": {}})
  _write(folder / "results.json", {"task": task, "optimizer": optimizer, "finished": True,
                                   "main_metric": "accuracy"})


def _quantize(folder, task, float32, int8, predictions=LABELS, optimizer="adam",
              revision="aaaaaaa111"):
  """``flatjax quantize``'s output folder: ``int8`` maps each scheme to (score,
  predictions); ``predictions`` are the float32 model's (None: a run before they were
  kept)."""
  config = {**dataclasses.asdict(QuantizeConfig(run=str(folder.parent), output=str(folder),
                                                schemes=tuple(int8))), "schemes": list(int8)}
  _run_json(folder, config, revision)
  per_example = lambda p: {"validation": {"labels": LABELS, "predictions": p}} if p else {}
  _write(folder / "quantize.json", {
      "run": str(folder.parent), "model": str(folder.parent / "best"), "task": task,
      "optimizer": optimizer,
      "eval": {"data": "data/glue/X", "splits": {"validation": len(LABELS)}, "batch_size": 32,
               "max_length": 128, "pad_to": "longest"},
      "config": config, "float32": {"validation": {"accuracy": float32}},
      "float32_predictions": per_example(predictions),
      "int8": {scheme: {"config": {"name": scheme}, "metrics": {"validation": {"accuracy": s}},
                        "vs_float32": {}, "predictions": per_example(p),
                        "sizes": {"int8_bytes": 6, "fp32_bytes": 10, "ratio": 0.6}}
               for scheme, (s, p) in int8.items()},
      "seconds": 1.0})


def _hand_made_int8(folder):
  """sst2 seed 1: Adam 80 -> int8 79 (per channel 80.5, PyTorch 78.5 from 80.25, with its
  predictions); SAM
  (rho 0.02) 79 -> 78.75, no torch.json; SAM's quantize run resumed under another revision."""
  _train(folder / "adam", "sst2", 1, "adam")
  _quantize(folder / "adam" / "int8", "sst2", 80.0,
            {"dynamic": (79.0, "01100111"), "dynamic-per-channel": (80.5, "01100110")})
  _write(folder / "adam" / "int8" / "torch.json", {
      "run": str(folder / "adam"), "task": "sst2", "examples": len(LABELS),
      "label_agreement": 0.875, "flatjax_int8_accuracy": 79.0, "torch_int8_accuracy": 78.5,
      "torch_float_accuracy": 80.25, "torch_int8_predictions": "01000111"})
  _train(folder / "sam", "sst2", 1, "sam", {"rho": 0.02}, revision="bbbbbbb222")
  _quantize(folder / "sam" / "int8", "sst2", 79.0,
            {"dynamic": (78.75, "11100110"), "dynamic-per-channel": (79.0, "01100110")},
            predictions="01100100", optimizer="sam", revision="ccccccc333")


def test_int8_rows_from_a_hand_made_run(tmp_path):
  _hand_made_int8(tmp_path)
  rows = collect.collect({"collect": "int8", "scale": "tiny"}, tmp_path)
  by = {(r["optimizer"], r["compression"]): r for r in rows}
  assert len(rows) == 2 * 3 + 1     # dense and 2 schemes each, Adam's PyTorch score
  assert {(r["task"], r["seed"], r["scale"], r["metric"]) for r in rows} == {
      ("sst2", 1, "tiny", "validation/accuracy")}
  dense = by[("adam", "none")]
  assert (dense["score"], dense["sparsity"], dense["rho"]) == (80.0, 0.0, None)
  assert (dense["labels"], dense["predictions"]) == (LABELS, LABELS)
  int8 = by[("adam", "int8")]
  assert (int8["score"], int8["base"], int8["sparsity"], int8["predictions"]) == (
      79.0, 80.0, None, "01100111")
  assert "labels" not in int8
  assert (by[("adam", "int8-per-channel")]["score"], by[("adam", "int8-per-channel")]["base"]) \
      == (80.5, 80.0)
  torch = by[("adam", "int8-torch")]
  assert (torch["score"], torch["base"], torch["predictions"]) == (78.5, 80.25, "01000111")
  assert ("sam", "int8-torch") not in by
  assert {r["rho"] for r in rows if r["optimizer"] == "sam"} == {0.02}
  assert by[("sam", "int8")]["base"] == 79.0 and by[("sam", "none")]["predictions"] == "01100100"
  assert {r["revision"] for r in rows if r["optimizer"] == "adam"} == {"aaaaaaa"}
  assert {r["revision"] for r in rows if r["optimizer"] == "sam"} == {"bbbbbbb+ccccccc"}


def test_a_quantize_run_without_predictions_and_a_torch_json_without_the_metric(tmp_path):
  _train(tmp_path / "adam", "rte", 0, "adam")
  _quantize(tmp_path / "adam" / "int8", "rte", 53.0, {"dynamic": (51.0, None)}, predictions=None)
  _write(tmp_path / "adam" / "int8" / "torch.json", {"label_agreement": 0.9})
  rows = collect.collect({"collect": "int8", "scale": "tiny"}, tmp_path)
  assert [(r["compression"], r["score"], r.get("base")) for r in rows] == [
      ("none", 53.0, None), ("int8", 51.0, 53.0)]
  assert not any("predictions" in r or "labels" in r for r in rows)
