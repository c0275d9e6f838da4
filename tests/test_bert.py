"""flatjax's Flax BERT against the independent reference: transformers' PyTorch BERT.

Every expected value here comes from PyTorch (``transformers.BertModel`` and its
task heads, loaded from the same checkpoint), never from flatjax itself. The
real checkpoint is all-MiniLM-L6-v2 (6 layers, 384 wide); the heads are checked
on tiny random models that transformers creates and saves.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

from flatjax.models.bert import BertForSequenceClassification  # noqa: E402
from flatjax.models.pretrained import from_pretrained  # noqa: E402

TOL = 1e-4



def max_diff(a, b, where=None) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  d = np.abs(a - b)
  if where is not None:
    d = d[where]
  return float(d.max())


def torch_forward(model, batch, **kw):
  with torch.no_grad():
    return model(**{k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}, **kw)


def jax_forward(pre, batch, **kw):
  return pre.module.apply({"params": pre.params}, jnp.asarray(batch["input_ids"]),
                          jnp.asarray(batch["attention_mask"]),
                          jnp.asarray(batch["token_type_ids"]), **kw)


def random_batch(seed=0, batch=3, length=12, vocab=1000):  # same shape as test_pretrained's
  """Random ids with real padding (rows of 12, 7 and 4 tokens) and two segments."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, size=(batch, length)).astype(np.int64)
  lengths = [length, 7, 4][:batch]
  mask = np.zeros((batch, length), np.int64)
  types = np.zeros((batch, length), np.int64)
  for i, n in enumerate(lengths):
    mask[i, :n] = 1
    types[i, n // 2:n] = 1
  ids = np.where(mask == 1, ids, 0)
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# --------------------------------------------------------------------------- MiniLM


def test_minilm_batch_is_padded_pairs(minilm_batch):
  lengths = minilm_batch["attention_mask"].sum(1)
  assert len(set(lengths.tolist())) == 3
  assert (lengths < minilm_batch["input_ids"].shape[1]).sum() == 2
  assert minilm_batch["token_type_ids"].max() == 1


@pytest.fixture(scope="module")
def minilm_torch(minilm_dir):
  return transformers.BertModel.from_pretrained(str(minilm_dir)).eval()


@pytest.fixture(scope="module")
def minilm_torch_out(minilm_torch, minilm_batch):
  return torch_forward(minilm_torch, minilm_batch, output_hidden_states=True)


@pytest.fixture(scope="module")
def minilm_jax(minilm_dir):
  return from_pretrained(minilm_dir)


def test_minilm_matches_pytorch(minilm_jax, minilm_torch_out, minilm_batch):
  """Acceptance criterion: MiniLM within 1e-4 of PyTorch on a padded pair batch."""
  assert minilm_jax.task is None and minilm_jax.initialized == []
  out = jax_forward(minilm_jax, minilm_batch)
  ref = minilm_torch_out.last_hidden_state.numpy()
  real = minilm_batch["attention_mask"].astype(bool)
  assert max_diff(out["last_hidden_state"], ref, real) <= TOL
  assert max_diff(out["last_hidden_state"], ref) <= TOL
  assert max_diff(out["pooler_output"], minilm_torch_out.pooler_output.numpy()) <= TOL


def test_minilm_output_hidden_states(minilm_jax, minilm_torch_out, minilm_batch):
  out = jax_forward(minilm_jax, minilm_batch, output_hidden_states=True)
  ref = minilm_torch_out.hidden_states
  assert len(out["hidden_states"]) == minilm_jax.config.num_hidden_layers + 1 == len(ref)
  for i, (got, want) in enumerate(zip(out["hidden_states"], ref)):
    assert max_diff(got, want.numpy()) <= TOL, f"hidden_states[{i}]"
  np.testing.assert_array_equal(out["hidden_states"][-1], out["last_hidden_state"])
  assert "hidden_states" not in jax_forward(minilm_jax, minilm_batch)


def test_minilm_bf16_close_to_pytorch_fp32(minilm_dir, minilm_torch_out, minilm_batch):
  pre = from_pretrained(minilm_dir, dtype=jnp.bfloat16)
  for path, leaf in traverse_util.flatten_dict(pre.params, sep="/").items():
    assert leaf.dtype == jnp.float32, path
  out = jax.jit(lambda p, b: pre.module.apply({"params": p}, **b))(
      pre.params, {k: jnp.asarray(v) for k, v in minilm_batch.items()})
  ref = minilm_torch_out.last_hidden_state.numpy().astype(np.float64)
  got = np.asarray(out["last_hidden_state"], np.float64)
  real = minilm_batch["attention_mask"].astype(bool)
  rel = np.linalg.norm(got[real] - ref[real]) / np.linalg.norm(ref[real])
  assert rel <= 5e-2, rel
  # Loosely close, but not fp32-exact: the bf16 compute really happened.
  assert max_diff(got, ref) > TOL
  pooled_ref = minilm_torch_out.pooler_output.numpy()
  pooled = np.asarray(out["pooler_output"], np.float64)
  assert np.linalg.norm(pooled - pooled_ref) / np.linalg.norm(pooled_ref) <= 5e-2


# --------------------------------------------------------------------------- task heads


@pytest.fixture(scope="module")
def tiny(make_tiny_hf):
  """``tiny(arch, task, **config)`` -> (flatjax Pretrained, PyTorch model), built once each."""
  cache = {}

  def get(arch, task, **overrides):
    key = (arch, task, tuple(sorted(overrides.items())))
    if key not in cache:
      folder, model = make_tiny_hf(arch, **overrides)
      cache[key] = from_pretrained(folder, task=task), model
    return cache[key]

  return get


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_sequence_classification_matches_pytorch(tiny, act):
  pre, model = tiny("BertForSequenceClassification", "rte", hidden_act=act, num_labels=2)
  assert pre.config.hidden_act == act
  assert pre.initialized == [] and pre.unexpected == []
  batch = random_batch()
  out = jax_forward(pre, batch, output_hidden_states=True)
  ref = torch_forward(model, batch, output_hidden_states=True)
  ref_base = torch_forward(model.bert, batch)
  assert out["logits"].shape == (3, 2)
  assert max_diff(out["last_hidden_state"], ref_base.last_hidden_state.numpy()) <= TOL
  assert max_diff(out["pooler_output"], ref_base.pooler_output.numpy()) <= TOL
  assert max_diff(out["logits"], ref.logits.numpy()) <= TOL
  for got, want in zip(out["hidden_states"], ref.hidden_states, strict=True):
    assert max_diff(got, want.numpy()) <= TOL


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_regression_head_matches_pytorch(tiny, act):
  pre, model = tiny("BertForSequenceClassification", "stsb", hidden_act=act, num_labels=1)
  assert pre.initialized == [] and pre.unexpected == []
  batch = random_batch(seed=1)
  out = jax_forward(pre, batch)
  ref = torch_forward(model, batch)
  assert out["logits"].shape == (3, 1) and out["logits"].dtype == jnp.float32
  assert max_diff(out["logits"], ref.logits.numpy()) <= TOL


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_question_answering_matches_pytorch(tiny, act):
  pre, model = tiny("BertForQuestionAnswering", "squad", hidden_act=act)
  assert pre.initialized == [] and pre.unexpected == []
  batch = random_batch(seed=2)
  out = jax_forward(pre, batch)
  ref = torch_forward(model, batch)
  assert "pooler_output" not in out
  assert max_diff(out["last_hidden_state"],
                  torch_forward(model.bert, batch).last_hidden_state.numpy()) <= TOL
  assert max_diff(out["start_logits"], ref.start_logits.numpy()) <= TOL
  assert max_diff(out["end_logits"], ref.end_logits.numpy()) <= TOL


def test_gelu_variants_really_differ(make_tiny_hf):
  """Guards the parametrization above: exact and tanh GELU, same weights, differ by
  several times the tolerance, so using one for the other would fail those tests."""
  batch = random_batch()
  exact = torch_forward(make_tiny_hf("BertModel", hidden_act="gelu")[1], batch)
  tanh = torch_forward(make_tiny_hf("BertModel", hidden_act="gelu_new")[1], batch)
  assert max_diff(exact.last_hidden_state.numpy(), tanh.last_hidden_state.numpy()) > 3 * TOL


# --------------------------------------------------------------------------- head gates


def _gate_hooks(model, gates):
  """PyTorch reference for head gates: transformers 5 dropped ``head_mask``.

  Hugging Face's head_mask multiplied each head's attention probabilities, so it
  scaled that head's context vector (probs @ V is linear in probs). The hooks do
  exactly that on each ``BertSelfAttention`` output, [B, L, H*D] seen as [B, L, H, D].
  """
  handles = []
  heads = model.config.num_attention_heads
  for layer, gate in zip(model.encoder.layer, gates):
    g = torch.as_tensor(np.asarray(gate, np.float32))

    def hook(module, args, output, g=g):
      context, *rest = output
      b, length, width = context.shape
      scaled = (context.view(b, length, heads, width // heads) * g[None, None, :, None])
      return (scaled.view(b, length, width), *rest)

    handles.append(layer.attention.self.register_forward_hook(hook))
  return handles


def test_head_mask_argument_is_gone_in_transformers():
  """Why the reference above uses hooks (remove them if head_mask comes back)."""
  import inspect
  from transformers.models.bert import modeling_bert
  if "head_mask" in inspect.signature(modeling_bert.BertModel.forward).parameters:
    pytest.skip("this transformers still takes head_mask")
  assert "head_mask" not in inspect.signature(modeling_bert.BertSelfAttention.forward).parameters


def test_head_gates_match_pytorch(tiny):
  pre, model = tiny("BertForSequenceClassification", "rte", hidden_act="gelu", num_labels=2)
  batch = random_batch(seed=3)
  # Layer 0: two heads off, one halved; layer 1: every head off.
  gates = np.array([[1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
  base = torch_forward(model, batch).logits.numpy()
  handles = _gate_hooks(model.bert, gates)
  try:
    ref = torch_forward(model, batch, output_hidden_states=True)
  finally:
    for h in handles:
      h.remove()
  out = jax_forward(pre, batch, head_gates=jnp.asarray(gates), output_hidden_states=True)
  assert np.abs(ref.logits.numpy() - base).max() > 10 * TOL  # the gates matter
  for got, want in zip(out["hidden_states"], ref.hidden_states, strict=True):
    assert max_diff(got, want.numpy()) <= TOL
  assert max_diff(out["logits"], ref.logits.numpy()) <= TOL
  ones = jax_forward(pre, batch, head_gates=jnp.ones_like(jnp.asarray(gates)))
  assert max_diff(ones["logits"], base) <= TOL


def test_zero_gated_layer_by_hand(tiny):
  """A layer with every head gated off has zero attention context, so its attention
  output is LayerNorm(output.dense.bias + x); derived by hand from PyTorch modules."""
  pre, model = tiny("BertForSequenceClassification", "rte", hidden_act="gelu", num_labels=2)
  model = model.bert
  batch = random_batch(seed=4)
  gates = np.ones((2, 4), np.float32)
  gates[0] = 0.0
  out = jax_forward(pre, batch, head_gates=jnp.asarray(gates), output_hidden_states=True)
  layer = model.encoder.layer[0]
  with torch.no_grad():
    x = model.embeddings(input_ids=torch.as_tensor(batch["input_ids"]),
                         token_type_ids=torch.as_tensor(batch["token_type_ids"]))
    attn = layer.attention.output.LayerNorm(layer.attention.output.dense.bias + x)
    want = layer.output(layer.intermediate(attn), attn).numpy()
  assert max_diff(out["hidden_states"][1], want) <= TOL
  ungated = jax_forward(pre, batch, output_hidden_states=True)["hidden_states"][1]
  assert max_diff(ungated, want) > 10 * TOL  # the hand-made reference is not the ungated one


# --------------------------------------------------------------------------- dropout


def test_dropout_rng_reproducible_and_active(tiny):
  pre, _ = tiny("BertForSequenceClassification", "rte", hidden_act="gelu", num_labels=2)
  assert pre.config.hidden_dropout_prob == 0.1
  assert pre.config.attention_probs_dropout_prob == 0.1
  batch = random_batch(seed=6)
  det = jax_forward(pre, batch)
  a = jax_forward(pre, batch, deterministic=False, rngs={"dropout": jax.random.key(0)})
  b = jax_forward(pre, batch, deterministic=False, rngs={"dropout": jax.random.key(0)})
  c = jax_forward(pre, batch, deterministic=False, rngs={"dropout": jax.random.key(1)})
  for key in ("last_hidden_state", "pooler_output", "logits"):
    np.testing.assert_array_equal(a[key], b[key])
    assert np.abs(np.asarray(a[key]) - np.asarray(det[key])).max() > 1e-3, key
    assert np.abs(np.asarray(a[key]) - np.asarray(c[key])).max() > 1e-3, key
  with pytest.raises(flax.errors.InvalidRngError):  # no silent fallback to a fixed key
    jax_forward(pre, batch, deterministic=False)


def test_zero_dropout_equals_deterministic(tiny):
  pre, model = tiny("BertForSequenceClassification", "rte", hidden_act="gelu", num_labels=2)
  config = dataclasses.replace(pre.config, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
  module = BertForSequenceClassification(config, num_labels=2)
  batch = {k: jnp.asarray(v) for k, v in random_batch(seed=7).items()}
  det = module.apply({"params": pre.params}, **batch)
  rnd = module.apply({"params": pre.params}, **batch, deterministic=False,
                     rngs={"dropout": jax.random.key(0)})
  for key in ("last_hidden_state", "pooler_output", "logits"):
    np.testing.assert_allclose(rnd[key], det[key], rtol=0, atol=1e-6)
  # Both are the PyTorch model in eval mode (dropout off).
  ref = torch_forward(model, random_batch(seed=7))
  assert max_diff(rnd["logits"], ref.logits.numpy()) <= TOL


def test_classifier_dropout_is_its_own_rate(tiny):
  """classifier_dropout (Hugging Face's field) drops only the pooled vector before the head."""
  pre, _ = tiny("BertForSequenceClassification", "rte", hidden_act="gelu", num_labels=2)
  config = dataclasses.replace(pre.config, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0, classifier_dropout=0.5)
  module = BertForSequenceClassification(config, num_labels=2)
  batch = {k: jnp.asarray(v) for k, v in random_batch(seed=8).items()}
  det = module.apply({"params": pre.params}, **batch)
  rnd = module.apply({"params": pre.params}, **batch, deterministic=False,
                     rngs={"dropout": jax.random.key(0)})
  np.testing.assert_allclose(rnd["pooler_output"], det["pooler_output"], rtol=0, atol=1e-6)
  assert np.abs(np.asarray(rnd["logits"]) - np.asarray(det["logits"])).max() > 1e-3
