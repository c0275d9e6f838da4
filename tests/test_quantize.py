"""``flatjax quantize RUN`` end to end on a tiny fine-tuned BERT.

References, never flatjax's own int8 code: the float32 dev accuracy of
transformers' PyTorch model loaded from the run's ``best/`` folder; the int8
accuracy of ``torch.ao.quantization.quantize_dynamic`` of that model, fed the
same padded batches; the weight-only accuracy of the PyTorch model whose
Linear weights were quantized by hand in numpy; the float32 file size of the
run's own ``model.safetensors``. The int8 folder it writes is scored again by
``flatjax eval``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import TORCH_INT8_WARNINGS, check_run_json, write_sst2  # noqa: E402
from flatjax.cli import main as cli_main  # noqa: E402
from flatjax.data import glue  # noqa: E402
from flatjax.data.tasks import get_task  # noqa: E402
from flatjax.recipes import finetune  # noqa: E402

pytestmark = TORCH_INT8_WARNINGS

N_DEV = 24
BATCH = 8
MAX_LENGTH = 32


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, tiny_model_dir):
  """A tiny SST-2 run, quantized with two schemes; ``(tmp, data, out, results)``."""
  tmp = tmp_path_factory.mktemp("quantize")
  data = write_sst2(tmp / "sst2", n_train=32, n_dev=N_DEV)
  finetune.fit(finetune.TrainConfig.from_dict({
      "data": {"task": "sst2", "source": str(data), "max_length": MAX_LENGTH},
      "model": {"name": str(tiny_model_dir)}, "optimizer": {"learning_rate": 3e-3},
      "run": {"output": str(tmp / "run"), "epochs": 2, "batch_size": 8, "progress": False}}))
  out = tmp / "int8"
  assert cli_main(_quantize_flags(tmp, out)) == 0
  return tmp, data, out, json.loads((out / "quantize.json").read_text())


def _quantize_flags(tmp, out):
  return ["quantize", str(tmp / "run"), "--scheme", "dynamic", "--scheme", "weight-only",
          "--batch-size", str(BATCH), "--pad-to", "max_length", "--output", str(out),
          "--no-progress"]


def _dev_batches(model_dir, data):
  """The dev sentences in the runner's order, batches of BATCH padded to MAX_LENGTH."""
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  examples = glue.load_glue(get_task("sst2"), str(data), "validation")
  labels = np.asarray(examples.labels)
  batches = []
  for i in range(0, len(labels), BATCH):
    enc = tokenizer(list(examples.text_a[i:i + BATCH]), padding="max_length", truncation=True,
                    max_length=MAX_LENGTH, return_tensors="pt")
    batches.append({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
  return batches, labels


def _accuracy(model, batches, labels):
  with torch.no_grad():
    logits = torch.cat([model(**b).logits for b in batches]).numpy()
  return 100.0 * float(np.mean(logits.argmax(-1) == labels)), logits


def _hand_quantized(model):
  """A copy of ``model`` with every Linear weight replaced by its per-tensor int8
  value: scale = absmax / 127.5, round half to even, clip to [-128, 127]."""
  import copy
  model = copy.deepcopy(model)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.Linear):
        w = module.weight.numpy().astype(np.float32)
        scale = np.float32(max(np.abs(w).max() / np.float32(127.5), 2.0 ** -23))
        q = np.clip(np.rint(w * (np.float32(1) / scale)), -128, 127)
        module.weight.copy_(torch.from_numpy((q * scale).astype(np.float32)))
  return model


def test_quantize_scores_float_and_int8_as_pytorch_does(quantized):
  tmp, data, out, _ = quantized
  check_run_json(out, {"schemes": ["dynamic", "weight-only"], "batch_size": BATCH},
                 {"model": tmp / "run" / "best", "data": data},
                 argv=["flatjax", *_quantize_flags(tmp, out)])
  tmp, data, out, r = quantized
  best = tmp / "run" / "best"
  model = transformers.BertForSequenceClassification.from_pretrained(str(best)).eval()
  batches, labels = _dev_batches(best, data)
  assert r["task"] == "sst2" and r["optimizer"] == "adam"
  assert r["eval"]["splits"] == {"validation": N_DEV}
  assert r["eval"]["batch_size"] == BATCH and r["eval"]["max_length"] == MAX_LENGTH

  float_acc, float_logits = _accuracy(model, batches, labels)
  assert r["float32"]["validation"]["accuracy"] == pytest.approx(float_acc)

  weight_only_acc, _ = _accuracy(_hand_quantized(model), batches, labels)
  assert r["int8"]["weight-only"]["metrics"]["validation"]["accuracy"] == pytest.approx(
      weight_only_acc)

  qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
  int8_acc, int8_logits = _accuracy(qmodel, batches, labels)
  dyn = r["int8"]["dynamic"]
  # The same arithmetic; float ops differ in the last bits, so at most one sentence of
  # N_DEV may round to another label (tests/test_quant_model.py checks the logits).
  one = 100.0 / N_DEV
  assert dyn["metrics"]["validation"]["accuracy"] == pytest.approx(int8_acc, abs=one + 1e-9)
  vs = dyn["vs_float32"]["validation"]["logits"]
  assert vs["rows"] == N_DEV
  torch_agreement = float(np.mean(int8_logits.argmax(-1) == float_logits.argmax(-1)))
  assert vs["argmax_agreement"] == pytest.approx(torch_agreement, abs=1 / N_DEV + 1e-9)
  as_digits = lambda values: "".join(str(int(v)) for v in values)
  assert r["float32_predictions"]["validation"] == {
      "labels": as_digits(labels), "predictions": as_digits(float_logits.argmax(-1))}
  int8_digits = dyn["predictions"]["validation"]["predictions"]
  assert sum(a != b for a, b in zip(int8_digits, as_digits(int8_logits.argmax(-1)))) <= 1
  torch_diff = np.abs(int8_logits - float_logits)
  assert vs["max_abs_diff"] == pytest.approx(torch_diff.max(), rel=0.05, abs=1e-4)
  assert vs["mean_abs_diff"] == pytest.approx(torch_diff.mean(), rel=0.05, abs=1e-4)


def test_int8_folder_sizes_and_rescoring(quantized, capsys):
  tmp, data, out, r = quantized
  for scheme in ("dynamic", "weight-only"):
    entry = r["int8"][scheme]
    folder = out / scheme
    assert entry["model_dir"] == str(folder)
    assert entry["sizes"]["int8_bytes"] == (folder / "model.int8.safetensors").stat().st_size
    fp32_file = tmp / "run" / "best" / "model.safetensors"
    assert entry["sizes"]["fp32_bytes"] == fp32_file.stat().st_size
    assert entry["sizes"]["ratio"] < 1
    hf = json.loads((folder / "config.json").read_text())
    assert hf["finetuning_task"] == "sst2" and (folder / "vocab.txt").is_file()
    capsys.readouterr()
    assert cli_main(["eval", "--model", str(folder), "--task", "sst2", "--data", str(data),
                     "--eval-batch-size", str(BATCH), "--max-length", str(MAX_LENGTH),
                     "--pad-to", "max_length"]) == 0
    assert json.loads(capsys.readouterr().out) == entry["metrics"]


def test_no_save_writes_only_the_results_and_run_json(quantized, tmp_path):
  tmp, _, _, r = quantized
  out = tmp_path / "scores"
  assert cli_main(["quantize", str(tmp / "run"), "--no-save", "--batch-size", str(BATCH),
                   "--pad-to", "max_length", "--output", str(out), "--no-progress"]) == 0
  assert sorted(p.name for p in out.iterdir()) == ["quantize.json", "run.json"]
  again = json.loads((out / "quantize.json").read_text())
  assert again["int8"]["dynamic"]["metrics"] == r["int8"]["dynamic"]["metrics"]


@pytest.mark.parametrize("flags", [["--scheme", "int4"], ["--batch-size", "0"],
                                   ["--scheme", "dynamic", "--scheme", "dynamic"]])
def test_bad_input_exits_2_with_nothing_written(quantized, flags, tmp_path):
  tmp = quantized[0]
  out = tmp_path / "bad"
  assert cli_main(["quantize", str(tmp / "run"), "--output", str(out), "--no-progress",
                   *flags]) == 2
  assert not out.exists()


def test_missing_run_or_data_exits_2(tmp_path, tiny_model_dir):
  assert cli_main(["quantize", str(tmp_path / "none"), "--no-progress"]) == 2
  # A model folder records its task but not its data.
  assert cli_main(["quantize", str(tiny_model_dir), "--task", "sst2", "--output",
                   str(tmp_path / "out"), "--no-progress"]) == 2
  assert not (tmp_path / "out").exists()


def test_compare_outputs_over_batches_of_different_widths():
  # SQuAD's start logits, batches padded to their longest window: 3 columns, then 2. The
  # second batch's second row is padding (example index -1) and is left out.
  from flatjax.recipes.quantize import compare_outputs
  idx0, idx1 = np.array([0, 1]), np.array([2, -1])
  reference = [(idx0, {"start": np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])}),
               (idx1, {"start": np.array([[4.0, 1.0], [9.0, 9.0]])})]
  other = [(idx0, {"start": np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 5.0]])}),
           (idx1, {"start": np.array([[4.0, 5.0], [0.0, 0.0]])})]
  # |diff|: [0 0 1], [0 0 0], [0 4]: largest 4, mean 5/8; argmax 2=2, 2=2, 0!=1.
  assert compare_outputs(reference, other) == {"start": {
      "rows": 3, "max_abs_diff": 4.0, "mean_abs_diff": 0.625,
      "argmax_agreement": pytest.approx(2 / 3)}}


