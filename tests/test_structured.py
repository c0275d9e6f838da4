"""Structured pruning's export (flatjax.sparsity.structured) and the model's gates.

The reference for an exported model is the gated full model it came from: the
smaller dense network must give the same outputs. The gates themselves reduce
to the plain model at 1 (checked against the ungated forward, which
test_bert checks against PyTorch), and the parameter count is checked by
counting the exported arrays' entries.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models.bert import BertConfig
from flatjax.models.pretrained import build_module, from_pretrained, init_params, save_pretrained
from flatjax.sparsity.structured import encoder_params, full_gates, prune_model, remaining_units

TOL = 1e-5
CONFIG = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                    intermediate_size=40, max_position_embeddings=32,
                    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _batch(seed=0, batch=3, length=10):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, CONFIG.vocab_size, (batch, length)).astype(np.int32)
  mask = np.ones((batch, length), np.int32)
  mask[1, 6:] = 0
  mask[2, 3:] = 0
  types = np.zeros((batch, length), np.int32)
  types[:, length // 2:] = 1
  return jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)


def _random_params(module, seed=0):
  """HF-style init, then every leaf (LayerNorms and biases too) perturbed so no
  parameter is trivially 0 or 1."""
  params = init_params(module, seed)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return jax.tree.unflatten(tree, leaves)


def _gates(seed=0):
  """Soft values in (0.3, 1] with exact zeros of every kind: two heads of layer 0,
  all heads of layer 1 (its attention block kept: output bias and LayerNorm
  remain), the attention block of layer 2, some FFN neurons, the FFN block of
  layer 1, and a quarter of the hidden dimensions."""
  rng = np.random.default_rng(seed)
  g = {k: rng.uniform(0.3, 1.0, v.shape).astype(np.float32) for k, v in full_gates(CONFIG).items()}
  g["head"][0, [1, 3]] = 0
  g["head"][1, :] = 0
  g["mha"][2] = 0
  g["intermediate"][0, ::3] = 0
  g["intermediate"][2, 5:30] = 0
  g["ffn"][1] = 0
  g["hidden"][rng.permutation(CONFIG.hidden_size)[:8]] = 0
  return g


def _apply(module, params, inputs, **kw):
  return module.apply({"params": params}, *inputs, deterministic=True, **kw)


@pytest.mark.parametrize("task_name", ["rte", "stsb", "squad"])
def test_exported_model_equals_gated_model(task_name):
  task = get_task(task_name)
  module = build_module(CONFIG, task)
  params = _random_params(module)
  gates = _gates()
  inputs = _batch()
  gated = _apply(module, params, inputs, gates={k: jnp.asarray(v) for k, v in gates.items()},
                 output_hidden_states=True)

  small_config, small_params = prune_model(CONFIG, params, gates)
  small = _apply(build_module(small_config, task), small_params, inputs,
                 output_hidden_states=True)
  keys = ("start_logits", "end_logits") if task.kind == "span" else ("logits",)
  for k in keys:
    np.testing.assert_allclose(small[k], gated[k], atol=TOL, rtol=0)
  kept = np.flatnonzero(gates["hidden"])
  np.testing.assert_allclose(small["last_hidden_state"], gated["last_hidden_state"][..., kept],
                             atol=TOL, rtol=0)
  # The gated model's removed hidden dimensions are exactly 0 throughout.
  removed = np.flatnonzero(gates["hidden"] == 0)
  for h in gated["hidden_states"]:
    assert np.all(np.asarray(h)[..., removed] == 0)
  assert small_config.hidden_size == len(kept)
  assert small_config.layer_num_heads == (2, 0, 0)
  assert small_config.pruned_attention_layers == (2,)
  assert small_config.pruned_ffn_layers == (1,)
  assert small_config.layer_intermediate_sizes == (40 - 14, 0, 40 - 25)


def test_gates_at_one_are_the_plain_model():
  task = get_task("rte")
  module = build_module(CONFIG, task)
  params = _random_params(module, seed=3)
  inputs = _batch(1)
  plain = _apply(module, params, inputs)
  ones = _apply(module, params, inputs,
                gates={k: jnp.asarray(v) for k, v in full_gates(CONFIG).items()})
  np.testing.assert_allclose(ones["logits"], plain["logits"], atol=TOL, rtol=0)
  # And the export of all-ones gates is the same model, config fields aside.
  small_config, small_params = prune_model(CONFIG, params, full_gates(CONFIG))
  assert encoder_params(small_config) == encoder_params(CONFIG)
  for a, b in zip(jax.tree.leaves(small_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_block_gate_zero_skips_the_block():
  """mha = 0 and ffn = 0 on every layer: the encoder is the identity on the
  (gated) embeddings, CoFi's skip semantics."""
  module = build_module(CONFIG, None)
  params = _random_params(module, seed=5)
  inputs = _batch(2)
  L = CONFIG.num_hidden_layers
  out = _apply(module, params, inputs, output_hidden_states=True,
               gates={"mha": jnp.zeros(L), "ffn": jnp.zeros(L)})
  for h in out["hidden_states"][1:]:
    np.testing.assert_array_equal(h, out["hidden_states"][0])


def test_gated_dropout_keeps_removed_dims_zero_in_training():
  task = get_task("rte")
  module = build_module(CONFIG, task)
  params = _random_params(module, seed=7)
  gates = {k: jnp.asarray(v) for k, v in _gates(1).items()}
  out = module.apply({"params": params}, *_batch(), deterministic=False, gates=gates,
                     output_hidden_states=True, rngs={"dropout": jax.random.key(0)})
  removed = np.flatnonzero(np.asarray(gates["hidden"]) == 0)
  for h in out["hidden_states"]:
    assert np.all(np.asarray(h)[..., removed] == 0)
  assert np.all(np.isfinite(out["logits"]))


