"""ONNX export (flatjax.export.onnx_graph, flatjax export): onnxruntime runs the graphs of a
tiny BERT and of a tiny CoFi-pruned BERT (per-layer widths, removed blocks, a pruned hidden
size) and gives flatjax's float32 outputs within 1e-4, PyTorch's (transformers' BERT on the
same weights) likewise, and flatjax's int8 predictions; the command writes, checks and
refuses as it says."""

from __future__ import annotations

import json
import sys

import jax.numpy as jnp
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import fine_tune_tiny  # noqa: E402
from flatjax.cli import main as cli_main  # noqa: E402
from flatjax.data.tasks import get_task  # noqa: E402
from flatjax.errors import FlatjaxInputError  # noqa: E402
from flatjax.export import to_onnx  # noqa: E402
from flatjax.models import BertConfig, build_module, init_params  # noqa: E402
from flatjax.quant import model as quant_model  # noqa: E402
from flatjax.recipes import export  # noqa: E402
from flatjax.sparsity import structured  # noqa: E402

CONFIG = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                    intermediate_size=48, max_position_embeddings=32)


def _batch(rows=64, length=16, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, length + 1, rows)
  return {"input_ids": rng.integers(1, 64, (rows, length)),
          "attention_mask": (np.arange(length)[None] < lengths[:, None]).astype(np.int64),
          "token_type_ids": rng.integers(0, 2, (rows, length))}


def _run_onnx(model, batch):
  session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  return dict(zip([o.name for o in session.get_outputs()], session.run(None, batch)))


def _flatjax(module, params, batch):
  inputs = [jnp.asarray(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
  if isinstance(params, quant_model.QuantizedParams):
    step = quant_model.make_quantized_eval_step(module, params.config)
    return step(params, None, dict(zip(("input_ids", "attention_mask", "token_type_ids"),
                                       inputs)))
  return module.apply({"params": params}, *inputs)


def _pruned(task):
  """A CoFi-style pruned model: layer 0's attention block and FFN neurons all gone, layer 1
  with 2 of 4 heads and 8 of 48 neurons, layer 2's FFN block gone, 3 hidden dims pruned and
  a head gate of 0.5 folded into the weights."""
  module = build_module(CONFIG, task)
  params = init_params(module, 1)
  gates = structured.full_gates(CONFIG)
  gates["mha"][0] = 0
  gates["intermediate"][0, :] = 0
  gates["head"][1, [0, 2]] = 0
  gates["intermediate"][1, :40] = 0
  gates["ffn"][2] = 0
  gates["hidden"][[3, 7, 11]] = 0
  gates["head"][2, 1] = 0.5
  config, pruned = structured.prune_model(CONFIG, params, gates)
  assert config.layer_num_heads == (0, 2, 4) and config.pruned_attention_layers == (0,)
  assert config.pruned_ffn_layers == (2,) and config.hidden_size == 29
  return build_module(config, task), pruned, config


@pytest.mark.parametrize("task_name", ["sst2", "stsb", "squad"])
@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "cofi-pruned"])
def test_float32_graph_gives_flatjax_outputs(task_name, pruned):
  task = get_task(task_name)
  if pruned:
    module, params, config = _pruned(task)
  else:
    module = build_module(CONFIG, task)
    params, config = init_params(module, 1), CONFIG
  batch = _batch()
  got = _run_onnx(to_onnx(params, config, task), batch)
  want = _flatjax(module, params, batch)
  names = ["start_logits", "end_logits"] if task.kind == "span" else ["logits"]
  assert sorted(got) == sorted(names)
  for name in names:
    np.testing.assert_allclose(got[name], np.asarray(want[name]), atol=1e-4)


