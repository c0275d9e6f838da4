"""The command line: bad input is one line on stderr, exit status 2, nothing written."""

import json
import subprocess
import sys

import pytest

from conftest import write_sst2
from flatjax import cli


def _train(tmp_path, *extra, data=None, model=None, out="run"):
  args = ["train", "--task", "sst2", "--output", str(tmp_path / out), "--epochs", "1",
          "--batch-size", "8", "--max-length", "32", "--no-progress"]
  if data is not None:
    args += ["--data", str(data)]
  if model is not None:
    args += ["--model", str(model)]
  return cli.main(args + list(extra))


def _one_line_error(capsys, *needles):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  assert err[0].startswith("flatjax: error: ")
  for needle in needles:
    assert needle in err[0], err[0]


def test_unknown_task(tmp_path, capsys, tiny_model_dir):
  code = cli.main(["train", "--task", "glue9", "--output", str(tmp_path / "run")])
  assert code == 2
  _one_line_error(capsys, "unknown task 'glue9'")
  assert not (tmp_path / "run").exists()


def test_missing_data_folder(tmp_path, capsys, tiny_model_dir):
  assert _train(tmp_path, data=tmp_path / "nowhere", model=tiny_model_dir) == 2
  _one_line_error(capsys, "nowhere")
  assert not (tmp_path / "run").exists()


def test_malformed_row_names_file_and_line(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  lines = (data / "train.tsv").read_text().splitlines()
  lines[4] = "a sentence without a label column"
  (data / "train.tsv").write_text("\n".join(lines) + "\n")
  assert _train(tmp_path, data=data, model=tiny_model_dir) == 2
  _one_line_error(capsys, "train.tsv:5")
  assert not (tmp_path / "run").exists()


def test_label_outside_the_task(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  lines = (data / "dev.tsv").read_text().splitlines()
  lines[3] = "a fine film\t7"
  (data / "dev.tsv").write_text("\n".join(lines) + "\n")
  assert _train(tmp_path, data=data, model=tiny_model_dir) == 2
  _one_line_error(capsys, "dev.tsv:4", "7")
  assert not (tmp_path / "run").exists()


def test_model_folder_without_config(tmp_path, capsys):
  data = write_sst2(tmp_path / "sst2")
  (tmp_path / "empty_model").mkdir()
  assert _train(tmp_path, data=data, model=tmp_path / "empty_model") == 2
  _one_line_error(capsys, "config.json")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,value,key", [
    ("--batch-size", "0", "run.batch_size"), ("--batch-size", "-4", "run.batch_size"),
    ("--epochs", "0", "run.epochs"), ("--lr", "abc", "optimizer.learning_rate"),
    ("--lr", "nan", "optimizer.learning_rate"), ("--epochs", "inf", "run.epochs"),
    ("--run.batch_size", "0", "run.batch_size")])
def test_bad_numbers_are_one_line_errors_naming_the_setting(tmp_path, capsys, flag, value, key):
  # Checked before any model or data is read: no model folder is needed.
  code = cli.main(["train", "--task", "sst2", "--output", str(tmp_path / "run"), flag, value])
  assert code == 2
  _one_line_error(capsys, key)
  assert "Traceback" not in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


