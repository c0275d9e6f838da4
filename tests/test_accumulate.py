"""flatjax.optim.accumulate: a batch split into K micro-batches gives the whole batch's
update for SAM, ASAM, GSAM and LookSAM on a tiny BERT (the reference: jax.value_and_grad
of the whole batch), padding rows falling unevenly included; one micro-batch's
activations in memory (XLA's memory analysis); and what optax.MultiSteps does instead."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flatjax
from flatjax.data.tasks import get_task
from flatjax.models import BertConfig, build_module, init_params
from flatjax.optim import GradFn, OptimizerConfig, make_optimizer
from flatjax.optim.accumulate import microbatched, split_batch, weighted_rows
from flatjax.train import losses

TASK = get_task("rte")


@pytest.fixture(scope="module")
def tiny():
  config = BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)
  module = build_module(config, TASK)
  return init_params(module, seed=0), losses.make_loss_fn(module, TASK, deterministic=True)


def _batch(rows: int, length: int, real: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  mask = np.ones((rows, length), np.int32)
  mask[1, length // 2:] = 0
  weight = np.zeros(rows, np.float32)
  weight[:real] = 1.0     # the padding rows all fall in the last micro-batches
  return {"input_ids": rng.integers(5, 200, (rows, length)).astype(np.int32),
          "attention_mask": mask, "token_type_ids": np.zeros((rows, length), np.int32),
          "labels": rng.integers(0, 2, rows).astype(np.int32), "example_weight": weight}


def _steps(tx, params, batches, value_and_grad):
  """Two updates of ``tx`` with the given ``value_and_grad(params, batch, key)``."""
  key = jax.random.key(0)

  @jax.jit
  def step(params, opt_state, batch):
    (_, _), grads = value_and_grad(params, batch, key)
    grad_fn = GradFn(lambda p: value_and_grad(p, batch, key))
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  for batch in batches:
    params, opt_state = step(params, opt_state, batch)
  return params


@pytest.mark.parametrize("name,settings", [("sam", {}), ("asam", {}), ("gsam", {}),
                                           ("looksam", {"k": 2})])
def test_k_micro_batches_give_the_whole_batch_update(tiny, name, settings):
  params, loss_fn = tiny
  # LookSAM with k = 2: the first update is exact, the second reuses its direction.
  tx = make_optimizer(OptimizerConfig(name=name, learning_rate=1e-2, settings=settings), 10)
  batches = [_batch(8, 16, real=5, seed=0), _batch(8, 16, real=8, seed=1)]
  whole = _steps(tx, params, batches, jax.value_and_grad(loss_fn, has_aux=True))
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
              zip(jax.tree.leaves(whole), jax.tree.leaves(params)))
  assert moved > 1e-3
  for k in (1, 2, 4):
    accumulated = _steps(tx, params, batches, microbatched(loss_fn, k, has_aux=True,
                                                           weight_fn=weighted_rows()))
    for a, b in zip(jax.tree.leaves(accumulated), jax.tree.leaves(whole)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_four_micro_batches_hold_at_most_04_of_the_temp_memory(tiny):
  params, loss_fn = tiny
  tx = flatjax.optim.make_optimizer(OptimizerConfig(name="sam", learning_rate=1e-3), 10)
  batch = _batch(32, 128, real=32)

  def temp_bytes(k):
    vg = microbatched(loss_fn, k, has_aux=True, weight_fn=weighted_rows())

    def step(params, opt_state, batch, key):
      (_, _), grads = vg(params, batch, key)
      grad_fn = GradFn(lambda p: vg(p, batch, key))
      return tx.update(grads, opt_state, params, grad_fn=grad_fn)
    compiled = jax.jit(step).lower(params, tx.init(params), batch, jax.random.key(0)).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temp_bytes(4) <= 0.4 * temp_bytes(1)


def test_each_micro_batch_gets_its_own_key():
  # loss_i = u_i * mean(x_i), u_i ~ U(0, 1) from fold_in(key, i): the value by hand.
  x = jnp.arange(8.0)
  key = jax.random.key(3)
  loss = lambda w, b, k: w * jax.random.uniform(k) * jnp.mean(b)
  value, grad = microbatched(loss, 2)(2.0, x, key)
  u = [float(jax.random.uniform(jax.random.fold_in(key, i))) for i in range(2)]
  assert float(grad) == pytest.approx(0.5 * (u[0] * 1.5 + u[1] * 5.5), rel=1e-6)
  assert float(value) == pytest.approx(2.0 * float(grad), rel=1e-6)


def test_a_batch_that_does_not_split_is_a_clear_error():
  with pytest.raises(ValueError, match="6 rows does not split into 4"):
    split_batch({"x": np.zeros((6, 2))}, 4)
  with pytest.raises(ValueError, match=">= 1"):
    microbatched(lambda w, b: w, 0)


def test_optax_multisteps_hands_sam_the_last_micro_batchs_grad_fn():
  # What the docs say MultiSteps does: SAM gets the mean clean gradient (so e is the
  # batch's) but evaluates the perturbed gradient on the last micro-batch only.
  rng = np.random.default_rng(0)
  x, y = jnp.asarray(rng.normal(size=(8, 3))), jnp.asarray(rng.normal(size=8))
  loss = lambda w, b: jnp.mean((jnp.tanh(b[0] @ w) - b[1]) ** 2)
  w = jnp.asarray(rng.normal(size=3), jnp.float32)
  rho = 0.5
  tx = optax.MultiSteps(optax.chain(flatjax.sam(rho), optax.sgd(1.0)), 2)
  state = tx.init(w)
  for i in range(2):
    part = (x[4 * i:4 * i + 4], y[4 * i:4 * i + 4])
    updates, state = tx.update(jax.grad(loss)(w, part), state, w,
                               grad_fn=lambda p, part=part: jax.grad(loss)(p, part))
  g = jax.grad(loss)(w, (x, y))
  e = rho * g / jnp.linalg.norm(g)
  last = -jax.grad(loss)(w + e, (x[4:], y[4:]))
  whole = -jax.grad(loss)(w + e, (x, y))
  np.testing.assert_allclose(updates, last, atol=1e-5)
  assert float(jnp.max(jnp.abs(updates - whole))) > 1e-2
