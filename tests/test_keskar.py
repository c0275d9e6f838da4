"""Keskar et al.'s epsilon-sharpness against closed forms and an explicit
float64 numpy/scipy computation.

Full space: for f(w) = 1/2 sum_i h_i w_i^2 + c with h_i > 0, the maximum
over the box |y_i| <= eps (|x_i| + 1) is at the vertex y_i = sign(x_i) eps
(|x_i| + 1), so

    phi = 100 (sum_i h_i/2 (|x_i| + eps (|x_i| + 1))^2 - sum_i h_i/2 x_i^2) / (1 + f(x)).

Subspace: A is rebuilt here from its documented definition (block b of
rows = normal(fold_in(a_key, b), (B, p))), A^+ x by numpy's pinv, and the
bounded maximisation of f(x + A y) solved by scipy's L-BFGS-B in float64 on
the explicit problem, and by enumerating the box's 2^p vertices (a convex
function's maximum over a box is at a vertex).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import Bounds, minimize

from flatjax.errors import FlatjaxInputError
from flatjax.sharpness import hessian as hs
from flatjax.sharpness import keskar as ks

RNG = np.random.default_rng(0)
SHAPES = {"a": (3, 4), "b": (5,), "c": (2, 2, 2)}
X = {k: RNG.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
HDIAG = {k: RNG.uniform(0.5, 3.0, size=s).astype(np.float32) for k, s in SHAPES.items()}
C = 0.7


def diag_loss(p):
  return sum(0.5 * jnp.sum(HDIAG[k] * p[k] ** 2) for k in sorted(p)) + C


def closed_form(eps):
  fx = C + sum(0.5 * np.sum(HDIAG[k] * X[k].astype(np.float64) ** 2) for k in X)
  fmax = C + sum(0.5 * np.sum(HDIAG[k] * (np.abs(X[k].astype(np.float64))
                                          + eps * (np.abs(X[k]) + 1.0)) ** 2) for k in X)
  return fx, fmax, 100 * (fmax - fx) / (1 + fx)


def flat(tree):
  """ravel_pytree's order: leaves by sorted dict key, each row-major."""
  return np.concatenate([np.asarray(tree[k], np.float64).ravel() for k in sorted(tree)])


def unflat(w, like):
  out, start = {}, 0
  for k in sorted(like):
    size = np.size(like[k])
    out[k] = jnp.asarray(np.asarray(w[start:start + size], np.float32).reshape(np.shape(like[k])))
    start += size
  return out


N = flat(X).size   # 25


# ---- full space ---------------------------------------------------------------

@pytest.mark.parametrize("eps", [1e-3, 5e-4, 0.05])
def test_full_space_quadratic_matches_closed_form(eps):
  res = ks.keskar_sharpness(diag_loss, X, ks.KeskarConfig(epsilon=eps))
  fx, fmax, phi = closed_form(eps)
  assert res.loss == pytest.approx(fx, rel=1e-6)
  assert res.max_loss == pytest.approx(fmax, rel=1e-6)
  assert res.sharpness == pytest.approx(phi, rel=1e-3)
  assert res.num_params == N and res.subspace_dim is None and res.epsilon == eps
  assert 1 <= res.iterations <= 10 and res.evaluations >= 1


def test_sharpness_value():
  assert ks.sharpness_value(1.0, 1.5) == pytest.approx(25.0)
  assert ks.sharpness_value(0.0, 0.0) == 0.0


class Recording:
  """A loss with its own value_and_grad (the protocol BatchMeanLoss follows)
  that records every point L-BFGS-B evaluates."""

  def __init__(self, f):
    self.f, self.points = f, []

  def __call__(self, p):
    return self.f(p)

  def value_and_grad(self, p):
    self.points.append(flat(p))
    return jax.value_and_grad(self.f)(p)