def test_unknown_optimizer(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  assert _train(tmp_path, "--optimizer", "lamb", data=data, model=tiny_model_dir) == 2
  _one_line_error(capsys, "unknown optimizer 'lamb'")
  assert not (tmp_path / "run").exists()


def test_train_then_eval_the_best_model(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  assert _train(tmp_path, "--lr", "1e-3", data=data, model=tiny_model_dir) == 0
  results = json.loads(capsys.readouterr().out)
  assert results["finished"] and results["step"] == 5
  out = tmp_path / "scores.json"
  assert cli.main(["eval", "--task", "sst2", "--model", str(tmp_path / "run" / "best"),
                   "--data", str(data), "--max-length", "32", "--output", str(out)]) == 0
  scores = json.loads(out.read_text())
  # The best checkpoint re-evaluated from its Hugging Face folder scores what training logged.
  assert scores["validation"]["accuracy"] == pytest.approx(
      results["best"]["validation/accuracy"])


def test_entry_point_exit_status_without_traceback(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "flatjax", "train", "--task", "nope",
                         "--output", str(tmp_path / "run")], capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "flatjax: error: unknown task 'nope'; known tasks: cola, mnli, mrpc, qnli, qqp, rte, "
      "squad, sst2, stsb"]


def test_sam_flags_reach_the_optimizer(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  assert _train(tmp_path, "--optimizer", "sam", "--rho", "0.1", data=data,
                model=tiny_model_dir) == 0
  saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
  assert saved["optimizer"]["name"] == "sam" and saved["optimizer"]["settings"] == {"rho": 0.1}
  rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert any("perturbed_loss" in r for r in rows)


def test_a_flag_the_optimizer_does_not_take(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  assert _train(tmp_path, "--optimizer", "adam", "--k", "5", data=data,
                model=tiny_model_dir) == 2
  _one_line_error(capsys, "optimizer 'adam' has no setting k")
  assert not (tmp_path / "run").exists()


def test_imp_with_two_optimizers_writes_rounds_plot_and_summary(tmp_path, capsys,
                                                                tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=16, n_dev=8)
  args = ["imp", "--task", "sst2", "--data", str(data), "--model", str(tiny_model_dir),
          "--optimizer", "adam", "--optimizer", "sam", "--rounds", "2", "--rate", "0.25",
          "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--lr", "1e-3",
          "--no-progress", "--output", str(tmp_path / "imp")]
  assert cli.main(args) == 0
  out = capsys.readouterr().out
  assert "| 50% |" in out and "adam (imp)" in out and "sam (imp)" in out
  for opt in ("adam", "sam"):
    rows = [json.loads(r) for r in (tmp_path / "imp" / opt / "rounds.jsonl").read_text()
            .splitlines()]
    assert [r["target_sparsity"] for r in rows] == [0.0, 0.25, 0.5]
    assert json.loads((tmp_path / "imp" / opt / "imp.json").read_text())["train"][
        "optimizer"]["name"] == opt
  assert (tmp_path / "imp" / "imp.png").stat().st_size > 0
  assert (tmp_path / "imp" / "summary.md").read_text().strip() == out.strip()
  # Running it again without --resume is refused; with --resume it just re-reports.
  assert cli.main(args) == 2
  _one_line_error(capsys, "already holds an IMP run")
  assert cli.main(args + ["--resume"]) == 0


@pytest.mark.parametrize("extra, needle", [
    (["--rate", "0.5", "--rounds", "3"], "exceed 100%"),
    (["--scope", "nothing/matches$"], "matches no parameter"),
    (["--optimizer", "adam", "--optimizer", "adam"], "optimizer given twice"),
])
def test_imp_bad_input(tmp_path, capsys, tiny_model_dir, extra, needle):
  data = write_sst2(tmp_path / "sst2", n_train=8, n_dev=4)
  code = cli.main(["imp", "--task", "sst2", "--data", str(data), "--model",
                   str(tiny_model_dir), "--epochs", "1", "--max-length", "32", "--no-progress",
                   "--output", str(tmp_path / "imp"), *extra])
  assert code == 2
  _one_line_error(capsys, needle)
  assert not any((tmp_path / "imp").rglob("*.safetensors")) if (tmp_path / "imp").exists() \
      else True


def test_tickets_and_oneshot_from_the_command_line(tmp_path, capsys, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=8, n_dev=8)
  common = ["--task", "sst2", "--data", str(data), "--max-length", "32", "--no-progress"]
  # A run trained under a learned (movement) mask is a mask source for tickets.
  assert _train(tmp_path, "--pruning", "movement", "--sparsity", "0.5", data=data,
                model=tiny_model_dir, out="moved") == 0
  capsys.readouterr()
  assert cli.main(["tickets", *common, "--model", str(tiny_model_dir), "--epochs", "1",
                   "--batch-size", "8", "--mask", f"moved={tmp_path / 'moved'}",
                   "--random-like", "moved", "--optimizer", "adam",
                   "--output", str(tmp_path / "grid")]) == 0
  out = capsys.readouterr().out
  assert "| moved (sst2, adam) | 50% |" in out and "| random (sst2) | 50% |" in out
  assert cli.main(["oneshot", *common, "--model", f"a={tmp_path / 'moved' / 'final'}",
                   "--step", "0.5", "--max", "0.5", "--output", str(tmp_path / "os")]) == 0
  assert "| 50% |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["train", "--pruning", "movement", "--pruning-begin", "0.8", "--pruning-end", "0.5"],
     "pruning begin < pruning end"),
    (["train", "--pruning", "movement", "--sparsity", "1.5"], "sparsity"),
    (["train", "--mask", "nowhere"], "no mask at nowhere"),
    (["tickets", "--mask", "a=nowhere"], "no mask at nowhere"),
    (["oneshot", "--model", "a=nowhere"], "does not exist"),
])
def test_pruning_commands_bad_input(tmp_path, capsys, tiny_model_dir, argv, needle):
  data = write_sst2(tmp_path / "sst2", n_train=8, n_dev=4)
  code = cli.main([*argv, "--task", "sst2", "--data", str(data), "--output",
                   str(tmp_path / "out"), *(["--model", str(tiny_model_dir)]
                                           if argv[0] != "oneshot" else [])])
  assert code == 2
  _one_line_error(capsys, needle)
  assert not (tmp_path / "out").exists()