def test_encoder_params_counts_the_exported_arrays():
  task = get_task("rte")
  module = build_module(CONFIG, task)
  params = _random_params(module)
  for seed in range(4):
    gates = _gates(seed)
    small_config, small_params = prune_model(CONFIG, params, gates)
    count = 0
    for i, layer in small_params["bert"]["encoder"]["layer"].items():
      if "attention" in layer:
        self_attention = layer["attention"]["self"]
        count += sum(self_attention[n]["kernel"].size for n in ("query", "key", "value"))
        count += layer["attention"]["output"]["dense"]["kernel"].size
      if "intermediate" in layer:
        count += layer["intermediate"]["dense"]["kernel"].size
        count += layer["output"]["dense"]["kernel"].size
    assert encoder_params(small_config) == count
    units = remaining_units(CONFIG, gates)
    d, dim = len(units["hidden"]), CONFIG.head_dim
    by_hand = sum(4 * d * len(l["heads"]) * dim + 2 * d * len(l["neurons"])
                  for l in units["layers"])
    assert count == by_hand
  assert encoder_params(CONFIG) == 3 * (4 * 32 * 32 + 2 * 32 * 40)


def test_exported_model_round_trips_through_a_folder(tmp_path):
  task = get_task("mrpc")
  module = build_module(CONFIG, task)
  params = _random_params(module, seed=2)
  small_config, small_params = prune_model(CONFIG, params, _gates(2))
  save_pretrained(tmp_path / "small", small_params, small_config, task)
  loaded = from_pretrained(tmp_path / "small")
  assert loaded.config == small_config
  assert loaded.initialized == [] and loaded.unexpected == []
  inputs = _batch(3)
  a = _apply(build_module(small_config, task), small_params, inputs)["logits"]
  b = _apply(loaded.module, loaded.params, inputs)["logits"]
  np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_standard_config_json_has_no_structure_fields():
  d = CONFIG.to_dict()
  assert "layer_num_heads" not in d and "pooler_size" not in d
  assert BertConfig.from_dict(d) == CONFIG


def test_a_uniform_export_is_a_standard_bert_that_transformers_loads(tmp_path):
  """Every layer keeps every head and 30 of 40 FFN neurons (soft gates folded in), the
  hidden size whole: the export's config is a standard BERT's with intermediate_size 30,
  and transformers' PyTorch BertForSequenceClassification loads the folder and gives the
  gated model's logits within 1e-5. Any other structure keeps its per-layer fields."""
  torch = pytest.importorskip("torch")
  import transformers
  task = get_task("mrpc")
  module = build_module(CONFIG, task)
  params = _random_params(module, seed=4)
  rng = np.random.default_rng(4)
  gates = {"head": rng.uniform(0.3, 1.0, (3, 4)).astype(np.float32),
           "intermediate": np.ones((3, 40), np.float32)}
  for i in range(3):
    gates["intermediate"][i, rng.permutation(40)[:10]] = 0
  small_config, small_params = prune_model(CONFIG, params, gates)
  assert not small_config.is_structurally_pruned and small_config.intermediate_size == 30
  save_pretrained(tmp_path / "small", small_params, small_config, task)
  reference = transformers.BertForSequenceClassification.from_pretrained(
      str(tmp_path / "small")).eval()
  inputs = _batch(5)
  want = _apply(module, params, inputs, gates={k: jnp.asarray(v) for k, v in gates.items()})
  with torch.no_grad():
    got = reference(*(torch.from_numpy(np.asarray(x, np.int64)) for x in inputs)).logits
  np.testing.assert_allclose(got.numpy(), np.asarray(want["logits"]), atol=1e-5)
  uneven = dict(gates, intermediate=gates["intermediate"].copy())
  uneven["intermediate"][0, :] = 1
  assert prune_model(CONFIG, params, uneven)[0].layer_intermediate_sizes == (40, 30, 30)
  one_head = dict(gates, head=gates["head"].copy())
  one_head["head"][2, 0] = 0
  assert prune_model(CONFIG, params, one_head)[0].layer_num_heads == (4, 4, 3)


def test_bad_gates_are_refused():
  module = build_module(CONFIG, None)
  params = _random_params(module)
  inputs = _batch()
  with pytest.raises(FlatjaxInputError, match="unknown gates"):
    _apply(module, params, inputs, gates={"neuron": jnp.ones(3)})
  with pytest.raises(FlatjaxInputError, match="shape"):
    _apply(module, params, inputs, gates={"head": jnp.ones((3, 5))})
  with pytest.raises(FlatjaxInputError, match="not both"):
    _apply(module, params, inputs, head_gates=jnp.ones((3, 4)), gates={"head": jnp.ones((3, 4))})
  with pytest.raises(FlatjaxInputError, match="every hidden"):
    prune_model(CONFIG, params, {"hidden": np.zeros(32)})
  with pytest.raises(FlatjaxInputError, match="negative"):
    prune_model(CONFIG, params, {"ffn": -np.ones(3)})
  small_config, small_params = prune_model(CONFIG, params, _gates())
  with pytest.raises(FlatjaxInputError, match="already"):
    prune_model(small_config, small_params, _gates())
  with pytest.raises(FlatjaxInputError, match="layer_num_heads"):
    dataclasses.replace(CONFIG, layer_num_heads=(1, 2))
