"""The fit driver: run folder, best checkpoint, and bitwise-exact resumption."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import check_run_json, write_sst2
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.recipes.finetune import TrainConfig, fit


def _config(source, out, tiny_model_dir, **sections):
  """The test run's config; ``sections``: fields changed, by section."""
  base = {"data": {"task": "sst2", "source": str(source), "max_length": 32},
          "model": {"name": str(tiny_model_dir)}, "optimizer": {"learning_rate": 1e-3},
          "run": {"output": str(out), "epochs": 2, "batch_size": 8, "seed": 3, "log_every": 2,
                  "save_every": 3, "progress": False}}
  for name, fields in sections.items():
    base[name] = {**base.get(name, {}), **fields}
  return TrainConfig.from_dict(base)


def _rows(run):
  return [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]


def test_interrupted_and_resumed_run_is_bitwise_equal(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=44)  # 6 steps/epoch, last batch short
  full = fit(_config(data, tmp_path / "full", tiny_model_dir))
  assert full["finished"] and full["step"] == 12

  part = fit(_config(data, tmp_path / "resumed", tiny_model_dir, run={"stop_after_steps": 5}))
  assert not part["finished"] and part["step"] == 5
  assert not (tmp_path / "resumed" / "final").exists()
  resumed = fit(_config(data, tmp_path / "resumed", tiny_model_dir), resume=True)
  assert resumed["finished"] and resumed["step"] == 12

  a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
  b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # The same evaluations, and the same losses at the steps both runs logged (the
  # interrupted one also logged its partial window at step 5, the other one at 6).
  strip = lambda rows: [(r["step"], r["kind"], r.get("loss"), r.get("validation/accuracy"))
                        for r in rows if r["step"] not in (5, 6) or r["kind"] == "eval"]
  assert strip(_rows(tmp_path / "full")) == strip(_rows(tmp_path / "resumed"))
  assert len(strip(_rows(tmp_path / "full"))) == 7  # train rows 2 4 8 10 12, evals 6 12
  assert full["best"] == resumed["best"]
  # run.json: written when the run began, and each continuation added to it.
  check_run_json(tmp_path / "full", {"optimizer.learning_rate": 1e-3, "run.seed": 3}, {
      "data": data, "eval_data": None, "model": tiny_model_dir, "mask": None})
  check_run_json(tmp_path / "resumed", {"run.stop_after_steps": 5}, {
      "data": data, "eval_data": None, "model": tiny_model_dir, "mask": None}, resumed=1)


