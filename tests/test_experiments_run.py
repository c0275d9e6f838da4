"""experiments.run, collect and summary: a step's command line, rows from a hand-made compare
folder with known numbers, merging and checking rows, and one tiny item run end to end
(recorded, then resumed and checked against what it recorded)."""

from __future__ import annotations

import json
import subprocess

import pytest


from conftest import write_sst2
from experiments import collect, run as runner

STEP = ["compare", "--task", "{task}", "--data", "{data}", "--seed", "{seed}",
        "--output", "{run}"]


def test_cpu_subset_is_compares_preset_for_the_task():
  assert runner.cpu_subset("mrpc") == ["--data.max_length=64", "--data.max_train_examples=2560"]
  assert runner.cpu_subset("rte") == ["--data.max_length=128", "--data.max_train_examples=640"]
  step = ["train", "{cpu_subset}", "--task", "{task}"]
  assert runner.step_argv(step, "sst2", 0, None, runner.Path("r/x"))[1:3] == [
      "--data.max_length=128", "--data.max_train_examples=1000"]


def test_imp_steps_resume_when_any_optimizer_started_and_skip_when_all_finished(tmp_path,
                                                                               monkeypatch):
  monkeypatch.setattr(runner, "ROOT", tmp_path)
  step = ["imp", "--output", "{run}"]
  run = tmp_path / "runs" / "std" / "sst2-seed0"
  argv = lambda: runner.step_argv(step, "sst2", 0, None, run)
  assert argv()[-1] != "--resume" and not runner.finished(argv())
  for opt in ("adam", "sam"):
    (run / opt).mkdir(parents=True)
  (run / "adam" / "imp.json").write_text("{}")
  (run / "adam" / "ticket.json").write_text("{}")
  assert argv()[-1] == "--resume" and not runner.finished(argv())
  (run / "sam" / "ticket.json").write_text("{}")
  assert runner.finished(argv())


def test_step_argv_fills_fields_and_resumes_a_started_run(tmp_path):
  run = tmp_path / "sst2-seed1"
  argv = runner.step_argv(STEP, "sst2", 1, tmp_path / "SST-2", run)
  assert argv == ["compare", "--task", "sst2", "--data", str(tmp_path / "SST-2"), "--seed", "1",
                  "--output", str(run)]
  assert runner.step_argv(STEP, "sst2", 1, None, run)[:4] == ["compare", "--task", "sst2",
                                                              "--seed"]   # the hub
  run.mkdir()
  (run / "compare.json").write_text("{}")
  assert runner.step_argv(STEP, "sst2", 1, None, run)[-1] == "--resume"


def test_unknown_item_and_missing_data_are_one_line(tmp_path, capsys):
  assert runner.main(["no_such_item"]) == 2
  err = capsys.readouterr().err
  assert "no experiment 'no_such_item'; known: " in err and ", compare, " in err
  assert runner.main(["compare", "--tasks", "sst2", "--data-root", str(tmp_path)]) == 2
  assert f"no data for sst2 at {tmp_path}/glue/SST-2" in capsys.readouterr().err


@pytest.mark.parametrize("text, says", [("steps: [unclosed", "not YAML"),
                                         ("title: t\nclaim: c\ntasks: [sst2]\nseeds: [0]\n"
                                          "scale: s\nsteps: []\n", "no collect"),
                                         ("- a list", "no title, claim"),
                                         ("title: t\nclaim: c\ntasks: [sst2]\nseeds: [0]\n"
                                          "scale: s\nsteps: []\ncollect: compare\n"
                                          "task_steps: {qnli: []}\n",
                                          "task_steps for qnli, not among its tasks")])