def test_quantize_squad_with_windows_of_different_lengths(tmp_path, tiny_model_dir):
  # Padded to each batch's longest window, the last batch (one short context) is narrower
  # than the others: float32 and int8 outputs are compared batch by batch.
  long_context = ("The Eiffel Tower is in Paris . It was built in 1889 by Gustave Eiffel . "
                  "Many tourists visit it every year .")
  short_context = "Bern is a city ."
  qas = [(long_context, "Where is the Eiffel Tower?", "Paris"),
         (long_context, "When was it built?", "1889"),
         (long_context, "Who built it?", "Gustave Eiffel"),
         (long_context, "Who visits it?", "Many tourists"),
         (short_context, "What is Bern?", "a city")]
  doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{
      "context": c, "qas": [{"id": f"q{i}", "question": q,
                             "answers": [{"text": a, "answer_start": c.index(a)}]}]}
      for i, (c, q, a) in enumerate(qas)]}]}
  folder = tmp_path / "squad"
  folder.mkdir()
  for name in ("train.json", "dev.json"):
    (folder / name).write_text(json.dumps(doc))
  finetune.fit(finetune.TrainConfig.from_dict({
      "data": {"task": "squad", "source": str(folder), "max_length": 32, "doc_stride": 8},
      "model": {"name": str(tiny_model_dir)},
      "run": {"output": str(tmp_path / "run"), "epochs": 1, "batch_size": 2,
              "progress": False}}))
  out = tmp_path / "int8"
  assert cli_main(["quantize", str(tmp_path / "run"), "--batch-size", "4", "--output",
                   str(out), "--no-save", "--no-progress"]) == 0
  results = json.loads((out / "quantize.json").read_text())
  dynamic = results["int8"]["dynamic"]
  assert set(dynamic["metrics"]["validation"]) == {"exact_match", "f1"}
  vs = dynamic["vs_float32"]["validation"]
  # Every window of the 5 questions is compared: more windows than questions.
  assert {"start_logits", "end_logits"} <= set(vs)
  for key in ("start_logits", "end_logits"):
    assert vs[key]["rows"] > 5 and 0.0 <= vs[key]["argmax_agreement"] <= 1.0


def test_an_output_folder_holding_another_run_is_refused(quantized, capsys):
  tmp = quantized[0]
  before = sorted(p.name for p in (tmp / "run").iterdir())
  assert cli_main(["quantize", str(tmp / "run"), "--output", str(tmp / "run"),
                   "--no-progress"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "holds another run (config.json)" in err[0]
  assert sorted(p.name for p in (tmp / "run").iterdir()) == before