def test_run_folder_contents_and_best_checkpoint(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  out = tmp_path / "run"
  results = fit(_config(data, out, tiny_model_dir, run={"epochs": 3, "save_every": None}))
  for name in ("run.json", "config.json", "metrics.jsonl", "results.json",
               "best/model.safetensors", "final/config.json", "checkpoints"):
    assert (out / name).exists(), name
  evals = [r for r in _rows(out) if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [5, 10, 15]  # 40 examples / 8 = 5 steps per epoch
  best = max(evals, key=lambda r: r["validation/accuracy"])  # first max wins ties
  assert results["best"]["validation/accuracy"] == best["validation/accuracy"]
  assert results["best"]["step"] == best["step"]
  saved = json.loads((out / "config.json").read_text())
  assert saved["config"]["optimizer"]["learning_rate"] == 1e-3
  assert saved["train_examples"] == 40
  # accuracy is a percentage of the 12 dev sentences
  assert all(round(r["validation/accuracy"] * 12 / 100, 6).is_integer() for r in evals)


def test_existing_run_is_not_overwritten_and_resume_needs_a_run(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  out = tmp_path / "run"
  fit(_config(data, out, tiny_model_dir, run={"epochs": 1}))
  with pytest.raises(FlatjaxInputError, match="already holds a run"):
    fit(_config(data, out, tiny_model_dir, run={"epochs": 1}))
  with pytest.raises(FlatjaxInputError, match=r"different settings \(optimizer.learning_rate\)"):
    fit(_config(data, out, tiny_model_dir, run={"epochs": 1},
                optimizer={"learning_rate": 5e-4}), resume=True)
  with pytest.raises(FlatjaxInputError, match="nothing to resume"):
    fit(_config(data, tmp_path / "fresh", tiny_model_dir), resume=True)
  assert not (tmp_path / "fresh").exists()


def _jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_mnli_evaluates_matched_and_mismatched(tmp_path, tiny_model_dir):
  rng = np.random.default_rng(0)
  words = "a man the dog sits runs is not here there walks".split()
  sent = lambda: " ".join(rng.choice(words, size=5))
  folder = tmp_path / "mnli"
  folder.mkdir()
  for split, n in [("train", 16), ("validation_matched", 6), ("validation_mismatched", 10)]:
    _jsonl(folder / f"{split}.jsonl", [{"premise": sent(), "hypothesis": sent(),
                                         "label": int(rng.integers(0, 3)), "idx": i}
                                        for i in range(n)])
  results = fit(_config(folder, tmp_path / "run", tiny_model_dir,
                        data={"task": "mnli", "pad_to": "max_length"}, run={"epochs": 1}))
  evals = [r for r in _rows(tmp_path / "run") if r["kind"] == "eval"]
  assert len(evals) == 1
  # percentages of 6 and 10 examples: the two splits really were scored separately
  assert round(evals[0]["validation_matched/accuracy"] * 6 / 100, 6).is_integer()
  assert round(evals[0]["validation_mismatched/accuracy"] * 10 / 100, 6).is_integer()
  assert results["main_metric"] == "accuracy"
  assert "validation_matched/accuracy" in results["best"]


def test_stsb_regression_reports_pearson_and_spearman(tmp_path, tiny_model_dir):
  rng = np.random.default_rng(1)
  folder = tmp_path / "stsb"
  folder.mkdir()
  for split, n in [("train", 16), ("validation", 8)]:
    _jsonl(folder / f"{split}.jsonl", [
        {"sentence1": "a cat sat", "sentence2": "the cat is sitting " * int(rng.integers(1, 3)),
         "label": float(rng.uniform(0, 5)), "idx": i} for i in range(n)])
  results = fit(_config(folder, tmp_path / "run", tiny_model_dir,
                        data={"task": "stsb", "pad_to": "max_length"}, run={"epochs": 1}))
  final = results["final"]
  assert set(final) == {"validation/pearson", "validation/spearman"}
  assert all(-100.0 <= v <= 100.0 for v in final.values())


def test_squad_trains_on_windows_and_scores_answers(tmp_path, tiny_model_dir):
  context = ("The Eiffel Tower is in Paris . It was built in 1889 by Gustave Eiffel . "
             "Many tourists visit it every year .")
  qas = [("Where is the Eiffel Tower?", "Paris"), ("When was it built?", "1889"),
         ("Who built it?", "Gustave Eiffel"), ("Who visits it?", "Many tourists")]
  data = {"version": "1.1", "data": [{"title": "Eiffel", "paragraphs": [{
      "context": context,
      "qas": [{"id": f"q{i}", "question": q,
               "answers": [{"text": a, "answer_start": context.index(a)}]}
              for i, (q, a) in enumerate(qas)]}]}]}
  folder = tmp_path / "squad"
  folder.mkdir()
  for name in ("train.json", "dev.json"):
    (folder / name).write_text(json.dumps(data))
  results = fit(_config(folder, tmp_path / "run", tiny_model_dir,
                        data={"task": "squad", "max_length": 32, "doc_stride": 8},
                        run={"epochs": 1, "batch_size": 2}))
  # 4 questions in windows of 32 tokens with stride 8: more windows than questions.
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["train_examples"] == 4
  assert results["step"] > 2
  final = results["final"]
  assert set(final) == {"validation/exact_match", "validation/f1"}
  assert final["validation/exact_match"] in (0.0, 25.0, 50.0, 75.0, 100.0)
  # The best model keeps each question's F1, whose mean is its dev F1.
  kept = json.loads((tmp_path / "run" / "best" / "predictions.json").read_text())["validation"]
  assert kept["labels"] is None and len(kept["predictions"]) == 4
  assert np.mean(kept["predictions"]) == pytest.approx(results["best"]["validation/f1"],
                                                       abs=1e-4)


def test_sam_run_logs_perturbed_loss_and_resumes_bitwise(tmp_path, tiny_model_dir):
  # looksam carries a param-sized buffer and a step counter in its state: the
  # resumed run must restore both to end bitwise equal.
  data = write_sst2(tmp_path / "sst2", n_train=44)
  kw = dict(optimizer={"name": "looksam", "settings": {"k": 2.0, "rho": 0.05}})
  full = fit(_config(data, tmp_path / "full", tiny_model_dir, **kw))
  fit(_config(data, tmp_path / "resumed", tiny_model_dir, **kw, run={"stop_after_steps": 5}))
  fit(_config(data, tmp_path / "resumed", tiny_model_dir, **kw), resume=True)
  a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
  b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  train_rows = [r for r in _rows(tmp_path / "full") if r["kind"] == "train"]
  assert all(np.isfinite(r["perturbed_loss"]) for r in train_rows)
  # one step per SAM step: the schedule and the step count are the optimizer's own
  assert full["step"] == 12 and train_rows[-1]["step"] == 12


def test_swa_run_evaluates_and_saves_the_average(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=44)  # 6 steps/epoch
  results = fit(_config(data, tmp_path / "run", tiny_model_dir, run={"epochs": 4},
                        optimizer={"swa": "paper"}))
  # epochs 3 and 4 (the second half) end at steps 18 and 24
  assert results["swa"]["swa_count"] == 2
  assert 0.0 <= results["swa"]["validation/accuracy"] <= 100.0
  swa = load_file(str(tmp_path / "run" / "swa" / "model.safetensors"))
  final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
  assert swa.keys() == final.keys()
  assert any(not np.array_equal(swa[k], final[k]) for k in swa)
  rows = [r for r in _rows(tmp_path / "run") if r.get("swa")]
  assert len(rows) == 1 and rows[0]["swa_count"] == 2


def test_bad_optimizer_settings_are_input_errors(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  with pytest.raises(FlatjaxInputError, match="has no setting k"):
    fit(_config(data, tmp_path / "a", tiny_model_dir,
                optimizer={"name": "sam", "settings": {"k": 5.0}}))
  with pytest.raises(FlatjaxInputError, match="swa"):
    fit(_config(data, tmp_path / "b", tiny_model_dir, optimizer={"swa": "later"}))
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_run_under_a_mask_file_keeps_pruned_weights_zero_and_saves_the_mask(tmp_path,
                                                                         tiny_model_dir):
  import jax
  from flatjax.models import pretrained
  from flatjax.sparsity import masks
  params = pretrained.from_pretrained(tiny_model_dir, get_task("sst2"), seed=3).params
  mask = masks.magnitude_mask(params, 0.4)
  masks.save_mask(tmp_path / "m.safetensors", mask)
  data = write_sst2(tmp_path / "sst2", n_train=16)
  results = fit(_config(data, tmp_path / "run", tiny_model_dir, run={"epochs": 1},
                        pruning={"mask": str(tmp_path / "m.safetensors")}))
  assert results["sparsity"] == pytest.approx(0.4, abs=1e-4)
  final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
  keep = np.asarray(mask["bert"]["encoder"]["layer"]["1"]["intermediate"]["dense"]["kernel"])
  w = final["bert.encoder.layer.1.intermediate.dense.weight"].T
  assert (w[~keep] == 0).all() and (w[keep] != 0).all()
  for folder in ("run", "run/final", "run/best"):
    saved = masks.load_mask(tmp_path / folder, params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved),
                                                     jax.tree.leaves(mask)))
  with pytest.raises(FlatjaxInputError, match="does not exist"):
    fit(_config(data, tmp_path / "other", tiny_model_dir, pruning={"mask": str(tmp_path / "nope")}))


def test_movement_pruning_run_reaches_its_sparsity_and_resumes_bitwise(tmp_path,
                                                                       tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=48)   # 6 steps/epoch, 12 steps
  kw = dict(pruning={"method": "movement", "sparsity": 0.5, "begin": 0.25, "end": 0.5,
                     "every": 2}, optimizer={"name": "sam"})
  every = {"eval_every": 3}
  full = fit(_config(data, tmp_path / "full", tiny_model_dir, **kw, run=every))
  fit(_config(data, tmp_path / "resumed", tiny_model_dir, **kw,
              run={**every, "stop_after_steps": 4}))
  resumed = fit(_config(data, tmp_path / "resumed", tiny_model_dir, **kw, run=every),
                resume=True)
  assert full["sparsity"] == pytest.approx(0.5, abs=1e-3)   # per tensor: round(s*n) each
  a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
  b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # Sparsity logged on the schedule: 0 before step 3, 0.5 from step 6 (pruning_end * 12).
  rows = _rows(tmp_path / "full")
  sparsity = {r["step"]: r["sparsity"] for r in rows if r["kind"] == "train"}
  assert sparsity[2] == 0.0 and sparsity[12] == pytest.approx(0.5)
  # "best" only counts models at the final sparsity: the first eval (step 3) is not one.
  evals = {r["step"]: r for r in rows if r["kind"] == "eval"}
  assert sorted(evals) == [3, 6, 9, 12] and evals[3]["best"] is False
  assert full["best"]["step"] in (6, 9, 12)
  assert full == resumed | {"train_seconds": full["train_seconds"]}


def test_validate_checks_task_and_swa_before_anything_loads(tmp_path):
  # IMP and ticket drivers validate every config up front, before their first run.
  with pytest.raises(FlatjaxInputError, match="unknown task"):
    TrainConfig.from_dict({"data": {"task": "glue9"}, "run": {"output": str(tmp_path)}}).validate()
  with pytest.raises(FlatjaxInputError, match="later"):
    TrainConfig.from_dict({"data": {"task": "sst2"}, "run": {"output": str(tmp_path)},
                           "optimizer": {"swa": "later"}}).validate()


def test_resuming_on_changed_data_is_refused(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=16)
  out = tmp_path / "run"
  assert not fit(_config(data, out, tiny_model_dir, run={"stop_after_steps": 1}))["finished"]
  rows = (data / "train.tsv").read_text()
  (data / "train.tsv").write_text(rows + "an extra sentence\t1\n")
  with pytest.raises(FlatjaxInputError, match=r"the files under data \(.*sst2\) changed"):
    fit(_config(data, out, tiny_model_dir), resume=True)
  (data / "train.tsv").write_text(rows)   # the data it began with: the run goes on
  assert fit(_config(data, out, tiny_model_dir), resume=True)["finished"]


def test_a_folder_left_by_a_run_killed_before_its_config_takes_a_new_run(tmp_path,
                                                                          tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=8)
  out = tmp_path / "run"
  out.mkdir()
  (out / "run.json").write_text("{}")              # written before config.json, then killed
  (out / "config.json.tmp").write_text('{"conf')
  assert fit(_config(data, out, tiny_model_dir, run={"epochs": 1}))["finished"]
  assert json.loads((out / "run.json").read_text())["config"]["data"]["task"] == "sst2"
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  with pytest.raises(FlatjaxInputError, match="not empty and holds no flatjax run"):
    fit(_config(data, other, tiny_model_dir))


def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before(tmp_path, tiny_model_dir,
                                                                  capsys):
  data = write_sst2(tmp_path / "sst2", n_train=44)  # 6 steps/epoch; checkpoints every 3
  full = fit(_config(data, tmp_path / "full", tiny_model_dir))
  fit(_config(data, tmp_path / "resumed", tiny_model_dir, run={"stop_after_steps": 5}))
  newest = tmp_path / "resumed" / "checkpoints" / "5"
  files = [p for p in (newest / "state").rglob("*") if p.is_file()]
  assert files
  for p in files:   # as a kill or a full disk during the write would leave it
    p.write_bytes(b"\0garbage")
  capsys.readouterr()
  resumed = fit(_config(data, tmp_path / "resumed", tiny_model_dir), resume=True)
  assert "checkpoint 5 is unreadable" in capsys.readouterr().err
  assert resumed["finished"] and resumed["best"] == full["best"]
  a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
  b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_killed_with_sigkill_anywhere_then_resumed_ends_bitwise_equal(tmp_path, tiny_model_dir):
  """kill -9 wherever it lands (loading, a step, an evaluation, a checkpoint or model
  write: every step is checkpointed), again and again; then --resume to the end."""
  import signal
  import subprocess
  import sys
  data = write_sst2(tmp_path / "sst2", n_train=40)
  args = [sys.executable, "-m", "flatjax", "train", "--task", "sst2", "--data", str(data),
          "--model", str(tiny_model_dir), "--epochs", "3", "--batch-size", "8",
          "--max-length", "32", "--lr", "1e-3", "--seed", "3", "--save-every", "1",
          "--log-every", "1", "--no-progress"]
  subprocess.run(args + ["--output", str(tmp_path / "full")], check=True, capture_output=True)
  out = tmp_path / "killed"

  def resume():
    return ["--resume"] if (out / "config.json").exists() else []
  for delay in (3.0, 5.0, 6.5, 8.0, 9.5):
    proc = subprocess.Popen(args + ["--output", str(out)] + resume(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
      proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
  subprocess.run(args + ["--output", str(out)] + resume(), check=True, capture_output=True)
  a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
  b = load_file(str(out / "final" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  full, killed = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "full", out))
  assert killed["best"] == full["best"] and killed["final"] == full["final"]
  c = load_file(str(tmp_path / "full" / "best" / "model.safetensors"))
  d = load_file(str(out / "best" / "model.safetensors"))
  for k in c:
    np.testing.assert_array_equal(c[k], d[k], err_msg=k)


def test_resume_after_torn_log_lines_ends_bitwise_equal(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=44)
  full = fit(_config(data, tmp_path / "full", tiny_model_dir))
  out = tmp_path / "torn"
  fit(_config(data, out, tiny_model_dir, run={"stop_after_steps": 5}))
  with (out / "metrics.jsonl").open("a") as f:
    f.write('{"step": 6, "kind": "tra')          # a kill in the middle of a row
  resumed = fit(_config(data, out, tiny_model_dir), resume=True)
  assert resumed["finished"] and resumed["best"] == full["best"]
  a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
  b = load_file(str(out / "final" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert all(r["kind"] in ("train", "eval") for r in _rows(out))   # strict JSON, every line


def test_grad_accum_takes_the_whole_batch_sam_step(tmp_path, minilm_dir):
  # Dropout off, so the only difference K makes is the order of the sums: 44 sentences
  # in batches of 8, the last one half padding, split into 2 and 4 micro-batches.
  from flatjax.models import BertConfig, build_module, init_params, save_pretrained
  config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  model = tmp_path / "model"
  save_pretrained(model, init_params(build_module(config, None), seed=0), config,
                  tokenizer_dir=minilm_dir)
  data = write_sst2(tmp_path / "sst2", n_train=44)
  final = {}
  for k in (1, 2, 4):
    fit(_config(data, tmp_path / f"k{k}", model, optimizer={"name": "sam"},
                run={"grad_accum": k, "epochs": 1}))
    final[k] = load_file(str(tmp_path / f"k{k}" / "final" / "model.safetensors"))
  for k in (2, 4):
    for name in final[1]:
      np.testing.assert_allclose(final[k][name], final[1][name], atol=2e-5, err_msg=name)
  initial = load_file(str(model / "model.safetensors"))
  assert max(np.abs(final[1][f"bert.{n}"] - initial[n]).max() for n in initial) > 1e-3
  with pytest.raises(FlatjaxInputError, match="does not split into 3 equal micro-batches"):
    _config(data, tmp_path / "k3", model, run={"grad_accum": 3}).validate()


def test_patience_stops_a_run_whose_dev_score_stops_improving(tmp_path, tiny_model_dir):
  # A learning rate too small to change a prediction: the dev accuracy of step 2 is never
  # beaten, so with patience 2 the evaluations at steps 4 and 6 end the run at step 6.
  data = write_sst2(tmp_path / "sst2", n_train=44)
  config = _config(data, tmp_path / "run", tiny_model_dir, optimizer={"learning_rate": 1e-12},
                   run={"eval_every": 2, "patience": 2})
  results = fit(config)
  assert (results["finished"], results["step"], results["stopped_early"]) == (True, 6, 6)
  assert results["best"]["step"] == 2
  evals = [r["step"] for r in _rows(tmp_path / "run") if r["kind"] == "eval"]
  assert evals == [2, 4, 6]
  assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
  again = fit(config, resume=True)               # a resumed run stays stopped
  assert (again["step"], again["stopped_early"]) == (6, 6)
  with pytest.raises(FlatjaxInputError, match="run.patience must be positive"):
    _config(data, tmp_path / "x", tiny_model_dir, run={"patience": 0}).validate()
