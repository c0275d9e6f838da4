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


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--batch-size", "-4"),
                                        ("--epochs", "0"), ("--lr", "abc")])
def test_non_positive_numbers_are_rejected_by_the_parser(tmp_path, capsys, flag, value):
  with pytest.raises(SystemExit) as exc:
    cli.main(["train", "--task", "sst2", "--output", str(tmp_path / "run"), flag, value])
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert flag in err and "Traceback" not in err
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
  assert saved["optimizer"] == "sam" and saved["optimizer_args"] == {"rho": 0.1}
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
        "optimizer"] == opt
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
