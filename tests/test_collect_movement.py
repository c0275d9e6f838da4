"""experiments/collect_movement.py on a hand-made folder of ``flatjax train --pruning
movement`` runs with known numbers, laid out as the movement item's steps write it (RUN/adam,
RUN/sam), and the item's config: its steps write there, and its score claim reads the rows."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner
from flatjax import cli
from paper import claims

LABELS = "0110"
#: optimizer -> (best dev accuracy at the final sparsity, its predictions)
BEST = {"adam": (50.0, "1111"), "sam": (75.0, "0111")}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _movement_run(run: Path, optimizer: str, seed: int) -> None:
  """What ``flatjax train --pruning movement`` leaves in its folder: config.json, run.json,
  metrics.jsonl, results.json and the best model (at the final sparsity) with its dev
  predictions; the first evaluation, below the final sparsity, scores higher and is not the
  best."""
  metric = "validation/accuracy"
  score, predicted = BEST[optimizer]
  _write(run / "config.json", {"config": {
      "data": {"task": "sst2", "max_train_examples": 1000},
      "run": {"output": str(run), "seed": seed, "epochs": 3.0, "keep_best": True},
      "model": {"name": "minilm"},
      "optimizer": {"name": optimizer, "learning_rate": 1e-4, "settings": {}},
      "pruning": {"mask": None, "method": "movement", "sparsity": 0.6, "begin": 0.1,
                  "end": 0.7, "scope": "encoder"}}, "train_examples": 1000})
  _write(run / "run.json", {"flatjax": {"revision": "1234567abc", "dirty": True},
                            "resumed": []})
  _write(run / "metrics.jsonl", [
      {"step": 32, "kind": "eval", metric: 90.0, "sparsity": 0.47, "best": False},
      {"step": 96, "kind": "eval", metric: score, "sparsity": 0.6000004, "best": True}])
  _write(run / "results.json", {
      "task": "sst2", "optimizer": optimizer, "finished": True, "step": 96, "total_steps": 96,
      "main_metric": "accuracy", "best": {"step": 96, metric: score}, "final": {metric: score},
      "train_examples": 1000, "train_seconds": 300.0, "sparsity": 0.6000004})
  _write(run / "best" / "predictions.json",
         {"validation": {"labels": LABELS, "predictions": predicted}})


def test_movement_rows_from_a_hand_made_run(tmp_path):
  for optimizer in BEST:
    _movement_run(tmp_path / optimizer, optimizer, seed=1)
  (tmp_path / "notes").mkdir()        # a sub-folder without a run is not read
  rows = collect.collect({"collect": "movement", "scale": "tiny"}, tmp_path)
  assert [(r["optimizer"], r["rho"], r["compression"], r["sparsity"], r["score"]) for r in rows] \
      == [("adam", None, "movement", 0.6, 50.0), ("sam", 0.05, "movement", 0.6, 75.0)]
  assert {(r["task"], r["seed"], r["scale"], r["revision"], r["metric"]) for r in rows} == {
      ("sst2", 1, "tiny", "1234567-dirty", "validation/accuracy")}
  assert [(r["labels"], r["predictions"]) for r in rows] == [(LABELS, "1111"), (LABELS, "0111")]
  assert all("base" not in r for r in rows)


def test_the_movement_claim_compares_where_the_models_end(tmp_path):
  config = runner.load_config("movement")
  rows = []
  for seed in (0, 1):
    for optimizer in BEST:
      _movement_run(tmp_path / str(seed) / optimizer, optimizer, seed)
    rows += collect.collect(config, tmp_path / str(seed))
  [claim] = claims.claims("movement", rows, config["claims"])
  assert (claim.compression, claim.kind, claim.seeds) == ("movement", "score", [0, 1])
  assert (claim.reference_value, claim.candidate_value) == (50.0, 75.0)
  assert claim.interval is not None          # the rows carry labels and predictions


def test_the_movement_steps_write_where_the_collector_reads(tmp_path):
  config = runner.load_config("movement")
  run = tmp_path / "sst2-seed0"
  parsed = [cli.parse(runner.step_argv(step, "sst2", 0, tmp_path / "SST-2", run))
            for step in config["steps"]]
  assert [(c, v["optimizer"]["name"], v["run"]["output"]) for c, v in parsed] == [
      ("train", "adam", str(run / "adam")), ("train", "sam", str(run / "sam"))]
  for _, values in parsed:
    assert (values["pruning"]["method"], values["pruning"]["sparsity"]) == ("movement", 0.6)
    assert (values["run"]["epochs"], values["run"]["keep_best"]) == (3.0, True)
