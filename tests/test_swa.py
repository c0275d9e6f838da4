"""flatjax.optim.swa: the running mean against a numpy mean of the sampled params."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.optim import (SWA_RECIPES, OptimizerConfig, averaged_params,
                           make_optimizer, swa)


def _run(tx, grads):
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  trajectory = []
  for g in grads:
    u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    params = optax.apply_updates(params, u)
    trajectory.append(np.asarray(params["w"]))
  return trajectory, state


GRADS = np.random.RandomState(0).randn(10, 2)


def test_averages_the_params_after_sampled_steps():
  traj, state = _run(optax.chain(optax.sgd(0.5), swa(start_step=4, every=2)), GRADS)
  mean, n = averaged_params(state)
  # steps s > 4 with s % 2 == 0: params after steps 6, 8, 10 (trajectory index s - 1)
  np.testing.assert_allclose(np.asarray(mean["w"]), np.mean([traj[5], traj[7], traj[9]], 0),
                             rtol=1e-6)
  assert int(n) == 3


def test_updates_pass_through_unchanged():
  plain, _ = _run(optax.sgd(0.5), GRADS)
  averaged, _ = _run(optax.chain(optax.sgd(0.5), swa(0, 1)), GRADS)
  np.testing.assert_array_equal(np.array(plain), np.array(averaged))


def test_paper_recipe_averages_the_second_half_of_epoch_ends():
  # 10 epochs of 3 steps: end-of-epoch params of epochs 6..10
  tx = SWA_RECIPES["paper"].transform(total_steps=30, steps_per_epoch=3)
  grads = np.random.RandomState(1).randn(30, 2)
  traj, state = _run(optax.chain(optax.sgd(0.1), tx), grads)
  mean, n = averaged_params(state)
  np.testing.assert_allclose(np.asarray(mean["w"]),
                             np.mean([traj[3 * e - 1] for e in range(6, 11)], 0), rtol=1e-6)
  assert int(n) == 5


def test_registry_adds_swa_to_any_optimizer_and_rejects_empty_windows():
  config = OptimizerConfig("adam", 0.1, swa="0.5:2")
  tx = make_optimizer(config, total_steps=10)
  assert averaged_params(tx.init({"w": jnp.zeros(2)})) is not None
  assert averaged_params(make_optimizer(OptimizerConfig("adam"), 10).init({"w": 0.0})) is None
  with pytest.raises(FlatjaxInputError, match="average nothing"):
    make_optimizer(OptimizerConfig("adam", swa="0.9:3"), total_steps=10)
  with pytest.raises(ValueError):
    swa(start_step=-1)