def test_float32_graph_gives_pytorchs_logits(tmp_path):
  """The same weights in transformers' PyTorch BERT (an independent implementation)."""
  torch = pytest.importorskip("torch")
  import transformers
  from flatjax.models import save_pretrained
  task = get_task("sst2")
  module = build_module(CONFIG, task)
  params = init_params(module, 3)
  save_pretrained(tmp_path, params, CONFIG, task)
  reference = transformers.BertForSequenceClassification.from_pretrained(str(tmp_path)).eval()
  batch = _batch(rows=16)
  with torch.no_grad():
    want = reference(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
  got = _run_onnx(to_onnx(params, CONFIG, task), batch)["logits"]
  np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("scheme", ["dynamic", "dynamic-per-channel", "weight-only"])
@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "cofi-pruned"])
def test_int8_graph_predicts_what_flatjax_int8_does(scheme, pruned):
  task = get_task("sst2")
  if pruned:
    module, params, config = _pruned(task)
  else:
    module = build_module(CONFIG, task)
    params, config = init_params(module, 2), CONFIG
  qparams = quant_model.quantize_params(params, scheme)
  batch = _batch(rows=128, seed=1)
  got = _run_onnx(to_onnx(qparams, config, task), batch)["logits"]
  want = np.asarray(_flatjax(module, qparams, batch)["logits"])
  assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.99
  # Float32 operators where flatjax rounds in float64: equal but for a rare step.
  assert np.median(np.abs(got - want)) <= 1e-6
  float_logits = np.asarray(_flatjax(module, params, batch)["logits"])
  if scheme != "weight-only":
    assert np.max(np.abs(got - float_logits)) > 1e-5  # it is the int8 model, not the float one
  graph_ops = {n.op_type for n in to_onnx(qparams, config, task).graph.node}
  assert ("MatMulInteger" in graph_ops) == (scheme != "weight-only")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
  tmp = tmp_path_factory.mktemp("export")
  fine_tune_tiny(tmp, tiny_model_dir, n_train=16)
  return tmp


def test_the_command_exports_a_run_and_its_int8_model(tiny_run):
  run = tiny_run / "run"
  assert cli_main(["export", str(run), "--no-progress"]) == 0
  found = json.loads((run / "onnx" / "export.json").read_text())
  assert found["int8"] is None and found["task"] == "sst2"
  assert found["check"]["max_abs_diff"]["logits"] <= 1e-4
  assert json.loads((run / "onnx" / "config.json").read_text())["finetuning_task"] == "sst2"
  assert (run / "onnx" / "vocab.txt").is_file() and (run / "onnx" / "run.json").is_file()
  assert cli_main(["export", str(run), "--int8", "--no-progress"]) == 0
  found = json.loads((run / "onnx-int8" / "export.json").read_text())
  assert found["int8"]["name"] == "dynamic"
  assert found["check"]["argmax_agreement"]["logits"] == 1.0
  assert cli_main(["export", str(run), "--no-progress"]) == 0   # again: replaced


def test_an_int8_model_folder_exports_as_int8(tiny_run):
  run = tiny_run / "run"
  assert cli_main(["quantize", str(run), "--no-progress", "--output", str(tiny_run / "q")]) == 0
  out = tiny_run / "q-onnx"
  assert cli_main(["export", str(tiny_run / "q" / "dynamic"), "--output", str(out),
                   "--no-progress"]) == 0
  assert json.loads((out / "export.json").read_text())["int8"]["name"] == "dynamic"


def test_bad_input_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
  run = tiny_run / "run"
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "notes.txt").write_text("mine")
  assert cli_main(["export", str(run), "--output", str(tmp_path / "taken")]) == 2
  assert "holds something other than an export" in capsys.readouterr().err
  assert cli_main(["export", str(run), "--format", "tflite"]) == 2
  assert cli_main(["export", str(run), "--int8", "--scheme", "int4"]) == 2
  monkeypatch.setitem(sys.modules, "onnx", None)
  with pytest.raises(FlatjaxInputError, match=r"pip install 'flatjax\[export\]'"):
    export.run_export(export.ExportConfig(str(run), output=str(tmp_path / "x")))
