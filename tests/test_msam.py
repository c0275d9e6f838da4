"""flatjax.optim.msam against Becker et al.'s Algorithm 1 (SGD with momentum) written out
by hand on tests/quadratic.py's loss: the held (perturbed) weights, the weights behind them,
and one gradient per step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flatjax
from flatjax.optim import unperturbed
from quadratic import W0, grad, loss


def _algorithm_1(steps, rho, lr, mu):
  """w~_0 = w_0, v_0 = 0; g = grad(w~); w = w~ + rho v/|v|; v = mu v + g; w = w - lr v;
  w~ = w - rho v/|v|. Returns the held w~ and the w behind them after each step."""
  unit = lambda v: v / np.linalg.norm(v) if np.linalg.norm(v) else v
  held, v, out = W0.copy(), np.zeros(3), []
  for _ in range(steps):
    g = grad(held)
    w = held + rho * unit(v)
    v = mu * v + g
    w = w - lr * v
    held = w - rho * unit(v)
    out.append((held.copy(), w.copy()))
  return out


def test_msam_on_sgd_with_momentum_is_algorithm_1():
  rho, lr, mu = 0.3, 0.05, 0.9
  tx = flatjax.msam(optax.sgd(lr, momentum=mu), rho)
  params = {"w": jnp.asarray(W0, jnp.float32)}
  state = tx.init(params)
  calls = []

  def gradient(p):
    calls.append(1)
    return jax.grad(loss)(p)
  for want_held, want_w in _algorithm_1(4, rho, lr, mu):
    updates, state = tx.update(gradient(params), state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params["w"]), want_held, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(unperturbed(params, state)["w"]), want_w,
                               rtol=1e-5, atol=1e-6)
  assert len(calls) == 4          # one gradient per step, none extra


def test_unperturbed_without_msam_is_the_params_and_params_are_required():
  params = {"w": jnp.ones(2)}
  state = optax.adam(0.1).init(params)
  assert unperturbed(params, state) is params
  tx = flatjax.msam(optax.sgd(0.1), 0.1)
  with pytest.raises(ValueError, match="needs params"):
    tx.update(params, tx.init(params))