def test_iterations_are_capped():
  h, _ = np.linalg.qr(RNG.normal(size=(N, N)))
  h = (h * RNG.uniform(0.5, 4.0, N)) @ h.T            # dense SPD: L-BFGS-B needs iterations

  def loss(p):
    w = jnp.concatenate([p[k].reshape(-1) for k in sorted(p)])
    return 0.5 * w @ jnp.asarray(h, jnp.float32) @ w
  assert ks.keskar_sharpness(loss, X, ks.KeskarConfig(epsilon=0.5, maxiter=1)).iterations == 1
  assert ks.keskar_sharpness(loss, X, ks.KeskarConfig(epsilon=0.5, maxiter=3)).iterations > 1


def test_starts_and_every_evaluation_lie_in_the_box():
  eps, x = 0.05, flat(X)
  radius = eps * (np.abs(x) + 1)
  starts = {}
  for init, seed in (("zero", 0), ("random", 3), ("random", 3), ("random", 4)):
    rec = Recording(diag_loss)
    res = ks.keskar_sharpness(rec, X, ks.KeskarConfig(epsilon=eps, init=init, seed=seed))
    assert len(rec.points) == res.evaluations
    y = np.stack(rec.points) - x
    assert np.all(np.abs(y) <= radius * (1 + 1e-6) + 1e-7)
    starts.setdefault((init, seed), []).append(y[0])
    # Never above the global maximum over the box (the closed form).
    assert 0 < res.sharpness <= closed_form(eps)[2] * (1 + 1e-5)
  np.testing.assert_allclose(starts["zero", 0][0], 0, atol=1e-7)
  a, b = starts["random", 3]
  np.testing.assert_array_equal(a, b)                            # seeded
  assert np.all(np.abs(a) > 0) and np.abs(a).max() > 0.5 * radius.max()
  assert not np.allclose(a, starts["random", 4][0])


