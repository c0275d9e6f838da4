"""The pruning interface (flatjax.sparsity.pruner, .methods): a scoring rule plus a
schedule, used once (one-shot, IMP) or gradually in the train step; numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.sparsity import methods, pruner
from flatjax.sparsity.pruner import Scoring
from flatjax.train import state as state_lib, steps


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {"a": {"kernel": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=7), jnp.float32)},
          "b": {"kernel": jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)}}


def _smallest(values, n):
  """Reference: a keep-mask removing the ``n`` smallest (ties: the later go first kept)."""
  flat = np.asarray(values, np.float64).reshape(-1)
  keep = np.ones(flat.size, bool)
  keep[np.argsort(flat, kind="stable")[:n]] = False
  return keep.reshape(np.shape(values))


@pytest.mark.parametrize("granularity", ["global", "per_tensor"])
def test_magnitude_once_removes_the_smallest_weights(granularity):
  params = _params()
  mask = pruner.prune_once(methods.get_scoring("magnitude"), params, 0.6, scope=r"kernel$",
                           granularity=granularity)
  a, b = np.abs(params["a"]["kernel"]), np.abs(params["b"]["kernel"])
  if granularity == "global":  # 56 weights: round(33.6) = 34 removed over both
    both = _smallest(np.concatenate([a.reshape(-1), b.reshape(-1)]), 34)
    want = both[:35].reshape(5, 7), both[35:].reshape(7, 3)
  else:  # round(21.0) = 21 of a's 35, round(12.6) = 13 of b's 21
    want = _smallest(a, 21), _smallest(b, 13)
  np.testing.assert_array_equal(mask["a"]["kernel"], want[0])
  np.testing.assert_array_equal(mask["b"]["kernel"], want[1])
  assert mask["a"]["bias"] is None


def test_magnitude_once_keeps_earlier_pruning_as_imp_does():
  params = _params(1)
  first = pruner.prune_once(methods.magnitude_scoring(), params, 0.3, scope=r"kernel$")
  # Make a pruned weight the largest: pruned weights stay pruned all the same.
  a = np.asarray(params["a"]["kernel"]).copy()
  i = np.argwhere(~np.asarray(first["a"]["kernel"]))[0]
  a[tuple(i)] = 100.0
  grown = {**params, "a": {**params["a"], "kernel": jnp.asarray(a)}}
  second = pruner.prune_once(methods.magnitude_scoring(), grown, 0.5, previous=first)
  for name in ("a", "b"):
    assert not np.any(np.asarray(second[name]["kernel"]) & ~np.asarray(first[name]["kernel"]))
  assert sum(int(np.sum(~np.asarray(second[n]["kernel"]))) for n in ("a", "b")) == 28


def test_random_scores_prune_the_exact_count_and_depend_only_on_the_seed():
  params = _params()
  masks_ = [pruner.prune_once(methods.get_scoring("random", seed=s), params, 0.5,
                              scope=r"kernel$", granularity="per_tensor") for s in (0, 0, 1)]
  for mask in masks_:
    assert int(np.sum(~np.asarray(mask["a"]["kernel"]))) == 18   # round(17.5): half to even
    assert int(np.sum(~np.asarray(mask["b"]["kernel"]))) == 10   # round(10.5)
  np.testing.assert_array_equal(masks_[0]["a"]["kernel"], masks_[1]["a"]["kernel"])
  assert np.any(np.asarray(masks_[0]["a"]["kernel"]) != np.asarray(masks_[2]["a"]["kernel"]))


def test_trained_scores_cannot_prune_once_and_unknown_names_are_refused():
  with pytest.raises(FlatjaxInputError, match="from training"):
    pruner.prune_once(methods.get_scoring("movement"), _params(), 0.5)
  with pytest.raises(FlatjaxInputError, match="unknown pruning method 'l0'"):
    methods.get_scoring("l0")


def _linear_loss(params, batch, rng):
  del rng
  r = batch["x"] @ params["w"]["kernel"] + params["w"]["bias"] - batch["y"]
  return 0.5 * jnp.sum(r * r), {}


def test_gradual_magnitude_pruning_follows_the_schedule_on_the_masked_weights():
  """SGD on a linear model, replayed in numpy: after each step the mask keeps
  the largest |W * M| at the cubic schedule's sparsity, so a pruned weight
  (0 in the forward pass) never comes back."""
  rng = np.random.default_rng(0)
  w0, b0 = rng.normal(size=(4, 5)), rng.normal(size=5)
  batches = [{"x": rng.normal(size=(6, 4)), "y": rng.normal(size=(6, 5))} for _ in range(6)]
  lr = 0.05
  prune = methods.make_pruner("magnitude", sparsity=0.6, begin_step=0, end_step=4,
                              scope=r"kernel$")
  tx = optax.sgd(lr)
  params = {"w": {"kernel": jnp.asarray(w0, jnp.float32), "bias": jnp.asarray(b0, jnp.float32)}}
  state = state_lib.create(params, tx, seed=0, pruner=prune)
  step = jax.jit(steps.make_train_step(_linear_loss, tx, pruner=prune))
  w, b, m = w0.copy(), b0.copy(), np.ones_like(w0, bool)
  for t, batch in enumerate(batches):
    state, _ = step(state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), batch))
    r = batch["x"] @ (w * m) + b - batch["y"]
    w, b = w - lr * (batch["x"].T @ r) * m, b - lr * r.sum(0)
    s = float(prune.sparsity_at(t + 1))  # float32, as the pruner counts with it
    assert s == pytest.approx(0.6 * (1 - (1 - min(t + 1, 4) / 4) ** 3))  # Zhu & Gupta's cubic
    previous, m = m, _smallest(np.abs(w * m), int(np.round(np.float32(s) * np.float32(20))))
    assert not np.any(m & ~previous), f"step {t}: a pruned weight came back"
    np.testing.assert_array_equal(state.mask["w"]["kernel"], m, err_msg=f"step {t}")
  assert int(np.sum(~m)) == 12
  np.testing.assert_allclose(state.params["w"]["kernel"], w, rtol=1e-5, atol=1e-6)


def test_a_registered_method_is_usable_by_name():
  """A new method is one register call: here, keep the weights closest to 1."""
  def near_one():
    return Scoring(init=lambda in_scope: (), update=lambda state, params, grads: state,
                   scores=lambda state, params: jax.tree.map(
                       lambda p: None if p is None else -jnp.abs(p - 1.0), params,
                       is_leaf=lambda x: x is None))
  methods.register("near_one", near_one)
  try:
    params = {"w": {"kernel": jnp.asarray([[1.0, 5.0], [0.9, -1.0]])}}
    mask = pruner.prune_once(methods.get_scoring("near_one"), params, 0.5, scope=r"kernel$")
    np.testing.assert_array_equal(mask["w"]["kernel"], [[True, False], [True, False]])
    assert methods.make_pruner("near_one", sparsity=0.5, begin_step=0,
                               end_step=2).final_sparsity == 0.5
  finally:
    del methods.SCORINGS["near_one"]
