"""flatjax.models.pretrained: Hugging Face checkpoints in, Hugging Face folders out.

The reference is always PyTorch: folders written by flatjax must load in
``transformers`` (no missing or unexpected keys) and give the same outputs there;
checkpoints written by ``transformers`` must load in flatjax and give PyTorch's
outputs. Round trips back into flatjax must reproduce the params bit for bit.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from flatjax.errors import FlatjaxInputError  # noqa: E402
from flatjax.models import pretrained  # noqa: E402
from flatjax.models.pretrained import (from_pretrained, resolve_model_dir,  # noqa: E402
                                       save_pretrained)

TOL = 1e-4
CLASSIFIER = ["classifier/bias", "classifier/kernel"]



def max_diff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.abs(a - b).max())


def torch_forward(model, batch, **kw):
  with torch.no_grad():
    return model(**{k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}, **kw)


def jax_forward(pre, batch, **kw):
  return pre.module.apply({"params": pre.params}, **{k: jnp.asarray(v) for k, v in batch.items()},
                          **kw)


def random_batch(seed=0, batch=3, length=12, vocab=1000):
  """Random ids with real padding (rows of 12, 7 and 4 tokens) and two segments.

  The same shape as test_bert's batches: JAX's per-op compile cache is then shared.
  """
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, size=(batch, length)).astype(np.int64)
  mask = np.zeros((batch, length), np.int64)
  types = np.zeros((batch, length), np.int64)
  for i, n in enumerate([length, 7, 4][:batch]):
    mask[i, :n] = 1
    types[i, n // 2:n] = 1
  return {"input_ids": np.where(mask == 1, ids, 0), "attention_mask": mask,
          "token_type_ids": types}


def flat(params):
  return traverse_util.flatten_dict(jax.device_get(params), sep="/")


def assert_params_equal(got, want):
  got, want = flat(got), flat(want)
  assert sorted(got) == sorted(want)
  for k in want:
    assert got[k].dtype == np.float32, k
    assert np.array_equal(np.asarray(got[k]), np.asarray(want[k])), k


def fine_tune_head(params, head: str, seed: int = 0):
  """Stands in for fine-tuning: the new head's N(0, 0.02) init gives near-zero logits,
  which would make a 1e-4 comparison weak, so draw it at a larger scale."""
  rng = np.random.default_rng(seed)
  out = flat(params)
  for k in out:
    if k.startswith(head + "/"):
      out[k] = jnp.asarray(rng.normal(0, 0.5, out[k].shape), jnp.float32)
  return traverse_util.unflatten_dict(out, sep="/")


def loading_problems(info: dict) -> dict:
  return {k: v for k, v in info.items() if v}


# --------------------------------------------------------------------------- save -> PyTorch


@pytest.fixture(scope="module")
def minilm_sst2(minilm_dir):
  return from_pretrained(minilm_dir, task="sst2")


def test_minilm_sst2_save_loads_in_pytorch_and_back(minilm_sst2, minilm_dir, minilm_batch,
                                                    tmp_path):
  pre = minilm_sst2
  assert pre.task.name == "sst2" and pre.source_dir == minilm_dir
  assert pre.initialized == CLASSIFIER
  assert pre.unexpected == []  # the old position_ids buffer is not reported
  params = fine_tune_head(pre.params, "classifier")
  out_dir = save_pretrained(tmp_path / "sst2", params, pre.config, pre.task,
                            tokenizer_dir=pre.tokenizer_dir)

  hf = json.loads((out_dir / "config.json").read_text())
  assert hf["num_labels"] == 2
  assert hf["finetuning_task"] == "sst2"
  assert hf["architectures"] == ["BertForSequenceClassification"]
  assert hf["problem_type"] == "single_label_classification"
  assert (out_dir / "vocab.txt").is_file() and (out_dir / "tokenizer.json").is_file()

  model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(out_dir), output_loading_info=True)
  assert loading_problems(info) == {}
  model.eval()
  assert type(model).__name__ == "BertForSequenceClassification"
  assert model.config.num_labels == 2
  batch = minilm_batch
  tok = transformers.AutoTokenizer.from_pretrained(str(out_dir))  # the copied tokenizer
  np.testing.assert_array_equal(tok("A man is playing a guitar.", "Why?")["input_ids"],
                                transformers.AutoTokenizer.from_pretrained(str(minilm_dir))(
                                    "A man is playing a guitar.", "Why?")["input_ids"])
  ref = torch_forward(model, batch).logits.numpy()
  got = pre.module.apply({"params": params}, **{k: jnp.asarray(v) for k, v in batch.items()})
  assert np.abs(ref).max() > 0.1  # a meaningful comparison, not two near-zero arrays
  assert max_diff(got["logits"], ref) <= TOL

  back = from_pretrained(out_dir)  # no task: taken from the saved config
  assert back.task is not None and back.task.name == "sst2"
  assert back.initialized == [] and back.unexpected == []
  assert back.config == pre.config
  assert_params_equal(back.params, params)


@pytest.mark.parametrize("task,auto_class,head", [
    ("stsb", "AutoModelForSequenceClassification", "classifier"),
    ("squad", "AutoModelForQuestionAnswering", "qa_outputs"),
])
def test_head_save_loads_in_pytorch_and_back(make_tiny_hf, tmp_path, task, auto_class, head):
  # A BertModel checkpoint (keys without "bert.", like MiniLM) gets a new head.
  folder, _ = make_tiny_hf("BertModel", seed=11)
  pre = from_pretrained(folder, task=task)
  assert pre.initialized == [f"{head}/bias", f"{head}/kernel"]
  # BertForQuestionAnswering has no pooler, so the checkpoint's is left over.
  assert pre.unexpected == ([] if task == "stsb" else ["pooler.dense.bias", "pooler.dense.weight"])
  params = fine_tune_head(pre.params, head, seed=1)
  out_dir = save_pretrained(tmp_path / task, params, pre.config, pre.task)

  hf = json.loads((out_dir / "config.json").read_text())
  assert hf["finetuning_task"] == task
  model, info = getattr(transformers, auto_class).from_pretrained(
      str(out_dir), output_loading_info=True)
  assert loading_problems(info) == {}
  model.eval()
  batch = random_batch(seed=12)
  got = pre.module.apply({"params": params}, **{k: jnp.asarray(v) for k, v in batch.items()})
  ref = torch_forward(model, batch)
  if task == "stsb":
    assert hf["architectures"] == ["BertForSequenceClassification"]
    assert hf["num_labels"] == 1 and hf["problem_type"] == "regression"
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    assert got["logits"].shape == (3, 1)
    assert max_diff(got["logits"], ref.logits.numpy()) <= TOL
  else:
    assert hf["architectures"] == ["BertForQuestionAnswering"]
    assert type(model).__name__ == "BertForQuestionAnswering"
    assert max_diff(got["start_logits"], ref.start_logits.numpy()) <= TOL
    assert max_diff(got["end_logits"], ref.end_logits.numpy()) <= TOL

  back = from_pretrained(out_dir)
  assert back.task.name == task
  assert back.initialized == [] and back.unexpected == []
  assert_params_equal(back.params, params)


def test_base_model_save_loads_in_pytorch(make_tiny_hf, tmp_path):
  folder, model = make_tiny_hf("BertModel", seed=13)
  pre = from_pretrained(folder)
  out_dir = save_pretrained(tmp_path / "base", pre.params, pre.config)
  assert json.loads((out_dir / "config.json").read_text())["architectures"] == ["BertModel"]
  reloaded, info = transformers.BertModel.from_pretrained(str(out_dir), output_loading_info=True)
  assert loading_problems(info) == {}
  batch = random_batch(seed=13)
  ref = torch_forward(model, batch)
  again = torch_forward(reloaded.eval(), batch)
  assert max_diff(again.last_hidden_state.numpy(), ref.last_hidden_state.numpy()) == 0.0
  assert max_diff(again.pooler_output.numpy(), ref.pooler_output.numpy()) == 0.0


# --------------------------------------------------------------------------- checkpoint formats


def test_pytorch_model_bin_loads(make_tiny_hf):
  folder, model = make_tiny_hf("BertForSequenceClassification", seed=14, weights="bin")
  assert not (folder / "model.safetensors").exists()
  pre = from_pretrained(folder, task="rte")
  assert pre.initialized == [] and pre.unexpected == []
  batch = random_batch(seed=14)
  got = jax_forward(pre, batch)
  ref = torch_forward(model, batch)
  assert max_diff(got["logits"], ref.logits.numpy()) <= TOL
  assert max_diff(got["last_hidden_state"],
                  torch_forward(model.bert, batch).last_hidden_state.numpy()) <= TOL


def test_keys_with_bert_prefix_load(make_tiny_hf):
  folder, model = make_tiny_hf("BertForSequenceClassification", seed=15)
  assert all(k.startswith(("bert.", "classifier."))
             for k in load_file(str(folder / "model.safetensors")))
  batch = random_batch(seed=15)
  ref_base = torch_forward(model.bert, batch)

  with_head = from_pretrained(folder, task="rte")
  assert with_head.initialized == [] and with_head.unexpected == []
  assert max_diff(jax_forward(with_head, batch)["logits"],
                  torch_forward(model, batch).logits.numpy()) <= TOL

  encoder_only = from_pretrained(folder)  # no task: the bare encoder, head left over
  assert encoder_only.task is None
  assert encoder_only.initialized == []
  assert encoder_only.unexpected == ["classifier.bias", "classifier.weight"]
  out = jax_forward(encoder_only, batch)
  assert max_diff(out["last_hidden_state"], ref_base.last_hidden_state.numpy()) <= TOL
  assert max_diff(out["pooler_output"], ref_base.pooler_output.numpy()) <= TOL


def test_keys_without_prefix_load(make_tiny_hf):
  folder, model = make_tiny_hf("BertModel", seed=16)
  assert not any(k.startswith("bert.") for k in load_file(str(folder / "model.safetensors")))
  pre = from_pretrained(folder)
  assert pre.initialized == [] and pre.unexpected == []
  batch = random_batch(seed=16)
  out = jax_forward(pre, batch)
  ref = torch_forward(model, batch)
  assert max_diff(out["last_hidden_state"], ref.last_hidden_state.numpy()) <= TOL
  assert max_diff(out["pooler_output"], ref.pooler_output.numpy()) <= TOL


def test_extra_checkpoint_keys_are_reported(make_tiny_hf, tmp_path):
  folder, model = make_tiny_hf("BertModel", seed=17)
  extra = tmp_path / "extra"
  shutil.copytree(folder, extra)
  tensors = load_file(str(extra / "model.safetensors"))
  tensors["cls.predictions.bias"] = np.zeros(1000, np.float32)
  tensors["cls.predictions.transform.dense.weight"] = np.ones((64, 64), np.float32)
  save_file(tensors, str(extra / "model.safetensors"), metadata={"format": "pt"})
  pre = from_pretrained(extra)
  assert pre.unexpected == ["cls.predictions.bias", "cls.predictions.transform.dense.weight"]
  assert pre.initialized == []
  batch = random_batch(seed=17)
  assert max_diff(jax_forward(pre, batch)["last_hidden_state"],
                  torch_forward(model, batch).last_hidden_state.numpy()) <= TOL


def test_head_with_other_label_count_is_reinitialised(make_tiny_hf):
  folder, model = make_tiny_hf("BertForSequenceClassification", seed=18, num_labels=3)
  batch = random_batch(seed=18)
  ref = torch_forward(model, batch)

  two = from_pretrained(folder, task="sst2")  # 2 labels: a fresh head
  assert two.initialized == CLASSIFIER
  assert two.unexpected == ["classifier.bias", "classifier.weight"]
  assert two.params["classifier"]["kernel"].shape == (64, 2)
  out = jax_forward(two, batch)
  assert out["logits"].shape == (3, 2)
  assert max_diff(out["pooler_output"],
                  torch_forward(model.bert, batch).pooler_output.numpy()) <= TOL


# --------------------------------------------------------------------------- bad input


def _no_hub(monkeypatch):
  def refuse(repo_id):
    raise AssertionError(f"tried the hub for {repo_id!r}")
  monkeypatch.setattr(pretrained, "_download", refuse)


def test_folder_without_config(tmp_path, make_tiny_hf):
  folder, _ = make_tiny_hf("BertModel", seed=19)
  bare = tmp_path / "bare"
  bare.mkdir()
  shutil.copyfile(folder / "model.safetensors", bare / "model.safetensors")
  with pytest.raises(FlatjaxInputError, match="config.json"):
    from_pretrained(bare)


def test_folder_without_weights(tmp_path):
  folder = tmp_path / "noweights"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(
      {"model_type": "bert", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1,
       "num_attention_heads": 2, "intermediate_size": 32}))
  with pytest.raises(FlatjaxInputError) as e:
    from_pretrained(folder)
  assert "model.safetensors" in str(e.value) and "pytorch_model.bin" in str(e.value)
  assert str(folder) in str(e.value)


def test_missing_local_path_does_not_try_the_hub(tmp_path, monkeypatch):
  _no_hub(monkeypatch)
  monkeypatch.chdir(tmp_path)
  for name in ("./nope", str(tmp_path / "nope"), "~/surely/not/here/nope"):
    with pytest.raises(FlatjaxInputError, match="nope.*does not exist"):
      from_pretrained(name)


def test_file_instead_of_folder(tmp_path):
  path = tmp_path / "model.safetensors"
  path.write_bytes(b"")
  with pytest.raises(FlatjaxInputError, match="is a file"):
    from_pretrained(path)


def test_unknown_task(make_tiny_hf):
  folder, _ = make_tiny_hf("BertModel", seed=20)
  with pytest.raises(FlatjaxInputError, match="unknown task 'no_such_task'"):
    from_pretrained(folder, task="no_such_task")


def test_non_bert_model_type(tmp_path, make_tiny_hf):
  folder, _ = make_tiny_hf("BertModel", seed=21)
  other = tmp_path / "roberta"
  shutil.copytree(folder, other)
  config = json.loads((other / "config.json").read_text())
  config["model_type"] = "roberta"
  (other / "config.json").write_text(json.dumps(config))
  with pytest.raises(FlatjaxInputError, match="model_type 'roberta'"):
    from_pretrained(other)


def test_invalid_config_json(tmp_path):
  folder = tmp_path / "broken"
  folder.mkdir()
  (folder / "config.json").write_text('{"model_type": "bert",\n "hidden_size": }\n')
  with pytest.raises(FlatjaxInputError, match="config.json:2"):
    from_pretrained(folder)


def test_encoder_shape_mismatch_names_the_tensor(tmp_path, make_tiny_hf):
  folder, _ = make_tiny_hf("BertModel", seed=22)
  bad = tmp_path / "bad"
  shutil.copytree(folder, bad)
  tensors = load_file(str(bad / "model.safetensors"))
  name = "encoder.layer.1.intermediate.dense.weight"
  assert tensors[name].shape == (128, 64)
  tensors[name] = tensors[name][:96]  # an FFN 96 wide; the config says 128
  save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
  with pytest.raises(FlatjaxInputError, match=re.escape(name)):
    from_pretrained(bad)


# --------------------------------------------------------------------------- names


def test_resolve_minilm_short_name(minilm_dir):
  assert resolve_model_dir("minilm").resolve() == minilm_dir.resolve()
  assert resolve_model_dir("MiniLM").resolve() == minilm_dir.resolve()
  assert (resolve_model_dir("minilm") / "config.json").is_file()
  assert resolve_model_dir(minilm_dir) == minilm_dir


def test_hub_id_is_downloaded_with_huggingface_hub(make_tiny_hf, monkeypatch):
  """A hub id goes through huggingface_hub.snapshot_download (here answered from disk)."""
  folder, _ = make_tiny_hf("BertForSequenceClassification", seed=3)
  asked = {}

  def fake_snapshot_download(repo_id, allow_patterns=None, **kw):
    asked["repo_id"], asked["patterns"] = repo_id, allow_patterns
    return str(folder)

  import huggingface_hub
  monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
  pt = from_pretrained("someone/tiny-bert", "rte")
  assert asked["repo_id"] == "someone/tiny-bert"
  assert "config.json" in asked["patterns"] and "*.safetensors" in asked["patterns"]
  assert pt.source_dir == folder and pt.initialized == []


def test_unreachable_hub_is_a_one_line_input_error(monkeypatch):
  import huggingface_hub

  def offline(repo_id, **kw):
    raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nmore")

  monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
  with pytest.raises(FlatjaxInputError) as exc:
    from_pretrained("bert-base-uncased", "rte")
  message = str(exc.value)
  assert "bert-base-uncased" in message and "couldn't connect" in message
  assert "\n" not in message
