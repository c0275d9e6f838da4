"""Movement pruning (flatjax.sparsity.methods) in the train step, against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models import BertConfig, build_module, init_params
from flatjax.optim import registry
from flatjax.sparsity import masks
from flatjax.sparsity.methods import MovementState, make_pruner, movement_pruning
from flatjax.sparsity.pruner import cubic_sparsity_schedule
from flatjax.train import losses, state as state_lib, steps
from flatjax.train.state import step_key


# A linear model y = x W + b with loss 0.5 * sum((x W' + b - y)^2), W' = W * M:
# dL/dW' = x^T r, dL/db = sum_rows r with r = x W' + b - y.
def _linear_loss(params, batch, rng):
  del rng
  r = batch["x"] @ params["w"]["kernel"] + params["w"]["bias"] - batch["y"]
  return 0.5 * jnp.sum(r * r), {}


# Two layers, for per-tensor vs global: sizes 35 and 21.
def _mlp_loss(params, batch, rng):
  del rng
  h = jnp.tanh(batch["x"] @ params["a"]["kernel"] + params["a"]["bias"])
  r = h @ params["b"]["kernel"] - batch["y"]
  return 0.5 * jnp.sum(r * r), {}


def _mlp(seed):
  rng = np.random.default_rng(seed)
  params = {"a": {"kernel": rng.normal(size=(5, 7)).astype(np.float32),
                  "bias": rng.normal(size=7).astype(np.float32)},
            "b": {"kernel": rng.normal(size=(7, 3)).astype(np.float32)}}
  batches = [{"x": rng.normal(size=(6, 5)).astype(np.float32),
              "y": rng.normal(size=(6, 3)).astype(np.float32)} for _ in range(12)]
  return jax.tree.map(jnp.asarray, params), batches


def _top(scores, keep):
  """Reference top-k: the ``keep`` largest, ties to the earlier (stable argsort)."""
  flat = np.asarray(scores, np.float64).reshape(-1)
  out = np.zeros(flat.size, bool)
  out[np.argsort(-flat, kind="stable")[:keep]] = True
  return out.reshape(np.shape(scores))


def test_scores_accumulate_minus_weight_times_masked_gradient():
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(4, 3))
  b0 = rng.normal(size=3)
  batches = [{"x": rng.normal(size=(5, 4)), "y": rng.normal(size=(5, 3))} for _ in range(3)]
  lr = 0.05
  # Prune half of W's 12 entries after the first step (s(1) = 0.5), then keep it.
  pruner = movement_pruning(0.5, begin_step=0, end_step=1, scope=r"kernel$")
  tx = optax.sgd(lr)
  params = {"w": {"kernel": jnp.asarray(w0, jnp.float32), "bias": jnp.asarray(b0, jnp.float32)}}
  state = state_lib.create(params, tx, seed=0, pruner=pruner)
  assert state.mask["w"]["bias"] is None and bool(np.all(state.mask["w"]["kernel"]))
  step = jax.jit(steps.make_train_step(_linear_loss, tx, pruner=pruner))

  w, b, m, scores = w0.copy(), b0.copy(), np.ones_like(w0, bool), np.zeros_like(w0)
  pruned_gradients = []
  for t, batch in enumerate(batches):
    state, metrics = step(state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), batch))
    r = batch["x"] @ (w * m) + b - batch["y"]
    g = batch["x"].T @ r                       # dL/dW', dense
    pruned_gradients.extend(np.abs(g[~m]))
    scores = scores - w * g
    w, b = w - lr * g * m, b - lr * r.sum(0)
    m = _top(scores, 6)                        # 12 - round(0.5 * 12); s(t+1) = 0.5 for t >= 0
    assert float(metrics["sparsity"]) == (0.0 if t == 0 else 0.5)
  assert len(pruned_gradients) == 12 and min(pruned_gradients) > 1e-3  # they do score
  assert isinstance(state.pruning, MovementState) and state.pruning.scores["w"]["bias"] is None
  np.testing.assert_allclose(state.pruning.scores["w"]["kernel"], scores, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(state.mask["w"]["kernel"], m)
  np.testing.assert_allclose(state.params["w"]["kernel"], w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.params["w"]["bias"], b, rtol=1e-5, atol=1e-6)
  assert int(state.step) == 3


def test_cubic_schedule_matches_the_formula():
  s = cubic_sparsity_schedule(0.8, begin_step=10, end_step=20)
  for t, want in [(0, 0.0), (10, 0.0), (12, 0.8 * (1 - 0.8 ** 3)), (15, 0.7), (19, 0.8 * 0.999),
                  (20, 0.8), (500, 0.8)]:
    assert float(s(t)) == pytest.approx(want, abs=1e-6), t
  s = cubic_sparsity_schedule(0.8, begin_step=10, end_step=20, initial_sparsity=0.1)
  assert float(s(3)) == pytest.approx(0.1)
  assert float(s(15)) == pytest.approx(0.8 - 0.7 * 0.125)
  assert float(jax.jit(s)(jnp.int32(15))) == pytest.approx(0.8 - 0.7 * 0.125)


@pytest.mark.parametrize("kwargs", [
    dict(final_sparsity=1.5, begin_step=0, end_step=2),
    dict(final_sparsity=float("nan"), begin_step=0, end_step=2),
    dict(final_sparsity=0.5, begin_step=0, end_step=2, initial_sparsity=-0.1),
    dict(final_sparsity=0.5, begin_step=-1, end_step=2),
    dict(final_sparsity=0.5, begin_step=3, end_step=3),
    dict(final_sparsity=0.5, begin_step=0, end_step=2.5)])
def test_schedule_rejects_bad_arguments(kwargs):
  with pytest.raises(FlatjaxInputError):
    cubic_sparsity_schedule(**kwargs)


def test_pruner_registry_and_argument_checks():
  assert make_pruner("movement", sparsity=0.5, begin_step=0, end_step=4).final_sparsity == 0.5
  with pytest.raises(FlatjaxInputError, match="unknown pruning method"):
    make_pruner("magnitude_oops", sparsity=0.5)
  with pytest.raises(FlatjaxInputError, match="granularity"):
    movement_pruning(0.5, begin_step=0, end_step=4, granularity="per_row")
  with pytest.raises(FlatjaxInputError, match="update_every"):
    movement_pruning(0.5, begin_step=0, end_step=4, update_every=0)
  params, _ = _mlp(0)
  with pytest.raises(FlatjaxInputError, match="matches no parameter"):
    state_lib.create(params, optax.sgd(0.1), 0, pruner=movement_pruning(
        0.5, begin_step=0, end_step=4, scope=r"query"))
  wrong = {"a": {"kernel": jnp.ones((5, 7), bool), "bias": None}, "b": {"kernel": None}}
  with pytest.raises(FlatjaxInputError, match="same params"):
    state_lib.create(params, optax.sgd(0.1), 0, mask=wrong, pruner=movement_pruning(
        0.5, begin_step=0, end_step=4, scope=r"kernel$"))


@pytest.mark.parametrize("granularity", ["per_tensor", "global"])
def test_mask_keeps_the_top_scores_at_the_scheduled_sparsity(granularity):
  params, batches = _mlp(1)
  # s = 0.7: 35 * 0.7 = 24.5 rounds to 24 (as num_to_prune), 21 * 0.7 = 14.7 to 15.
  pruner = movement_pruning(0.7, begin_step=2, end_step=6, scope=r"kernel$",
                            granularity=granularity)
  tx = optax.adam(0.05)
  state = state_lib.create(params, tx, seed=0, pruner=pruner)
  step = jax.jit(steps.make_train_step(_mlp_loss, tx, pruner=pruner))
  sparsities = []
  for t, batch in enumerate(batches[:9]):
    state, metrics = step(state, batch)
    sparsities.append(float(metrics["sparsity"]))
    s = float(pruner.sparsity_at(t + 1))
    a, b = np.asarray(state.pruning.scores["a"]["kernel"]), np.asarray(
        state.pruning.scores["b"]["kernel"])
    if granularity == "per_tensor":
      want_a = _top(a, 35 - masks.num_to_prune(35, s))
      want_b = _top(b, 21 - masks.num_to_prune(21, s))
    else:
      both = _top(np.concatenate([a.reshape(-1), b.reshape(-1)]), 56 - masks.num_to_prune(56, s))
      want_a, want_b = both[:35].reshape(a.shape), both[35:].reshape(b.shape)
    np.testing.assert_array_equal(state.mask["a"]["kernel"], want_a, err_msg=f"step {t}")
    np.testing.assert_array_equal(state.mask["b"]["kernel"], want_b, err_msg=f"step {t}")
  assert state.mask["a"]["bias"] is None
  np.testing.assert_allclose(sparsities, [0, 0, 0, 0.7 * (1 - 0.75 ** 3), 0.7 * (1 - 0.5 ** 3),
                                          0.7 * (1 - 0.25 ** 3), 0.7, 0.7, 0.7], atol=1e-6)
  kept = [int(np.sum(state.mask[n]["kernel"])) for n in ("a", "b")]
  if granularity == "per_tensor":
    assert kept == [11, 6]
  else:
    assert sum(kept) == 56 - round(0.7 * 56)
  # The forward pass used the mask but pruned weights were not zeroed.
  pruned = ~np.asarray(state.mask["a"]["kernel"])
  assert np.all(np.asarray(state.params["a"]["kernel"])[pruned] != 0)


def _tiny_bert():
  config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=16)
  task = get_task("rte")
  module = build_module(config, task)
  rng = np.random.default_rng(3)
  batches = []
  for _ in range(4):
    attn = np.ones((4, 10), np.int32)
    attn[1, 6:] = 0
    batches.append({"input_ids": rng.integers(5, 100, (4, 10)).astype(np.int32),
                    "attention_mask": attn, "token_type_ids": np.zeros((4, 10), np.int32),
                    "labels": np.array([0, 1, 1, 0], np.int32),
                    "example_weight": np.ones(4, np.float32)})
  return module, task, init_params(module, seed=0), batches


def test_movement_pruning_with_sam_on_a_tiny_bert():
  module, task, params, batches = _tiny_bert()
  tx = registry.make_optimizer(registry.OptimizerConfig(name="sam", learning_rate=1e-3),
                               total_steps=4)
  pruner = movement_pruning(0.75, begin_step=0, end_step=3)  # BERT_SCOPE, per tensor
  state = state_lib.create(params, tx, seed=0, pruner=pruner)
  step = jax.jit(steps.make_train_step(losses.make_loss_fn(module, task), tx, pruner=pruner))
  for batch in batches:
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["perturbed_loss"]))
  leaves = masks.mask_leaves(state.mask)
  assert len(leaves) == 6 + 1   # Q, K, V, attention output, intermediate, output; pooler
  for name, m in leaves:
    assert int(m.sum()) == m.size - round(0.75 * m.size), name
  assert masks.sparsity(state.mask) == pytest.approx(0.75)
  assert float(metrics["sparsity"]) == pytest.approx(0.75)
  assert state.mask["classifier"]["kernel"] is None
  assert np.isfinite(np.asarray(state.pruning.scores["bert"]["pooler"]["dense"]["kernel"])).all()


def test_mask_changes_only_on_update_steps():
  params, batches = _mlp(2)
  pruner = movement_pruning(0.6, begin_step=0, end_step=6, scope=r"kernel$", update_every=4)
  tx = optax.sgd(0.1)
  state = state_lib.create(params, tx, seed=0, pruner=pruner)
  step = jax.jit(steps.make_train_step(_mlp_loss, tx, pruner=pruner))
  changed, refreshed = [], []
  for t, batch in enumerate(batches[:11]):
    before = [np.asarray(state.mask[n]["kernel"]) for n in ("a", "b")]
    state, _ = step(state, batch)
    after = [np.asarray(state.mask[n]["kernel"]) for n in ("a", "b")]
    if any(not np.array_equal(x, y) for x, y in zip(before, after)):
      changed.append(t)
    if (t + 1) % 4 == 0 or t + 1 == 6:
      refreshed.append(t)
      s = float(pruner.sparsity_at(t + 1))
      for n, m in zip(("a", "b"), after):
        scores = np.asarray(state.pruning.scores[n]["kernel"])
        np.testing.assert_array_equal(m, _top(scores, scores.size - round(s * scores.size)))
  assert refreshed == [3, 5, 7]
  # The target rises every step up to 6, but the mask follows only at 3 (keeping
  # 15 of 35 and 9 of 21) and 5 (14 and 8); at 7 it may change, at fixed sparsity.
  assert {3, 5} <= set(changed) <= set(refreshed)


def _step_before_pruners(loss_fn, tx):
  """make_train_step as it was before pruners (the reference for pruner=None)."""
  from flatjax.optim.grad_fn import GradFn

  def train_step(state, batch):
    rng = step_key(state)

    def masked_loss(params, batch=batch):
      return loss_fn(masks.apply_mask(params, state.mask), batch, rng)

    grad_of = jax.value_and_grad(masked_loss, has_aux=True)
    (loss, aux), grads = grad_of(state.params)
    grad_fn = GradFn(grad_of, base_params=state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, grad_fn=grad_fn)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    perturbed = optax.tree.get_all_with_path(opt_state, "perturbed_loss")
    if perturbed:
      metrics["perturbed_loss"] = perturbed[0][1]
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics
  return train_step


def test_without_a_pruner_the_step_is_bitwise_unchanged():
  module, task, params, batches = _tiny_bert()
  tx = registry.make_optimizer(registry.OptimizerConfig(name="adam", learning_rate=1e-3),
                               total_steps=4)
  loss_fn = losses.make_loss_fn(module, task)
  mask = masks.magnitude_mask(params, 0.5)
  new, old = (jax.jit(f) for f in (steps.make_train_step(loss_fn, tx),
                                   _step_before_pruners(loss_fn, tx)))
  a = b = state_lib.create(params, tx, seed=0, mask=mask)
  assert a.pruning is None
  for batch in batches[:2]:
    (a, ma), (b, mb) = new(a, batch), old(b, batch)
    assert "sparsity" not in ma
    for x, y in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb))):
      np.testing.assert_array_equal(x, y)


def test_zero_sparsity_pruner_trains_like_the_dense_step():
  # With nothing pruned, the gradient with respect to W' is the gradient w.r.t. W.
  params, batches = _mlp(3)
  tx = optax.adam(0.05)
  pruner = movement_pruning(0.0, begin_step=0, end_step=2, scope=r"kernel$")
  a = state_lib.create(params, tx, seed=0, pruner=pruner)
  b = state_lib.create(params, tx, seed=0)
  with_pruner = jax.jit(steps.make_train_step(_mlp_loss, tx, pruner=pruner))
  without = jax.jit(steps.make_train_step(_mlp_loss, tx))
  for batch in batches[:4]:
    (a, ma), (b, mb) = with_pruner(a, batch), without(b, batch)
    assert float(ma["loss"]) == pytest.approx(float(mb["loss"]), rel=1e-6)
  assert masks.sparsity(a.mask) == 0.0
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
