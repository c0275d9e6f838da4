"""Hessian-vector products, power iteration, Hutchinson's trace and the
batch-mean loss, against quadratics whose Hessian is built by hand.

H = Q diag(e) Q^T with a known spectrum ``e`` and a random orthogonal Q
(numpy, float64); the params are a pytree of two leaves whose flattened
concatenation is ``w``, and the loss is ``1/2 w^T H w + b^T w`` in float32.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.sharpness import hessian as hs

SPECTRUM = np.array([10.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.25, 0.1, 0.0, 0.0])
N = SPECTRUM.size


def orthogonal(n, seed):
  q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
  return q * np.sign(np.diag(r))


def spd(spectrum, seed=0):
  q = orthogonal(spectrum.size, seed)
  return q @ np.diag(spectrum) @ q.T, q


H, Q = spd(SPECTRUM)
B = np.random.default_rng(1).normal(size=N)


def split(w):
  """A flat vector as the two-leaf params pytree ({"u": [2, 3], "v": [6]})."""
  w = np.asarray(w, np.float32)
  return {"u": jnp.asarray(w[:6].reshape(2, 3)), "v": jnp.asarray(w[6:])}


def flat(tree):
  return np.concatenate([np.asarray(tree["u"], np.float64).ravel(),
                         np.asarray(tree["v"], np.float64)])


def quadratic(h, b=None):
  h32 = jnp.asarray(h, jnp.float32)
  b32 = jnp.zeros(h.shape[0], jnp.float32) if b is None else jnp.asarray(b, jnp.float32)

  def loss(params):
    w = jnp.concatenate([params["u"].reshape(-1), params["v"]])
    return 0.5 * w @ h32 @ w + b32 @ w
  return loss


LOSS = quadratic(H, B)
W0 = split(np.random.default_rng(2).normal(size=N))


# ---- HVP --------------------------------------------------------------------

def test_hvp_equals_h_times_v():
  rng = np.random.default_rng(3)
  for _ in range(3):
    v = rng.normal(size=N)
    want = H @ v
    np.testing.assert_allclose(flat(hs.hvp(LOSS, W0, split(v))), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flat(hs.make_hvp(LOSS)(W0, split(v))), want, rtol=1e-5,
                               atol=1e-5)


def test_hvp_of_a_non_quadratic_matches_the_explicit_hessian():
  def loss(p):
    return jnp.sum(jnp.sin(p["u"])) * jnp.sum(p["v"] ** 2) + jnp.sum(jnp.exp(0.3 * p["v"]))

  def on_flat(w):
    return loss({"u": w[:6].reshape(2, 3), "v": w[6:]})
  w = jnp.asarray(flat(W0), jnp.float32)
  full = np.asarray(jax.hessian(on_flat)(w), np.float64)
  v = np.random.default_rng(4).normal(size=N)
  np.testing.assert_allclose(flat(hs.make_hvp(loss)(W0, split(v))), full @ v, rtol=1e-5,
                             atol=1e-5)


# ---- power iteration ---------------------------------------------------------

def test_power_iteration_finds_the_top_eigenvalue():
  res = hs.top_hessian_eigenvalue(LOSS, W0, key=0, max_iterations=200, tol=1e-7)
  assert res.eigenvalue == pytest.approx(SPECTRUM[0], rel=1e-3)
  assert res.converged and 1 < res.iterations < 200
  assert len(res.history) == res.iterations and res.history[-1] == res.eigenvalue
  v = flat(res.eigenvector)
  assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
  assert abs(v @ Q[:, 0]) > 1 - 1e-4          # the top eigenvector, up to sign
  assert res.residual < 1e-2 * SPECTRUM[0]
  # Default tolerance (1e-3 relative change): still close for this gap (6/10).
  default = hs.top_hessian_eigenvalue(LOSS, W0)
  assert default.converged and default.eigenvalue == pytest.approx(SPECTRUM[0], rel=1e-2)


def test_power_iteration_is_seeded():
  a = hs.top_hessian_eigenvalue(LOSS, W0, key=5, max_iterations=8, tol=0.0)
  b = hs.top_hessian_eigenvalue(LOSS, W0, key=jax.random.key(5), max_iterations=8, tol=0.0)
  c = hs.top_hessian_eigenvalue(LOSS, W0, key=6, max_iterations=8, tol=0.0)
  np.testing.assert_array_equal(a.history, b.history)
  assert a.iterations == 8 and not a.converged      # tol 0: all iterations
  assert not np.array_equal(a.history, c.history)


def test_power_iteration_takes_the_largest_magnitude():
  """Documented: power iteration converges to the eigenvalue of largest |lambda|."""
  h, _ = spd(np.array([-8.0, 5.0, 3.0, 1.0, 0.5, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]), seed=7)
  res = hs.top_hessian_eigenvalue(quadratic(h), W0, max_iterations=300, tol=1e-7)
  assert res.eigenvalue == pytest.approx(-8.0, rel=1e-3)


def test_power_iteration_on_a_zero_hessian_stops_at_once():
  res = hs.top_hessian_eigenvalue(lambda p: jnp.sum(p["u"]) + jnp.sum(p["v"]), W0)
  assert res.eigenvalue == 0.0 and res.converged and res.iterations == 1


# ---- Hutchinson --------------------------------------------------------------

def test_hutchinson_trace_within_five_percent_with_a_sensible_stderr():
  m = 2000
  res = hs.hutchinson_trace(LOSS, W0, key=0, num_samples=m)
  trace = SPECTRUM.sum()
  assert res.num_samples == m and res.samples.shape == (m,)
  assert res.trace == pytest.approx(trace, rel=0.05)
  # Rademacher probes: Var(z^T H z) = 2 sum_{i != j} H_ij^2.
  var = 2 * (np.sum(H ** 2) - np.sum(np.diag(H) ** 2))
  assert res.stderr == pytest.approx(math.sqrt(var / m), rel=0.15)
  assert abs(res.trace - trace) < 4 * res.stderr
  # Probe j depends only on (key, j).
  head = hs.hutchinson_trace(LOSS, W0, key=0, num_samples=10)
  np.testing.assert_allclose(head.samples, res.samples[:10], rtol=1e-6)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
  h = np.diag(np.arange(1.0, N + 1))
  res = hs.hutchinson_trace(quadratic(h), W0, key=3, num_samples=5)
  assert res.trace == pytest.approx(np.trace(h), rel=1e-6) and res.stderr == pytest.approx(0)


# ---- batch mean --------------------------------------------------------------

RNG = np.random.default_rng(11)
X = RNG.normal(size=(10, 3)).astype(np.float32)
Y = RNG.normal(size=10).astype(np.float32)
THETA = {"w": jnp.asarray(RNG.normal(size=3), jnp.float32), "c": jnp.float32(0.3)}


def row_losses(p, x, y):
  r = x @ p["w"] + p["c"] - y
  return r ** 2 + 0.1 * r ** 4          # not quadratic: the Hessian depends on the point


def per_batch(p, batch):
  """The weighted mean over a batch's real rows, as flatjax's task losses."""
  w = batch["example_weight"]
  return jnp.sum(row_losses(p, batch["x"], batch["y"]) * w) / jnp.maximum(jnp.sum(w), 1.0)


def full_loss(p):
  return jnp.mean(row_losses(p, jnp.asarray(X), jnp.asarray(Y)))


def make_batches(size=4):
  """Batches of ``size`` rows; the last one padded with garbage rows of weight 0."""
  out = []
  for start in range(0, len(X), size):
    x, y = X[start:start + size], Y[start:start + size]
    pad = size - len(x)
    out.append({"x": np.concatenate([x, np.full((pad, 3), 9.0, np.float32)]),
                "y": np.concatenate([y, np.full(pad, -7.0, np.float32)]),
                "example_weight": np.r_[np.ones(len(x)), np.zeros(pad)].astype(np.float32)})
  return out


def test_batch_loss_mean_is_the_mean_over_real_examples():
  loss = hs.batch_loss_mean(per_batch, make_batches())
  assert sum(loss.weights) == pytest.approx(1.0) and loss.weights[-1] == pytest.approx(0.2)
  assert float(loss(THETA)) == pytest.approx(float(full_loss(THETA)), rel=1e-6)
  value, grad = loss.value_and_grad(THETA)
  want_value, want_grad = jax.value_and_grad(full_loss)(THETA)
  assert float(value) == pytest.approx(float(want_value), rel=1e-6)
  for k in THETA:
    np.testing.assert_allclose(grad[k], want_grad[k], rtol=1e-5, atol=1e-6)
    # Calling it is differentiable too.
    np.testing.assert_allclose(jax.grad(loss)(THETA)[k], want_grad[k], rtol=1e-5, atol=1e-6)
  v = {"w": jnp.asarray([0.5, -1.0, 2.0]), "c": jnp.float32(-0.7)}
  hv, want_hv = loss.hvp(THETA, v), hs.hvp(full_loss, THETA, v)
  for k in THETA:
    np.testing.assert_allclose(hv[k], want_hv[k], rtol=1e-5, atol=1e-5)


def test_batch_loss_mean_feeds_the_curvature_estimates():
  loss = hs.batch_loss_mean(per_batch, make_batches(3))
  a = hs.top_hessian_eigenvalue(loss, THETA, key=1, tol=1e-6)
  b = hs.top_hessian_eigenvalue(full_loss, THETA, key=1, tol=1e-6)
  assert a.eigenvalue == pytest.approx(b.eigenvalue, rel=1e-4)
  flat_theta = jnp.concatenate([THETA["w"], THETA["c"][None]])
  full_h = np.asarray(jax.hessian(lambda t: full_loss({"w": t[:3], "c": t[3]}))(flat_theta))
  assert a.eigenvalue == pytest.approx(np.linalg.eigvalsh(full_h)[-1], rel=1e-3)
  ta = hs.hutchinson_trace(loss, THETA, key=2, num_samples=20)
  tb = hs.hutchinson_trace(full_loss, THETA, key=2, num_samples=20)
  np.testing.assert_allclose(ta.samples, tb.samples, rtol=1e-4)


def test_batch_loss_mean_without_weights_averages_batches():
  batches = [{"x": X[:4], "y": Y[:4]}, {"x": X[4:6], "y": Y[4:6]}]
  loss = hs.batch_loss_mean(lambda p, b: jnp.mean(row_losses(p, b["x"], b["y"])), batches)
  want = 0.5 * (np.mean(row_losses(THETA, X[:4], Y[:4]))
                + np.mean(row_losses(THETA, X[4:6], Y[4:6])))
  assert float(loss(THETA)) == pytest.approx(float(want), rel=1e-6)


def test_bad_input_raises():
  batches = make_batches()
  with pytest.raises(FlatjaxInputError):
    hs.batch_loss_mean(per_batch, [])
  zero = [dict(b, example_weight=np.zeros(4, np.float32)) for b in batches]
  with pytest.raises(FlatjaxInputError):
    hs.batch_loss_mean(per_batch, zero)
  with pytest.raises(FlatjaxInputError):
    hs.batch_loss_mean(per_batch, [dict(batches[0], example_weight=-np.ones(4, np.float32))])
  with pytest.raises(FlatjaxInputError):
    hs.batch_loss_mean(per_batch, batches).hvp(THETA, {"w": jnp.zeros(3)})
  with pytest.raises(FlatjaxInputError):
    hs.make_hvp(LOSS)(W0, {"u": jnp.zeros((2, 3))})
  for kwargs in ({"max_iterations": 0}, {"max_iterations": 2.5}, {"tol": -1.0},
                 {"tol": float("nan")}, {"key": "seed"}, {"key": 1.5}):
    with pytest.raises(FlatjaxInputError):
      hs.top_hessian_eigenvalue(LOSS, W0, **kwargs)
  for kwargs in ({"num_samples": 1}, {"num_samples": 0}, {"key": None}):
    with pytest.raises(FlatjaxInputError):
      hs.hutchinson_trace(LOSS, W0, **kwargs)
