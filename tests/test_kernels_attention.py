"""flatjax.kernels.attention: the context product against sums worked out by hand.

The reference is numpy: each output summed over the contracted index in
``lanes`` interleaved partial sums, one multiply-add a term rounded once to
float32 (the product of two float32s is exact in float64), added pairwise.
Then: the model's path gives XLA's einsum bit for bit, and its derivatives
are the einsum's.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from flatjax import kernels
from flatjax.kernels import attention


def needs_kernel():
  if (reason := kernels.unavailable_reason()) is not None:
    pytest.skip(f"no native kernels here: {reason}")


def in_lanes(a, b, lanes):
  """out[..., r, c] = sum_t a[..., r, t] b[..., t, c] in lanes partial sums."""
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  partial = []
  for lane in range(lanes):
    acc = np.zeros(a.shape[:-1] + b.shape[-1:], np.float32)
    for t in range(lane, a.shape[-1], lanes):
      acc = (acc.astype(np.float64) + a64[..., :, t, None] * b64[..., None, t, :]).astype(
          np.float32)
    partial.append(acc)
  while len(partial) > 1:
    partial = [partial[i] + partial[i + 1] for i in range(0, len(partial), 2)]
  return partial[0]


def context_by_hand(probs, v, lanes):
  """[B, H, Q, K] x [B, K, H, D] -> [B, Q, H, D]."""
  return in_lanes(probs, v.transpose(0, 2, 1, 3), lanes).transpose(0, 2, 1, 3)


def operands(rng, b, h, q, k, d):
  probs = rng.random((b, h, q, k), dtype=np.float32)
  return probs / probs.sum(-1, keepdims=True), rng.standard_normal((b, k, h, d)).astype(np.float32)


SHAPES = [(1, 1, 1, 1, 1), (2, 3, 7, 9, 5), (1, 2, 13, 30, 40), (2, 2, 25, 11, 64),
          (1, 12, 12, 16, 32)]


@pytest.mark.parametrize("lanes", attention.LANES)
@pytest.mark.parametrize("shape", SHAPES)
def test_context_kernel_sums_in_lanes_as_by_hand(shape, lanes):
  """Every tail: rows past whole tiles, keys past whole lanes, features past
  whole vectors."""
  needs_kernel()
  probs, v = operands(np.random.default_rng(sum(shape) * lanes), *shape)
  got = np.asarray(jax.jit(attention.kernel_context, static_argnums=2)(probs, v, lanes))
  np.testing.assert_array_equal(got, context_by_hand(probs, v, lanes))


def test_the_lanes_differ():
  """The reference tells the three orders apart (else the tests above prove
  little): on the same operands no two give the same bits."""
  probs, v = operands(np.random.default_rng(0), 1, 2, 8, 64, 16)
  outs = [context_by_hand(probs, v, lanes) for lanes in attention.LANES]
  assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])
  assert not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("b,length", [(32, 128), (8, 48), (2, 16), (4, 32)])
def test_context_gives_xlas_bits_at_minilms_shapes(b, length):
  """MiniLM's 12 heads of 32 at padded lengths: the kernel where it matches
  XLA's order, and the same bits as XLA's einsum either way."""
  needs_kernel()
  probs, v = operands(np.random.default_rng(length), b, 12, length, length, 32)
  lanes = attention.xla_lanes(probs.shape, v.shape)
  hlo = jax.jit(attention.context).lower(probs, v).as_text()
  assert (attention.CONTEXT in hlo) == (lanes is not None)
  with kernels.xla_only():
    xla = np.asarray(jax.jit(lambda p, v: attention.context(p, v))(probs, v))
  np.testing.assert_array_equal(np.asarray(jax.jit(attention.context)(probs, v)), xla)


def test_xla_lanes_finds_minilms_order():
  """At MiniLM's 32 x 128 batch XLA:CPU sums in order (one lane): the shape
  most committed CPU results were evaluated at."""
  needs_kernel()
  assert attention.xla_lanes((32, 12, 128, 128), (32, 128, 12, 32)) == 1


def test_derivatives_are_the_einsums():
  """Gradients, and a Hessian-vector product (forward over reverse), equal the
  einsum's own; vmap runs one call per example."""
  needs_kernel()
  rng = np.random.default_rng(1)
  probs, v = operands(rng, 2, 12, 16, 16, 32)
  w = rng.standard_normal((2, 16, 12, 32)).astype(np.float32)

  def loss(f):
    return lambda a, b: jnp.sum(jnp.tanh(f(a, b)) * w)

  grads = jax.jit(jax.grad(loss(attention.context), argnums=(0, 1)))(probs, v)
  expected = jax.jit(jax.grad(loss(attention.einsum_context), argnums=(0, 1)))(probs, v)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-6, atol=1e-6)

  def hvp(f):
    grad_v = jax.grad(loss(f), argnums=1)
    return jax.jit(lambda a, b, t: jax.jvp(lambda b: grad_v(a, b), (b,), (t,))[1])

  t = np.ones_like(v)
  np.testing.assert_allclose(np.asarray(hvp(attention.context)(probs, v, t)),
                             np.asarray(hvp(attention.einsum_context)(probs, v, t)),
                             rtol=1e-5, atol=1e-5)
  batched = jax.vmap(attention.context)(probs[:, None], v[:, None])[:, 0]
  np.testing.assert_allclose(np.asarray(batched), np.asarray(attention.einsum_context(probs, v)),
                             rtol=1e-6, atol=1e-6)


