"""``flatjax compare`` end to end on a tiny BERT: the table's numbers are the
dev accuracies of the models it made, recomputed with transformers' PyTorch
BERT (the fine-tuned model, the IMP model at the target sparsity, which keeps
exactly that share of the prunable weights, and PyTorch's own int8 of the
fine-tuned model); resuming a finished run redoes nothing; bad input leaves
nothing behind. Each stage's own arithmetic is tested in its module's tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import TORCH_INT8_WARNINGS, check_run_json, write_sst2  # noqa: E402
from flatjax.cli import main as cli_main  # noqa: E402
from flatjax.data import glue  # noqa: E402
from flatjax.data.tasks import get_task  # noqa: E402
from flatjax.sparsity import masks  # noqa: E402

pytestmark = TORCH_INT8_WARNINGS

N_DEV = 16


def _flags(model_dir, data, out):
  return ["compare", "--task", "sst2", "--model", str(model_dir), "--data", str(data),
          "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "8", "--max-length", "32",
          "--lr", "1e-3", "--sparsity", "0.6", "--imp-rounds", "2", "--oneshot-step", "0.3",
          "--quant-batch-size", "8", "--output", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_model_dir):
  tmp = tmp_path_factory.mktemp("compare")
  data = write_sst2(tmp / "sst2", n_train=32, n_dev=N_DEV)
  out = tmp / "cmp"
  assert cli_main(_flags(tiny_model_dir, data, out)) == 0
  return tmp, data, out, json.loads((out / "results.json").read_text())


def _torch_accuracy(model_dir, data, quantize=False):
  """Dev accuracy of a saved model in PyTorch."""
  predicted, labels = _torch_predictions(model_dir, data, quantize)
  return 100.0 * float(np.mean(predicted == labels))


def _torch_predictions(model_dir, data, quantize=False):
  """A saved model's predicted classes on the dev set in PyTorch, and the labels,
  sentences in batches of 8 padded to the longest (as flatjax's batcher pads:
  rounded up to a multiple of 8)."""
  model = transformers.BertForSequenceClassification.from_pretrained(str(model_dir)).eval()
  if quantize:
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  examples = glue.load_glue(get_task("sst2"), str(data), "validation")
  predicted = []
  for i in range(0, N_DEV, 8):
    enc = tokenizer(list(examples.text_a[i:i + 8]), padding="longest", pad_to_multiple_of=8,
                    truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
      predicted.append(model(**enc).logits.numpy().argmax(-1))
  return np.concatenate(predicted), np.asarray(examples.labels)


def _as_digits(values):
  return "".join(str(int(v)) for v in values)


def test_table_holds_the_models_pytorch_scores(compared, tiny_model_dir):
  tmp, data, out, _ = compared
  argv = ["flatjax", *_flags(tiny_model_dir, data, out)]
  sources = {"data": data, "eval_data": None, "model": tiny_model_dir, "mask": None}
  check_run_json(out, {"rounds": 2}, sources, argv=argv)
  check_run_json(out / "sam" / "imp" / "round_00", {"optimizer.name": "sam"}, sources,
                 argv=argv)
  _, data, out, results = compared
  assert results["task"] == "sst2" and results["sparsity"] == 0.6
  assert list(results["optimizers"]) == ["adam", "sam"]
  one = 100.0 / N_DEV
  for opt, r in results["optimizers"].items():
    imp = out / opt / "imp"
    assert r["full"] == pytest.approx(_torch_accuracy(imp / "round_00" / "best", data))
    assert r["imp"] == pytest.approx(_torch_accuracy(imp / "round_02" / "best", data))
    stored = load_file(str(imp / "round_02" / "best" / masks.MASK_FILE))  # the raw tensors
    kept = sum(int(np.count_nonzero(m)) for m in stored.values())
    total = sum(m.size for m in stored.values())
    assert 1 - kept / total == pytest.approx(0.6, abs=1e-4)
    assert r["imp_sparsity"] == pytest.approx(1 - kept / total)
    # int8: PyTorch's quantize_dynamic of the fine-tuned model, up to one sentence that
    # a last-bit difference may round to the other label (tests/test_quant_runner.py).
    assert r["int8"] == pytest.approx(
        _torch_accuracy(imp / "round_00" / "best", data, quantize=True), abs=one + 1e-9)
    assert r["oneshot_dense"] == pytest.approx(r["full"])
    assert r["int8_float32"] == pytest.approx(r["full"])
  table = (out / "summary.md").read_text()
  for opt, r in results["optimizers"].items():
    assert f"| {opt} | {r['full']:.2f} | {r['imp']:.2f} (" in table
  assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_hold_each_models_dev_predictions(compared, tiny_model_dir):
  """The digit strings are the dev labels and each model's classes as PyTorch
  predicts them, so that a bootstrap can pair the models example by example."""
  _, data, out, results = compared
  for opt, r in results["optimizers"].items():
    p, imp = r["predictions"], out / opt / "imp"
    full, labels = _torch_predictions(imp / "round_00" / "best", data)
    assert p["labels"] == _as_digits(labels)
    assert p["full"] == p["int8_float32"] == _as_digits(full)
    assert p["imp"] == _as_digits(_torch_predictions(imp / "round_02" / "best", data)[0])
    int8 = _torch_predictions(imp / "round_00" / "best", data, quantize=True)[0]
    assert sum(a != b for a, b in zip(p["int8"], _as_digits(int8))) <= 1
    for key, score in [("full", r["full"]), ("imp", r["imp"]), ("oneshot", r["oneshot"]),
                       ("int8", r["int8"])]:
      right = sum(a == b for a, b in zip(p[key], p["labels"]))
      assert 100.0 * right / N_DEV == pytest.approx(score)


def test_resuming_a_finished_run_redoes_nothing(compared, tiny_model_dir, capsys):
  tmp, data, out, results = compared
  before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
  assert cli_main(_flags(tiny_model_dir, data, out) + ["--resume"]) == 0
  assert "| adam |" in capsys.readouterr().out
  assert json.loads((out / "results.json").read_text()) == results
  assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == before
  # Without --resume the folder is refused.
  assert cli_main(_flags(tiny_model_dir, data, out)) == 2


@pytest.mark.parametrize("extra", [["--sparsity", "1.5"], ["--optimizer", "adagrad"],
                                   ["--optimizer", "sam", "--optimizer", "sam"],
                                   ["--oneshot-step", "0.9"],
                                   # rho is SAM's: neither Adam nor AdamW takes it
                                   ["--optimizer", "adam", "--optimizer", "adamw",
                                    "--rho", "0.02"]])
def test_bad_input_exits_2_with_nothing_written(compared, tiny_model_dir, tmp_path, extra):
  _, data, _, _ = compared
  out = tmp_path / "bad"
  assert cli_main(_flags(tiny_model_dir, data, out) + extra) == 2
  assert not out.exists()


def test_each_optimizer_gets_only_the_settings_it_takes(tmp_path):
  from flatjax.recipes.compare import CompareConfig, train_config_for
  from flatjax.recipes.finetune import TrainConfig
  config = CompareConfig(train=TrainConfig.from_dict({
      "data": {"task": "sst2"}, "run": {"output": str(tmp_path)},
      "optimizer": {"name": "adam", "settings": {"rho": 0.02, "eta": 0.1}}}),
      optimizers=("adam", "sam", "asam"))
  config.validate()
  assert train_config_for(config, "adam").optimizer.settings == {}
  assert train_config_for(config, "sam").optimizer.settings == {"rho": 0.02}
  assert train_config_for(config, "asam").optimizer.settings == {"rho": 0.02, "eta": 0.1}
  assert train_config_for(config, "sam").optimizer.name == "sam"