def test_a_config_file_with_dotted_keys_and_short_forms_over_it(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  config = tmp_path / "sst2.yaml"
  config.write_text("\n".join([
      "data: {task: sst2, source: " + str(data) + ", max_length: 32}",
      "model: {name: " + str(tiny_model_dir) + "}",
      "optimizer: {name: sam, learning_rate: 0.01, settings: {rho: 0.2}}",
      "run: {epochs: 1, batch_size: 8, seed: 4, progress: false}"]) + "\n")
  out = tmp_path / "run"
  assert cli.main(["train", "--config", str(config), "--optimizer.learning_rate", "1e-3",
                   "--rho", "0.1", "--output", str(out)]) == 0
  saved = json.loads((out / "run.json").read_text())["config"]
  assert saved["optimizer"] == {"name": "sam", "learning_rate": 1e-3, "weight_decay": 0.0,
                                "warmup_steps": 0, "schedule": "linear", "clip_norm": None,
                                "b1": 0.9, "b2": 0.999,
                                "eps": 1e-8, "settings": {"rho": 0.1}, "swa": None}
  assert saved["data"] == {"task": "sst2", "source": str(data), "eval_source": None,
                           "max_length": 32, "doc_stride": 128, "pad_to": "longest",
                           "max_train_examples": None, "max_eval_examples": None}
  assert (saved["run"]["epochs"], saved["run"]["batch_size"], saved["run"]["seed"]) == (1, 8, 4)
  assert json.loads((out / "results.json").read_text())["step"] == 5   # 40 examples / 8


def test_print_config_shows_the_resolved_settings(tmp_path, capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["train", "--task", "rte", "--output", str(tmp_path / "run"), "--lr", "1e-4",
              "--no-keep-best", "--print_config"])
  assert exc.value.code == 0
  import yaml
  printed = yaml.safe_load(capsys.readouterr().out)
  assert printed["optimizer"]["learning_rate"] == 1e-4 and printed["data"]["task"] == "rte"
  assert printed["run"]["keep_best"] is False and printed["run"]["batch_size"] == 32
  assert not (tmp_path / "run").exists()


def test_help_is_derived_from_the_configuration(capsys):
  with pytest.raises(SystemExit):
    cli.main(["train", "--help"])
  text = " ".join(capsys.readouterr().out.split())
  # Each field of each section, with the docstring under it in its dataclass.
  assert "--optimizer.learning_rate LEARNING_RATE peak learning rate" in text
  assert "--run.batch_size BATCH_SIZE training examples per step" in text
  assert "--pruning.method METHOD learn a mask while training" in text
  assert "--lr = --optimizer.learning_rate" in text


def test_a_preset_sets_defaults_that_given_settings_win_over():
  command, values = cli.parse(["compare", "--task", "rte", "--preset", "full", "--epochs", "1"])
  assert command == "compare"
  assert values["model"]["name"] == "bert-base-uncased" and values["run"]["epochs"] == 1.0
  assert values["compare"]["imp_rounds"] is None and values["compare"]["scope"] == "bert"
  _, cpu = cli.parse(["compare", "--task", "rte"])
  assert cpu["data"]["max_train_examples"] == 640 and cpu["optimizer"]["learning_rate"] == 1e-4
  assert cpu["compare"]["optimizers"] == ("adam", "sam")


@pytest.mark.parametrize("argv, examples, length, eval_examples", [
    (["--task", "mrpc"], 2560, 64, None),
    (["--data.task=qnli"], 1280, 64, 500),
    (["--task", "sst2", "--max-length", "96"], 1000, 96, None),   # a given setting wins
    (["--task", "sst2", "--preset", "full"], None, 128, None),    # only cpu sizes by task
])
def test_the_cpu_preset_sizes_each_task(argv, examples, length, eval_examples):
  _, values = cli.parse(["compare", *argv])
  data = values["data"]
  assert (data["max_train_examples"], data["max_length"], data["max_eval_examples"]) == (
      examples, length, eval_examples)


def test_output_under_a_file_or_holding_a_foreign_config_is_one_line(tmp_path, capsys,
                                                                    tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  (tmp_path / "a_file").write_text("x")
  assert _train(tmp_path, data=data, model=tiny_model_dir, out="a_file/run") == 2
  _one_line_error(capsys, "a_file", "is a file, not a folder")
  for text in ('{"not": "flatjax"}', "{torn"):
    (tmp_path / "foreign").mkdir(exist_ok=True)
    (tmp_path / "foreign" / "config.json").write_text(text)
    assert _train(tmp_path, data=data, model=tiny_model_dir, out="foreign") == 2
    _one_line_error(capsys, "foreign", "not a flatjax run's")
    assert sorted(p.name for p in (tmp_path / "foreign").iterdir()) == ["config.json"]


@pytest.mark.parametrize("name,junk,needle", [
    ("model.safetensors", b"\x00\x01truncated", "not a readable safetensors file"),
    ("pytorch_model.bin", b"not a pickle at all", "not a readable PyTorch checkpoint")])
def test_unreadable_weights_are_one_line(tmp_path, capsys, tiny_model_dir, name, junk, needle):
  import shutil
  data = write_sst2(tmp_path / "sst2")
  model = tmp_path / "model"
  shutil.copytree(tiny_model_dir, model)
  for old in ("model.safetensors", "pytorch_model.bin"):
    (model / old).unlink(missing_ok=True)
  (model / name).write_bytes(junk)
  assert _train(tmp_path, data=data, model=model) == 2
  _one_line_error(capsys, str(model / name), needle)
  assert not (tmp_path / "run").exists()


def test_a_full_disk_is_one_line_and_a_new_run_starts_once_there_is_space(
    tmp_path, capsys, monkeypatch, tiny_model_dir):
  import errno
  import os
  data = write_sst2(tmp_path / "sst2", n_train=8)
  real = os.replace

  def full(src, dst):
    raise OSError(errno.ENOSPC, "No space left on device", str(dst))
  monkeypatch.setattr(os, "replace", full)
  assert _train(tmp_path, data=data, model=tiny_model_dir) == 2
  _one_line_error(capsys, "No space left on device", "run.json")
  assert not (tmp_path / "run" / "config.json").exists()
  monkeypatch.setattr(os, "replace", real)
  assert _train(tmp_path, data=data, model=tiny_model_dir) == 0