def test_a_bad_config_is_one_line(tmp_path, capsys, text, says):
  config = tmp_path / "bad.yaml"
  config.write_text(text)
  assert runner.main([str(config)]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and says in err and str(config) in err


def _write(path, value):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _hand_made_compare(folder):
  full = {"adam": 80.0, "sam": 79.0}
  results = {"task": "rte", "sparsity": 0.6, "optimizers": {
      o: {"metric": "validation/accuracy", "full": full[o], "imp": full[o] - 2,
          "imp_sparsity": 0.6, "oneshot": full[o] - 5, "oneshot_sparsity": 0.6,
          "oneshot_dense": full[o] + 0.5, "int8": full[o] - 1, "int8_float32": full[o] + 0.25,
          "int8_file_ratio": 0.6,
          "predictions": {"labels": "0110", "full": "0111", "imp": "0100", "oneshot": "1111",
                          "int8": "0110", "int8_float32": "0111"} if o == "sam" else None}
      for o in ("adam", "sam")}}
  _write(folder / "results.json", results)
  _write(folder / "compare.json", {"train": {"run": {"seed": 1},
                                             "optimizer": {"settings": {"rho": 0.02}}}})
  _write(folder / "run.json", {"flatjax": {"revision": "abcdef1234", "dirty": False},
                               "resumed": [{"flatjax": {"revision": "1234567890", "dirty": True}}]})
  for o in ("adam", "sam"):
    _write(folder / o / "imp" / "rounds.jsonl",
           [{"target_sparsity": s, "metric": m} for s, m in ((0.0, 80), (0.3, 70), (0.6, 60))])
    _write(folder / o / "oneshot" / "oneshot.jsonl",
           [{"target_sparsity": s, "metric": m} for s, m in ((0.0, 80), (0.5, 65), (0.6, 60))])


def test_compare_rows_from_a_hand_made_run(tmp_path):
  _hand_made_compare(tmp_path)
  rows = collect.collect({"collect": "compare", "scale": "tiny"}, tmp_path)
  by = {(r["optimizer"], r["compression"], r["sparsity"]): r for r in rows}
  assert len(rows) == 2 * (4 + 2)   # dense, 3 compressions and 2 curve points each
  assert {r["revision"] for r in rows} == {"abcdef1+1234567-dirty"}
  assert {(r["task"], r["seed"], r["scale"]) for r in rows} == {("rte", 1, "tiny")}
  assert by[("adam", "none", 0.0)]["score"] == 80.0 and by[("adam", "none", 0.0)]["rho"] is None
  sam = by[("sam", "imp", 0.6)]
  assert (sam["rho"], sam["score"], sam["base"], sam["predictions"]) == (0.02, 77.0, 79.0, "0100")
  assert by[("sam", "none", 0.0)]["labels"] == "0110"
  assert by[("sam", "oneshot", 0.6)]["base"] == 79.5 and by[("sam", "int8", None)]["base"] == 79.25
  assert "predictions" not in by[("adam", "int8", None)]
  assert by[("adam", "imp", 0.3)]["score"] == 70 and by[("adam", "oneshot", 0.5)]["score"] == 65


def test_merge_replaces_a_task_seed_and_setting_and_check_names_differences():
  old = [{"task": "rte", "seed": 0, "compression": "none", "score": 1.0},
         {"task": "rte", "seed": 1, "compression": "none", "score": 2.0}]
  new = [{"task": "rte", "seed": 1, "compression": "none", "score": 3.0}]
  assert [r["score"] for r in collect.merge(old, new)] == [1.0, 3.0]
  # A setting the rerun did not make stays.
  earlier = {"task": "rte", "seed": 1, "compression": "none", "score": 4.0, "setting": "2k"}
  assert [r["score"] for r in collect.merge([*old, earlier], new)] == [1.0, 3.0, 4.0]
  assert runner.check(new, [dict(new[0])]) == ([], [])
  assert "score 3.0000, committed 2.0000" in runner.check(new, old)[0][0]
  assert "no committed row" in runner.check(new, [])[0][0]
  with_predictions = [{**new[0], "predictions": "01"}]
  assert "other predictions" in runner.check(with_predictions,
                                             [{**new[0], "predictions": "11"}])[0][0]
  # An int8 row made on another CPU instruction set may differ: a note, not a failure;
  # on the same machine it must be equal.
  int8 = {"task": "rte", "seed": 1, "compression": "int8", "score": 3.0, "machine": "cpu: A, avx2"}
  problems, notes = runner.check([int8], [{**int8, "score": 2.5, "machine": "cpu: B, avx512f"}])
  assert problems == [] and "committed from cpu: B, avx512f, this is cpu: A, avx2" in notes[0]
  unrecorded = {k: v for k, v in int8.items() if k != "machine"} | {"score": 2.5}
  problems, notes = runner.check([int8], [unrecorded])
  assert problems == [] and "score 3.0000, committed 2.5000" in notes[0]
  assert "an unrecorded machine" in notes[0]
  assert runner.check([int8], [{**int8, "score": 2.5}])[0]          # the same machine
  for scheme in ("int8-per-channel", "int8-torch"):                  # every int8 scheme
    other = {**int8, "compression": scheme}
    assert runner.check([other], [{**other, "score": 2.5, "machine": "cpu: B"}])[0] == []
  fp32 = {**int8, "compression": "none"}                             # float32 must be equal
  assert runner.check([fp32], [{**fp32, "score": 2.5, "machine": "cpu: B"}])[0]


def test_drop_resume_state_keeps_an_unfinished_runs_checkpoints(tmp_path):
  done, going = tmp_path / "round_00", tmp_path / "round_01"
  for run in (done, going):
    (run / "checkpoints" / "40").mkdir(parents=True)
    (run / "checkpoints" / "40" / "state").write_bytes(b"x" * 1000)
    (run / "best").mkdir()
  (done / "results.json").write_text("{}")
  assert runner.drop_resume_state(tmp_path) == 1000
  assert not (done / "checkpoints").exists() and (done / "best").is_dir()
  assert (going / "checkpoints" / "40" / "state").is_file()
  assert runner.drop_resume_state(tmp_path) == 0


def test_a_tiny_item_runs_records_resumes_and_checks(tmp_path, tiny_model_dir):
  write_sst2(tmp_path / "data" / "glue" / "SST-2", n_train=16, n_dev=8)
  config = tmp_path / "tiny.yaml"
  config.write_text(json.dumps({
      "title": "tiny", "claim": "none", "collect": "compare", "tasks": ["sst2"], "seeds": [0],
      "scale": "a tiny BERT", "steps": [STEP + [
          "--model", str(tiny_model_dir), "--epochs", "1", "--batch-size", "8",
          "--eval-batch-size", "8", "--max-length", "32", "--sparsity", "0.5",
          "--imp-rounds", "1", "--oneshot-step", "0.5", "--quant-batch-size", "8",
          "--no-progress"]]}))
  argv = [str(config), "--runs", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"),
          "--results", str(tmp_path / "results")]
  assert runner.main(argv + ["--record", "--keep-checkpoints"]) == 0
  finished = [p.parent for p in (tmp_path / "runs").rglob("results.json")
              if (p.parent / "config.json").is_file()]
  assert finished and any((f / "checkpoints").exists() for f in finished)
  assert all((f / "final").is_dir() for f in finished)
  rows = collect.read_rows(tmp_path / "results" / "tiny" / "results.jsonl")
  head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                        cwd=runner.ROOT).stdout[:7]
  assert rows and all(r["revision"].startswith(head) for r in rows)
  results = json.loads((tmp_path / "runs" / "sst2-seed0" / "results.json").read_text())
  assert {(r["optimizer"], r["score"]) for r in rows if r["compression"] == "int8"} == {
      (o, v["int8"]) for o, v in results["optimizers"].items()}
  readme = (tmp_path / "results" / "tiny" / "README.md").read_text()
  assert "python -m experiments.run tiny --record" in readme
  assert (tmp_path / "results" / "tiny" / "tiny.png").read_bytes()[:4] == b"\x89PNG"
  assert runner.main(argv + ["--check"]) == 0          # resumed: nothing redone, same rows
  # The steps finished earlier lose their resume checkpoints now; their models stay.
  assert not any((f / "checkpoints").exists() for f in finished)
  assert all((f / "final").is_dir() for f in finished)
  rows[0]["score"] += 1
  _write(tmp_path / "results" / "tiny" / "results.jsonl", rows)
  assert runner.main(argv + ["--check"]) == 1