def test_a_bert_gives_xlas_bits_on_the_kernels():
  """A 2-layer BERT with heads of 32 (MiniLM's): float32 and int8 logits at three
  padded shapes, and a train step with dropout, bitwise those of the XLA-only path."""
  needs_kernel()
  from flatjax.data.tasks import get_task
  from flatjax.models import BertConfig, build_module, init_params
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.quant import model as quant_model
  from flatjax.train import losses, state as train_state, steps

  task = get_task("sst2")
  config = BertConfig(vocab_size=500, hidden_size=96, num_hidden_layers=2, num_attention_heads=3,
                      intermediate_size=128, max_position_embeddings=64)
  module = build_module(config, task)
  params = init_params(module, seed=0)
  qparams = quant_model.quantize_params(params, "dynamic")
  tx = make_optimizer(OptimizerConfig("adamw", 1e-3), 10)
  rng = np.random.default_rng(0)

  def batch(b, length):
    lengths = rng.integers(2, length + 1, b)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    return {"input_ids": jnp.asarray(rng.integers(1, 500, (b, length)) * mask, jnp.int32),
            "attention_mask": jnp.asarray(mask),
            "token_type_ids": jnp.zeros((b, length), jnp.int32),
            "labels": jnp.asarray(rng.integers(0, 2, b), jnp.int32),
            "example_weight": jnp.ones(b, jnp.float32)}

  batches = [batch(8, 48), batch(4, 32), batch(2, 16)]
  # The kernel runs at these shapes (else the test would compare XLA with itself).
  assert all(attention.xla_lanes((b, 3, n, n), (b, n, 3, 32)) is not None
             for b, n in ((8, 48), (4, 32), (2, 16)))

  def outputs():  # traced afresh each call
    fstep = jax.jit(steps.make_eval_step(module))
    qstep = jax.jit(quant_model.make_quantized_eval_step(module, "dynamic"))
    out = [np.asarray(step(p, None, b)["logits"]) for b in batches
           for step, p in ((fstep, params), (qstep, qparams))]
    train = jax.jit(steps.make_train_step(losses.make_loss_fn(module, task, deterministic=False),
                                          tx))
    state, _ = train(train_state.create(params, tx, 0), batches[0])
    return out + [np.asarray(x) for x in jax.tree.leaves(state.params)]

  on_kernels = outputs()
  with kernels.xla_only():
    on_xla = outputs()
  for got, expected in zip(on_kernels, on_xla):
    np.testing.assert_array_equal(got, expected)