def test_batch_mean_loss_gives_the_same_sharpness():
  """A loss evaluated batch by batch (its own value_and_grad) equals the whole one."""
  targets = [{k: RNG.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
             for _ in range(3)]

  def per_batch(p, batch):
    return sum(jnp.sum(HDIAG[k] * (p[k] - batch[k]) ** 2) for k in sorted(p))

  def whole(p):
    return sum(per_batch(p, t) for t in targets) / 3
  cfg = ks.KeskarConfig(epsilon=1e-2)
  a = ks.keskar_sharpness(hs.batch_loss_mean(per_batch, targets), X, cfg)
  b = ks.keskar_sharpness(whole, X, cfg)
  assert a.sharpness == pytest.approx(b.sharpness, rel=1e-4)
  assert a.max_loss == pytest.approx(b.max_loss, rel=1e-6)


# ---- random subspace ------------------------------------------------------------

P, BLOCK, SEED = 3, 8, 5      # 25 params: 4 blocks of 8 rows, the last partial


def explicit_a(n, p, seed, block_rows):
  """A from the documented definition, independently of keskar's block code."""
  a_key, _ = jax.random.split(jax.random.key(seed))
  blocks = [np.asarray(jax.random.normal(jax.random.fold_in(a_key, b), (block_rows, p),
                                         jnp.float32))
            for b in range((n + block_rows - 1) // block_rows)]
  return np.concatenate(blocks)[:n].astype(np.float64)


def test_subspace_matrix_and_its_chunked_products():
  a = explicit_a(N, P, SEED, BLOCK)
  np.testing.assert_array_equal(ks.subspace_matrix(N, P, seed=SEED, block_rows=BLOCK), a)
  assert not np.array_equal(ks.subspace_matrix(N, P, seed=SEED + 1, block_rows=BLOCK), a)
  a_key, _ = ks.keys_from_seed(SEED)
  y = RNG.normal(size=P)
  g = RNG.normal(size=N)
  x = flat(X)
  np.testing.assert_allclose(
      ks.subspace_matvec(a_key, jnp.asarray(y, jnp.float32), n=N, block_rows=BLOCK),
      a @ y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      ks.subspace_rmatvec(a_key, jnp.asarray(g, jnp.float32), p=P, block_rows=BLOCK),
      a.T @ g, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      ks.subspace_pinv_apply(a_key, jnp.asarray(x, jnp.float32), p=P, block_rows=BLOCK),
      np.linalg.pinv(a) @ x, rtol=1e-5, atol=1e-6)
  # A different block size is a different A (documented), the default is one block here.
  assert not np.array_equal(ks.subspace_matrix(N, P, seed=SEED, block_rows=7), a)
  np.testing.assert_array_equal(ks.subspace_matrix(N, P, seed=SEED), explicit_a(N, P, SEED,
                                                                                 1 << 16))


def dense_quadratic():
  q, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(N, N)))
  h = (q * np.linspace(0.2, 5.0, N)) @ q.T
  bvec = np.random.default_rng(10).normal(size=N)

  def loss(p):
    w = jnp.concatenate([p[k].reshape(-1) for k in sorted(p)])
    return 0.5 * w @ jnp.asarray(h, jnp.float32) @ w + jnp.asarray(bvec, jnp.float32) @ w + C

  def loss64(w):
    return 0.5 * w @ h @ w + bvec @ w + C
  return loss, loss64, h, bvec


@pytest.mark.parametrize("eps", [1e-3, 0.05])
def test_subspace_matches_explicit_scipy_and_vertex_maximum(eps):
  loss, loss64, h, bvec = dense_quadratic()
  cfg = ks.KeskarConfig(epsilon=eps, subspace_dim=P, seed=SEED, block_rows=BLOCK)
  res = ks.keskar_sharpness(loss, X, cfg)

  a, x = explicit_a(N, P, SEED, BLOCK), flat(X)
  radius = eps * (np.abs(np.linalg.pinv(a) @ x) + 1)
  fx = loss64(x)

  def neg(y):
    w = x + a @ y
    return -loss64(w), -(a.T @ (h @ w + bvec))
  ref = minimize(neg, np.zeros(P), jac=True, method="L-BFGS-B",
                 bounds=Bounds(-radius, radius), options={"maxiter": 10})
  phi_ref = 100 * (-ref.fun - fx) / (1 + fx)
  vertex = max(loss64(x + a @ (np.array(s) * radius))
               for s in itertools.product((-1.0, 1.0), repeat=P))
  phi_vertex = 100 * (vertex - fx) / (1 + fx)

  assert res.subspace_dim == P and res.num_params == N
  assert res.loss == pytest.approx(fx, rel=1e-6)
  assert res.sharpness == pytest.approx(phi_ref, rel=2e-3)
  assert res.sharpness <= phi_vertex * (1 + 1e-4)
  if eps == 1e-3:
    # A small box: the linear term dominates and the first step reaches the best vertex.
    assert res.sharpness == pytest.approx(phi_vertex, rel=2e-3)


def test_subspace_dimension_must_not_exceed_params():
  with pytest.raises(FlatjaxInputError, match="exceeds"):
    ks.keskar_sharpness(diag_loss, X, ks.KeskarConfig(subspace_dim=N + 1, block_rows=BLOCK))


# ---- bad input ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"epsilon": 0.0}, {"epsilon": -1e-3}, {"epsilon": float("nan")}, {"epsilon": float("inf")},
    {"epsilon": "big"}, {"subspace_dim": 0}, {"subspace_dim": 2.0}, {"maxiter": 0},
    {"maxcor": 0}, {"init": "ones"}, {"seed": -1}, {"block_rows": 0}])
def test_bad_config_raises(kwargs):
  with pytest.raises(FlatjaxInputError):
    ks.KeskarConfig(**kwargs)


def test_bad_arguments_raise():
  with pytest.raises(FlatjaxInputError):
    ks.keskar_sharpness(diag_loss, X, {"epsilon": 1e-3})
  with pytest.raises(FlatjaxInputError):
    ks.keskar_sharpness(lambda p: jnp.sum(p["i"]), {"i": jnp.arange(3)})
  with pytest.raises(FlatjaxInputError):
    ks.subspace_matrix(0, 2)
