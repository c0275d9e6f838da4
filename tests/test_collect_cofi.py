"""experiments/collect_cofi.py on a hand-made cofi run folder with known numbers, laid out as
the cofi item's steps write it (RUN/teacher-OPT by ``flatjax train``, RUN/cofi-OPT by
``flatjax cofi``), and the item's config: its steps write there, and its claims read the
rows."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner
from flatjax import cli
from paper import claims

LABELS = "0110"
METRIC = "validation/accuracy"
#: optimizer -> (teacher's dev accuracy, student's, sparsity the student's gates reached)
SCORES = {"adam": (84.5, 81.5, 0.83574), "sam": (84.75, 83.0, 0.8317)}
TEACHER_PREDICTIONS = {"adam": "0111", "sam": "0110"}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _teacher(run: Path, optimizer: str, seed: int) -> None:
  """What ``flatjax train`` leaves of a teacher that CoFi reads: config.json, results.json
  and the best model with its dev predictions."""
  settings = {"rho": 0.02} if optimizer == "sam" else {}
  _write(run / "config.json", {"config": {
      "data": {"task": "sst2", "max_train_examples": 4000, "max_length": 64},
      "run": {"output": str(run), "seed": seed, "epochs": 2.0, "keep_best": True},
      "model": {"name": "minilm"},
      "optimizer": {"name": optimizer, "learning_rate": 1e-4, "warmup_steps": 25,
                    "settings": settings},
      "pruning": {"mask": None, "method": None}}, "train_examples": 4000})
  _write(run / "results.json", {"task": "sst2", "optimizer": optimizer, "finished": True,
                                "best": {"step": 250, METRIC: SCORES[optimizer][0] + 0.1}})
  _write(run / "best" / "config.json", {"finetuning_task": "sst2"})
  _write(run / "best" / "predictions.json",
         {"validation": {"labels": LABELS, "predictions": TEACHER_PREDICTIONS[optimizer]}})


def _cofi(run: Path, teacher: Path, optimizer: str, seed: int) -> None:
  """What ``flatjax cofi`` leaves in its folder: cofi.json, run.json, metrics.jsonl,
  structure.json and results.json (the teacher's and the exported student's dev scores)."""
  teacher_score, pruned, reached = SCORES[optimizer]
  _write(run / "cofi.json", {
      "config": {"teacher": str(teacher), "task": None, "data": "SST-2", "student": "teacher",
                 "target_sparsity": 0.8, "pruning_epochs": 4.0, "finetune_epochs": 2.0,
                 "seed": seed, "max_train_examples": 4000, "max_length": 64},
      "task": "sst2", "teacher_model": str(teacher / "best"), "teacher_optimizer": optimizer,
      "student_source": str(teacher / "best"), "data": "SST-2"})
  _write(run / "run.json", {"flatjax": {"revision": "abcdef1234", "dirty": False},
                            "resumed": []})
  _write(run / "metrics.jsonl", [{"step": 750, "kind": "eval", METRIC: pruned,
                                  "sparsity": reached, "phase": "finetune"}])
  _write(run / "structure.json", {"hidden": [0, 1], "layers": []})
  _write(run / "results.json", {
      "task": "sst2", "teacher_optimizer": optimizer, "target_sparsity": 0.8,
      "sparsity": reached, "expected_sparsity": reached,
      "encoder_params": {"teacher": 10616832, "pruned": 1743840},
      "teacher": {METRIC: teacher_score}, "pruned": {METRIC: pruned}, "main_metric": METRIC,
      "best_step": 750, "total_steps": 750, "speedup": 5.0,
      "structure": {"hidden": 336, "heads": [9, 2], "neurons": [489, 159]}, "finished": True})


def _hand_made(folder: Path, seed: int) -> None:
  for optimizer in SCORES:
    _teacher(folder / f"teacher-{optimizer}", optimizer, seed)
    _cofi(folder / f"cofi-{optimizer}", folder / f"teacher-{optimizer}", optimizer, seed)


def test_cofi_rows_from_a_hand_made_run(tmp_path):
  _hand_made(tmp_path, seed=1)
  rows = collect.collect({"collect": "cofi", "scale": "tiny"}, tmp_path)
  by = {(r["optimizer"], r["compression"]): r for r in rows}
  assert len(rows) == 4           # teacher and student, per teacher optimizer
  assert {(r["task"], r["seed"], r["scale"], r["revision"], r["metric"], r["setting"])
          for r in rows} == {("sst2", 1, "tiny", "abcdef1", METRIC, "4k-target80")}
  adam, sam = by[("adam", "none")], by[("sam", "none")]
  assert (adam["rho"], adam["score"], adam["sparsity"]) == (None, 84.5, 0.0)
  assert (sam["rho"], sam["score"]) == (0.02, 84.75)    # the teacher run's radius
  assert (sam["labels"], sam["predictions"]) == (LABELS, "0110")
  student = by[("sam", "cofi")]
  assert (student["score"], student["base"], student["sparsity"]) == (83.0, 84.75, 0.8)
  assert student["sparsity_reached"] == 0.8317 and by[("adam", "cofi")]["base"] == 84.5
  assert "predictions" not in student         # a run made before cofi recorded them


def test_rows_take_the_predictions_the_cofi_run_recorded(tmp_path):
  _hand_made(tmp_path, seed=0)
  students = {"adam": "0100", "sam": "0110"}
  for optimizer, student in students.items():
    path = tmp_path / f"cofi-{optimizer}" / "results.json"
    results = json.loads(path.read_text())
    results["predictions"] = {
        "teacher": {"validation": {"labels": LABELS, "predictions": "1110"}},
        "pruned": {"validation": {"labels": LABELS, "predictions": student}}}
    _write(path, results)
  rows = collect.collect({"collect": "cofi", "scale": "tiny"}, tmp_path)
  by = {(r["optimizer"], r["compression"]): r for r in rows}
  assert (by[("adam", "none")]["labels"], by[("adam", "none")]["predictions"]) == (LABELS, "1110")
  assert [by[(o, "cofi")]["predictions"] for o in students] == ["0100", "0110"]


def test_a_teacher_out_of_reach_gives_rows_without_predictions(tmp_path):
  _hand_made(tmp_path, seed=0)
  for optimizer in SCORES:                      # a teacher run made elsewhere, or deleted
    (tmp_path / f"teacher-{optimizer}" / "config.json").unlink()
  rows = collect.collect({"collect": "cofi", "scale": "tiny"}, tmp_path)
  assert [(r["optimizer"], r["rho"], r["score"]) for r in rows if r["compression"] == "none"] \
      == [("adam", None, 84.5), ("sam", 0.05, 84.75)]
  assert all("predictions" not in r for r in rows)


def test_the_cofi_claim_compares_the_drops_of_one_setting(tmp_path):
  config = runner.load_config("cofi")
  rows = []
  for seed in (0, 1):
    _hand_made(tmp_path / str(seed), seed)
    rows += collect.collect(config, tmp_path / str(seed))
  [claim] = claims.claims("cofi", rows, config["claims"])
  assert (claim.compression, claim.kind, claim.seeds) == ("cofi", "drop", [0, 1])
  assert (claim.reference_value, claim.candidate_value) == (3.0, 1.75)
  assert claim.interval is None               # the students keep no predictions


def test_the_cofi_steps_write_where_the_collector_reads(tmp_path):
  config = runner.load_config("cofi")
  run = tmp_path / "sst2-seed0"
  parsed = [cli.parse(runner.step_argv(step, "sst2", 0, tmp_path / "SST-2", run))
            for step in config["steps"]]
  teachers = {v["optimizer"]["name"]: v["run"]["output"] for c, v in parsed if c == "train"}
  assert teachers == {"adam": str(run / "teacher-adam"), "sam": str(run / "teacher-sam")}
  students = [v for c, v in parsed if c == "cofi"]
  assert [(v["teacher"], v["output"]) for v in students] == [
      (teachers["adam"], str(run / "cofi-adam")), (teachers["sam"], str(run / "cofi-sam"))]
  for values in students:
    assert (values["target_sparsity"], values["max_train_examples"], values["seed"]) == (
        0.8, 4000, 0)
    assert (values["student"], values["gate_init"], values["reg_lr"]) == ("teacher", 3.0, 0.1)
  for _, values in parsed[:2]:
    assert (values["data"]["max_train_examples"], values["data"]["max_length"]) == (4000, 64)
    assert values["optimizer"]["warmup_steps"] == 25
