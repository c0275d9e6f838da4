"""The int8 file (flatjax.quant.export): exact round trips and sizes counted by hand.

References: the arrays that were saved (compared leaf for leaf and through the
model's logits), the safetensors layout (8-byte header length, JSON header,
raw tensor bytes) with byte counts worked out from the param counts, and the
float32 ``model.safetensors`` that ``save_pretrained`` actually writes.
"""

from __future__ import annotations

import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models.bert import BertConfig
from flatjax.models.pretrained import build_module, from_pretrained, init_params, save_pretrained
from flatjax.quant.export import (FORMAT, QUANT_FILE, file_sizes, load_quantized,
                                  quantized_metadata, save_quantized)
from flatjax.quant.int8 import QArray, QuantConfig
from flatjax.quant.model import (dequantize_params, quantize_params, quantized_apply,
                                 quantized_leaves)
from flatjax.sparsity.structured import full_gates, prune_model

CONFIG = BertConfig(vocab_size=211, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=48, max_position_embeddings=32)


@pytest.fixture(scope="module")
def model():
  task = get_task("rte")
  module = build_module(CONFIG, task)
  return module, init_params(module, seed=1), task


def batch():
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1, CONFIG.vocab_size, (3, 10)), jnp.int32)
  mask = jnp.ones((3, 10), jnp.int32).at[1, 6:].set(0)
  return ids, mask, jnp.zeros((3, 10), jnp.int32)


def leaves(qparams):
  return traverse_util.flatten_dict(qparams.params, sep="/",
                                    is_leaf=lambda _, x: isinstance(x, QArray))


def assert_identical(a, b):
  assert a.config == b.config
  la, lb = leaves(a), leaves(b)
  assert la.keys() == lb.keys()
  for path, x in la.items():
    y = lb[path]
    if isinstance(x, QArray):
      assert isinstance(y, QArray), path
      for u, v in ((x.values, y.values), (x.scale, y.scale)):
        assert u.dtype == v.dtype and u.shape == v.shape, path
        np.testing.assert_array_equal(u, v, err_msg=path)
    else:
      assert not isinstance(y, QArray) and x.dtype == y.dtype, path
      np.testing.assert_array_equal(x, y, err_msg=path)


@pytest.mark.parametrize("config", ["dynamic", "weight-only-per-channel",
                                    QuantConfig("mine", "per_tensor", "narrow",
                                                reduce_range=False)],
                         ids=["dynamic", "weight-only-per-channel", "custom"])
def test_round_trip_is_identical(model, tmp_path, config):
  module, params, _ = model
  qparams = quantize_params(params, config)
  path = save_quantized(tmp_path / "model.int8.safetensors", qparams, {"source": "test"})
  loaded = load_quantized(path)
  assert_identical(qparams, loaded)
  forward = jax.jit(lambda q, *a: quantized_apply(module, q, *a)["logits"])
  np.testing.assert_array_equal(forward(qparams, *batch()), forward(loaded, *batch()))
  meta = quantized_metadata(path)
  assert meta["format"] == FORMAT and meta["source"] == "test"
  assert json.loads(meta["quant_config"]) == qparams.config.to_dict()


def test_folder_gets_the_default_file_name(model, tmp_path):
  _, params, _ = model
  qparams = quantize_params(params)
  path = save_quantized(tmp_path, qparams)
  assert path == tmp_path / QUANT_FILE and not list(tmp_path.glob("*.tmp"))
  assert_identical(qparams, load_quantized(tmp_path))
  # A folder that does not exist yet is made, not written as a file of that name.
  folder = tmp_path / "run" / "int8"
  assert save_quantized(folder, qparams) == folder / QUANT_FILE
  assert_identical(qparams, load_quantized(tmp_path / "run" / "int8"))


def test_pruned_model_with_empty_tensors_round_trips(model, tmp_path):
  module, params, task = model
  gates = full_gates(CONFIG)
  gates["head"][1, :] = 0
  gates["intermediate"][0, :] = 0
  small_config, small_params = prune_model(CONFIG, params, gates)
  qparams = quantize_params(small_params, "dynamic-per-channel")
  shapes = {p: q.shape for p, q in quantized_leaves(qparams)}
  assert shapes["bert/encoder/layer/1/attention/self/query/kernel"] == (32, 0)
  assert shapes["bert/encoder/layer/0/output/dense/kernel"] == (0, 32)
  loaded = load_quantized(save_quantized(tmp_path, qparams))
  assert_identical(qparams, loaded)
  small = build_module(small_config, task)
  forward = jax.jit(lambda q, *a: quantized_apply(small, q, *a)["logits"])
  np.testing.assert_array_equal(forward(qparams, *batch()), forward(loaded, *batch()))