def test_an_item_with_the_int8_vs_torch_script_step(tmp_path, tiny_model_dir):
  """A config step naming an experiment script (int8-vs-torch) runs it into the run folder
  and is skipped once finished; PyTorch's float32 model of the same weights scores what
  flatjax's float32 did (two implementations), and its int8 row holds its predictions."""
  write_sst2(tmp_path / "data" / "glue" / "SST-2", n_train=16, n_dev=8)
  config = tmp_path / "tiny_int8.yaml"
  config.write_text(json.dumps({
      "title": "tiny", "claim": "none", "collect": "int8", "tasks": ["sst2"], "seeds": [0],
      "scale": "a tiny BERT", "steps": [
          ["train", "--task", "{task}", "--data", "{data}", "--seed", "{seed}", "--model",
           str(tiny_model_dir), "--epochs", "1", "--batch-size", "8", "--max-length", "32",
           "--no-progress", "--output", "{run}/adam"],
          ["quantize", "{run}/adam", "--scheme", "dynamic", "--batch-size", "8",
           "--no-save", "--output", "{run}/adam/int8"],
          ["int8-vs-torch", "{run}/adam", "--batch-size", "8", "--output", "{run}/adam/int8"]]}))
  argv = [str(config), "--runs", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"),
          "--results", str(tmp_path / "results")]
  assert runner.main(argv + ["--record"]) == 0
  found = json.loads((tmp_path / "runs" / "sst2-seed0" / "adam" / "int8" / "torch.json")
                     .read_text())
  rows = {r["compression"]: r
          for r in collect.read_rows(tmp_path / "results" / "tiny_int8" / "results.jsonl")}
  assert set(rows) == {"none", "int8", "int8-torch"}
  assert found["torch_float_accuracy"] == pytest.approx(rows["none"]["score"])
  assert found["torch_float_predictions"] == rows["none"]["predictions"]
  assert rows["int8-torch"]["predictions"] == found["torch_int8_predictions"]
  assert len(found["torch_int8_predictions"]) == 8
  assert runner.main(argv + ["--check"]) == 0          # every step finished: nothing redone
