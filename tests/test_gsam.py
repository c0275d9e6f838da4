"""flatjax.optim.gsam against GSAM's formula (Zhuang et al. 2022) and against SAM."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.optim import gsam, rho_schedule_from_lr, sam
from quadratic import GRAD_FN, W0, grad, loss

def test_gsam_direction_matches_the_formula():
  rho, alpha = 0.3, 0.4
  g = grad(W0)
  g_p = grad(W0 + rho * g / np.linalg.norm(g))
  g_perp = g - (g @ g_p) / (g_p @ g_p) * g_p
  want = g_p - alpha * g_perp
  params = {"w": jnp.asarray(W0, jnp.float32)}
  tx = gsam(rho, alpha)
  got, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, grad_fn=GRAD_FN))(
      {"w": jnp.asarray(g, jnp.float32)}, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(got["w"]), want, rtol=1e-5, atol=1e-6)
  # the correction is orthogonal to the perturbed gradient: it leaves the
  # descent on the perturbed loss unchanged
  assert abs((np.asarray(got["w"]) - g_p) @ g_p) < 1e-4 * np.linalg.norm(g_p) ** 2


def test_gsam_with_alpha_zero_and_constant_rho_is_sam_over_several_steps():
  rs = np.random.RandomState(0)
  params = {"w": jnp.asarray(rs.randn(3), jnp.float32)}
  out = []
  for first in (gsam(0.05, alpha=0.0), sam(0.05)):
    tx = optax.chain(first, optax.adam(0.05))
    p, s = params, tx.init(params)
    for _ in range(6):
      u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=GRAD_FN)
      p = optax.apply_updates(p, u)
    out.append(np.asarray(p["w"]))
  np.testing.assert_allclose(out[0], out[1], rtol=1e-6)
  assert np.abs(out[0] - np.asarray(params["w"])).max() > 0.1


def test_rho_follows_the_learning_rate():
  lr = optax.linear_schedule(2e-5, 0.0, 100)
  rho = rho_schedule_from_lr(lr, rho_max=0.05, rho_min=0.01, lr_max=2e-5)
  # rho_t = 0.01 + 0.04 * lr_t / 2e-5 = 0.01 + 0.04 (1 - t/100)
  for t, want in [(0, 0.05), (25, 0.04), (50, 0.03), (100, 0.01)]:
    assert float(rho(t)) == pytest.approx(want, rel=1e-5)
  with pytest.raises(ValueError, match="lr_max"):
    rho_schedule_from_lr(lr, rho_max=0.05, rho_min=0.0, lr_max=0.0)


def test_gsam_uses_its_rho_schedule_per_step():
  rhos = [0.4, 0.1]
  tx = gsam(lambda count: jnp.array(rhos)[count], alpha=0.0)
  params = {"w": jnp.asarray(W0, jnp.float32)}
  s = tx.init(params)
  g = grad(W0)
  for rho in rhos:
    got, s = tx.update({"w": jnp.asarray(g, jnp.float32)}, s, params, grad_fn=GRAD_FN)
    np.testing.assert_allclose(np.asarray(got["w"]), grad(W0 + rho * g / np.linalg.norm(g)),
                               rtol=1e-5)
