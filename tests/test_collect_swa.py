"""experiments/collect_swa.py on a hand-made swa run folder with known numbers, beside the
compare run it reads (runs/compare/TASK-seedSEED: Adam's and SAM's int8 scores), with the
files ``flatjax train --swa``, ``flatjax oneshot`` and ``flatjax quantize`` write; and the
claims the swa config asks of those rows.

The builders here serve tests/test_collect_variants.py too."""

from __future__ import annotations

import dataclasses

from experiments import collect, run as runner
from experiments.collect_swa import compare_run
from flatjax.recipes.finetune import TrainConfig
from paper import claims
from test_collect_int8 import LABELS, _quantize, _run_json, _train, _train_config, _write


def _compare(folder, task, seed, rho, int8, revision="ddddddd444"):
  """A finished ``flatjax compare`` folder, as far as the swa and variants items read it:
  ``compare.json`` and each optimizer's ``int8/quantize.json`` (``int8``: optimizer ->
  (float32, int8 score, int8 predictions))."""
  train = dataclasses.asdict(TrainConfig.from_dict({
      "data": {"task": task, "max_train_examples": 1000}, "run": {"output": str(folder),
                                                                  "seed": seed},
      "model": {"name": "minilm"}, "optimizer": {"settings": {"rho": rho}}}))
  settings = {"train": train, "optimizers": list(int8), "sparsity": None, "imp_rounds": 2,
              "oneshot_step": 0.1, "scope": "encoder", "target_sparsity": 0.6}
  _write(folder / "compare.json", settings)
  _run_json(folder, settings, revision)
  for optimizer, (base, score, predictions) in int8.items():
    _quantize(folder / optimizer / "int8", task, base, {"dynamic": (score, predictions)},
              optimizer=optimizer, revision=revision)


def _oneshot(folder, task, curves, models, revision="aaaaaaa111", resumed=()):
  """``flatjax oneshot``'s output folder: ``curves`` maps each label to its (sparsity,
  score, predictions) points, ``models`` each label to its model folder."""
  settings = {"base": _train_config(task, 0, ""), "models": models, "step": 0.1,
              "maximum": 0.6, "scope": "encoder", "granularity": "global",
              "method": "magnitude"}
  _run_json(folder, settings, revision, resumed=resumed)
  _write(folder / "oneshot.jsonl", [
      {"target_sparsity": s, "sparsity": s - 1e-8, "metric": score,
       "metric_name": "validation/accuracy", "scores": {"validation/accuracy": score},
       "fully_pruned": [],
       "predictions": {"validation": {"labels": LABELS, "predictions": p}} if p else {},
       "label": label, "model": models[label]}
      for label, points in curves.items() for s, score, p in points])


COMPARED = {"adam": [(0.0, 80.0, LABELS), (0.3, 78.0, "01100100"), (0.6, 76.0, "01100000")],
            "sam": [(0.0, 79.0, "01100100"), (0.3, 78.5, "01100100"), (0.6, 77.0, "01000100")]}


def _hand_made_swa(runs):
  """runs/swa/sst2-seed1 beside runs/compare/sst2-seed1 (SAM at rho 0.02). Dense -> one-shot
  60% -> int8: Adam 80 -> 76, int8 80 -> 79; SAM 79 -> 77, 79 -> 78.75; SWA 79.5 -> 77.5,
  79.5 -> 78.5. The one-shot run was resumed under a dirty revision."""
  compare, run = runs / "compare" / "sst2-seed1", runs / "swa" / "sst2-seed1"
  _compare(compare, "sst2", 1, 0.02, {"adam": (80.0, 79.0, "01100111"),
                                      "sam": (79.0, 78.75, "11100100")})
  _train(run, "sst2", 1, "adam", swa="0.5:8")
  models = {o: str(compare / o / "imp" / "round_00" / "best") for o in COMPARED}
  _oneshot(run / "oneshot", "sst2", {
      **COMPARED,
      "swa": [(0.0, 79.5, "01100010"), (0.3, 79.0, "01100010"), (0.6, 77.5, "01000010")]},
      {**models, "swa": str(run / "swa")}, resumed=["eeeeeee555"])
  _quantize(run / "int8", "sst2", 79.5, {"dynamic": (78.5, "01000010")}, "01100010",
            optimizer=None)
  return run


def test_swa_rows_from_a_hand_made_run(tmp_path):
  run = _hand_made_swa(tmp_path)
  rows = collect.collect({"collect": "swa", "scale": "tiny"}, run)
  by = {(r["optimizer"], r.get("setting"), r["compression"], r["sparsity"]): r for r in rows}
  assert len(rows) == 3 * 4    # dense, one curve point, one-shot 60% and int8 each
  assert {(r["task"], r["seed"], r["scale"]) for r in rows} == {("sst2", 1, "tiny")}
  swa = by[("adam", "swa", "none", 0.0)]
  assert (swa["score"], swa["rho"], swa["labels"], swa["predictions"]) == (
      79.5, None, LABELS, "01100010")
  end = by[("adam", "swa", "oneshot", 0.6)]
  assert (end["score"], end["base"], end["predictions"]) == (77.5, 79.5, "01000010")
  point = by[("adam", "swa", "oneshot", 0.3)]
  assert point["score"] == 79.0 and "base" not in point and "predictions" not in point
  int8 = by[("adam", "swa", "int8", None)]
  assert (int8["score"], int8["base"], int8["predictions"]) == (78.5, 79.5, "01000010")
  adam = by[("adam", None, "int8", None)]
  assert (adam["score"], adam["base"], adam["predictions"]) == (79.0, 80.0, "01100111")
  sam = by[("sam", None, "oneshot", 0.6)]
  assert (sam["score"], sam["base"], sam["rho"]) == (77.0, 79.0, 0.02)
  assert by[("sam", None, "int8", None)]["base"] == 79.0
  assert by[("adam", None, "none", 0.0)]["labels"] == LABELS
  assert {r["revision"] for r in rows if r.get("setting")} == {"aaaaaaa+eeeeeee-dirty"}
  assert {r["revision"] for r in rows if not r.get("setting")} == {
      "ddddddd+aaaaaaa+eeeeeee-dirty"}


def test_the_swa_claims_from_those_rows(tmp_path):
  config = runner.load_config("swa")
  rows = collect.merge([], collect.collect(config, _hand_made_swa(tmp_path)))
  found = {(c.reference, c.candidate, c.compression): c
           for c in claims.claims("swa", rows, config["claims"])}
  pairs = (("adam", "adam (swa)"), ("adam (swa)", "sam ρ 0.02"))
  assert set(found) == {(r, c, k) for r, c in pairs for k in ("oneshot", "int8")}
  drops = {k: (c.reference_value, c.candidate_value) for k, c in found.items()}
  assert drops[("adam", "adam (swa)", "oneshot")] == (4.0, 2.0)
  assert drops[("adam (swa)", "sam ρ 0.02", "int8")] == (1.0, 0.25)
  assert all(c.interval is not None for c in found.values())


def test_the_compare_run_is_the_same_scales():
  assert compare_run({"scale_name": "cpu"}, runner.ROOT / "runs" / "swa" / "sst2-seed0") == (
      runner.ROOT / "runs" / "compare" / "sst2-seed0")
  assert compare_run({"scale_name": "full"}, runner.ROOT / "runs" / "swa-full" / "rte-seed2") \
      == runner.ROOT / "runs" / "compare-full" / "rte-seed2"