def _data_bytes(path) -> int:
  """The tensor bytes of a safetensors file: its size less the 8-byte header
  length and the JSON header."""
  raw = path.read_bytes()
  (header,) = struct.unpack("<Q", raw[:8])
  json.loads(raw[8:8 + header])
  return len(raw) - 8 - header


def test_sizes_counted_by_hand(model, tmp_path):
  """int8: one byte per quantized weight, four per float param and per scale;
  float32: four bytes per param. Checked on the files really written, and
  file_sizes() reports exactly those files' sizes."""
  _, params, _ = model
  flat = traverse_util.flatten_dict(params, sep="/")
  n_kernel = sum(v.size for k, v in flat.items() if k.endswith("/kernel"))
  n_float = sum(v.size for k, v in flat.items() if not k.endswith("/kernel"))
  n_dense = sum(1 for k in flat if k.endswith("/kernel"))
  assert n_dense == 6 * 2 + 2
  for config, n_scales in (("dynamic", n_dense),
                           ("dynamic-per-channel",
                            sum(v.shape[1] for k, v in flat.items() if k.endswith("/kernel")))):
    qparams = quantize_params(params, config)
    int8_file = save_quantized(tmp_path / f"{config}.safetensors", qparams)
    fp32_file = save_pretrained(tmp_path / f"fp32-{config}", dequantize_params(qparams), CONFIG,
                                get_task("rte")) / "model.safetensors"
    assert _data_bytes(int8_file) == n_kernel + 4 * (n_float + n_scales)
    assert _data_bytes(fp32_file) == 4 * (n_kernel + n_float)
    sizes = file_sizes(qparams)
    assert sizes["int8_bytes"] == int8_file.stat().st_size
    assert sizes["fp32_bytes"] == fp32_file.stat().st_size
    assert sizes["ratio"] == sizes["int8_bytes"] / sizes["fp32_bytes"]


def test_minilm_int8_file_is_the_expected_fraction_of_fp32(minilm_dir):
  """MiniLM: 10.8M dense weights go to one byte each, the 12M embedding and other
  float params stay four (PyTorch's quantize_dynamic keeps nn.Embedding float
  too): the file is ~64% of float32, to within the headers (~0.1%)."""
  pre = from_pretrained(minilm_dir, task="sst2")
  flat = traverse_util.flatten_dict(pre.params, sep="/")
  n_kernel = sum(v.size for k, v in flat.items() if k.endswith("/kernel"))
  n_dense = sum(1 for k in flat if k.endswith("/kernel"))
  n_total = sum(v.size for v in flat.values())
  assert n_dense == 6 * 6 + 2 and 10_000_000 < n_kernel < 11_000_000
  expected = (n_kernel + 4 * (n_total - n_kernel + n_dense)) / (4 * n_total)
  sizes = file_sizes(quantize_params(pre.params))
  assert sizes["ratio"] == pytest.approx(expected, abs=1e-3)
  assert 0.6 < sizes["ratio"] < 0.7


def test_bad_files_raise(model, tmp_path):
  from safetensors.numpy import save_file
  _, params, _ = model
  with pytest.raises(FlatjaxInputError, match="does not exist"):
    load_quantized(tmp_path / "missing.safetensors")
  fp32 = save_pretrained(tmp_path / "fp32", params, CONFIG, get_task("rte"))
  with pytest.raises(FlatjaxInputError, match="not a flatjax int8 file"):
    load_quantized(fp32 / "model.safetensors")
  garbage = tmp_path / "garbage.safetensors"
  garbage.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
  with pytest.raises(FlatjaxInputError, match="not a safetensors file"):
    load_quantized(garbage)
  meta = {"format": FORMAT, "quant_config": json.dumps(QuantConfig("x").to_dict())}
  no_scale = tmp_path / "no_scale.safetensors"
  save_file({"a/kernel": np.ones((2, 2), np.int8)}, str(no_scale), metadata=meta)
  with pytest.raises(FlatjaxInputError, match="has no a/kernel.scale"):
    load_quantized(no_scale)
  bad_config = tmp_path / "bad_config.safetensors"
  save_file({"a/kernel": np.ones((2, 2), np.int8), "a/kernel.scale": np.ones((), np.float32)},
            str(bad_config), metadata={**meta, "quant_config": '{"weight_range": "wide"}'})
  with pytest.raises(FlatjaxInputError, match="weight_range"):
    load_quantized(bad_config)
  with pytest.raises(FlatjaxInputError, match="QuantizedParams"):
    save_quantized(tmp_path / "x.safetensors", params)
