"""Keskar et al.'s epsilon-sharpness of a loss at given params (Metric 2.1).

For params ``x`` in R^n, a loss ``f``, a size ``eps > 0`` and a matrix
``A`` in R^{n x p} whose columns span the directions explored,

    phi(x, f, eps, A) = 100 (max_{y in C_eps} f(x + A y) - f(x)) / (1 + f(x)),
    C_eps = {z in R^p : |z_i| <= eps (|(A^+ x)_i| + 1)},

with ``A^+ = (A^T A)^{-1} A^T`` the pseudo-inverse: the largest relative
rise of the loss (in percent) within a box around ``x`` whose side scales
with each coordinate's magnitude. ``A = I`` (``p = n``, the default) is the
full space; a random Gaussian ``A`` (``KeskarConfig.subspace_dim = p``)
probes a random ``p``-dimensional subspace (Keskar et al. use ``p = 100``).

The maximum is approximate, as in the paper: L-BFGS-B (Byrd et al. 1995) on
``-f(x + A y)``, bounded by ``C_eps``, from ``y = 0`` (or a seeded random
point of the box), for ``maxiter`` iterations (10 in the paper). Gradients
come from ``jax.value_and_grad`` in float32; scipy works in float64. The
reported maximum is the largest loss over every point L-BFGS-B evaluated
(all inside ``C_eps``; ``y = 0`` included), so ``phi >= 0``.

Random subspace: ``A``'s entries are iid N(0, 1), float32. ``A`` is never
stored: it is generated on the fly in blocks of ``block_rows`` rows, block
``b`` (rows ``b B .. b B + B - 1`` of the flattened params, in
``ravel_pytree`` order) being

    jax.random.normal(fold_in(a_key, b), (B, p), float32),
    a_key, init_key = jax.random.split(jax.random.key(seed)),

so ``A y`` (an ``n``-vector), ``A^T g`` (a ``p``-vector) and the Gram
matrix ``A^T A`` (``p x p``) are block sums; :func:`subspace_matrix` builds
``A`` whole for small ``n`` (tests). The same seed, ``p``, ``block_rows``
and JAX PRNG implementation give the same ``A``.

Memory: scipy's L-BFGS-B keeps about ``(2 maxcor + 5) d`` float64 numbers
for ``d`` variables: ~4.5 GB of host memory for MiniLM's full space (d =
22.7M, maxcor 10); negligible in a subspace.

References:
  Keskar, Mudigere, Nocedal, Smelyanskiy & Tang, *On Large-Batch Training
  for Deep Learning: Generalization Gap and Sharp Minima*, ICLR 2017,
  Metric 2.1 and Section 3. Byrd, Lu, Nocedal & Zhu, *A Limited Memory
  Algorithm for Bound Constrained Optimization*, SIAM J. Sci. Comput. 1995.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from flatjax.errors import FlatjaxInputError
from flatjax.errors import whole_number as _whole
from flatjax.sharpness.hessian import LossFn, canonical, value_and_grad_fn, value_fn

INITS = ("zero", "random")
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32 in A's products on GPUs


@dataclasses.dataclass(frozen=True)
class KeskarConfig:
  """Settings of :func:`keskar_sharpness`.

  Attributes:
    epsilon: the box's relative size ``eps`` > 0; the paper reports 1e-3
      and 5e-3.
    subspace_dim: ``p`` for a random N(0, 1) ``A`` in R^{n x p}, 1 <= p <= n;
      None for the full space (``A = I``).
    maxiter: L-BFGS-B iterations, >= 1; 10 as the paper.
    maxcor: L-BFGS-B's memory (corrections kept), >= 1; scipy's 10.
    init: "zero" (``y = 0``, the paper's) or "random" (uniform in ``C_eps``).
    seed: seeds ``A`` and the random start.
    block_rows: rows of ``A`` generated at a time, >= 1; part of ``A``'s
      definition (see the module docstring), so keep it fixed to compare runs.
  """
  epsilon: float = 1e-3
  subspace_dim: int | None = None
  maxiter: int = 10
  maxcor: int = 10
  init: str = "zero"
  seed: int = 0
  block_rows: int = 1 << 16

  def __post_init__(self):
    try:
      eps = float(self.epsilon)
    except (TypeError, ValueError):
      eps = math.nan
    if not 0.0 < eps < math.inf:
      raise FlatjaxInputError(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
    if self.subspace_dim is not None:
      _whole("subspace_dim", self.subspace_dim, 1)
    _whole("maxiter", self.maxiter, 1)
    _whole("maxcor", self.maxcor, 1)
    _whole("seed", self.seed, 0)
    _whole("block_rows", self.block_rows, 1)
    if self.init not in INITS:
      raise FlatjaxInputError(f"init must be one of {INITS}, got {self.init!r}")


class KeskarResult(NamedTuple):
  """The outcome of :func:`keskar_sharpness`.

  Attributes:
    sharpness: ``phi`` in percent.
    loss: ``f(x)``.
    max_loss: the largest ``f(x + A y)`` found in ``C_eps``.
    iterations: L-BFGS-B iterations run.
    evaluations: loss-and-gradient evaluations by L-BFGS-B (``f(x)`` is one more).
    epsilon: ``eps``.
    subspace_dim: ``p``, or None for the full space.
    num_params: ``n``.
    message: scipy's stopping message.
  """
  sharpness: float
  loss: float
  max_loss: float
  iterations: int
  evaluations: int
  epsilon: float
  subspace_dim: int | None
  num_params: int
  message: str


def sharpness_value(loss: float, max_loss: float) -> float:
  """``100 (max_loss - loss) / (1 + loss)``: Keskar et al.'s normalisation."""
  return 100.0 * (max_loss - loss) / (1.0 + loss)


def keys_from_seed(seed: int) -> tuple[jax.Array, jax.Array]:
  """``(a_key, init_key)``: the keys of ``A``'s blocks and of the random start."""
  a_key, init_key = jax.random.split(jax.random.key(_whole("seed", seed, 0)))
  return a_key, init_key


def _block(a_key: jax.Array, b: jax.Array, block_rows: int, p: int) -> jax.Array:
  return jax.random.normal(jax.random.fold_in(a_key, b), (block_rows, p), jnp.float32)


def _num_blocks(n: int, block_rows: int) -> int:
  return -(-n // block_rows)


@functools.partial(jax.jit, static_argnames=("n", "block_rows"))
def subspace_matvec(a_key: jax.Array, y: jax.Array, *, n: int, block_rows: int) -> jax.Array:
  """``A y`` (float32 ``[n]``) for ``y`` in R^p, one block of ``A`` at a time."""
  p = y.shape[0]
  rows = jax.lax.map(
      lambda b: jnp.matmul(_block(a_key, b, block_rows, p), y.astype(jnp.float32),
                           precision=_HIGHEST),
      jnp.arange(_num_blocks(n, block_rows)))
  return rows.reshape(-1)[:n]


@functools.partial(jax.jit, static_argnames=("p", "block_rows"))
def subspace_rmatvec(a_key: jax.Array, g: jax.Array, *, p: int, block_rows: int) -> jax.Array:
  """``A^T g`` (float32 ``[p]``) for ``g`` in R^n, one block of ``A`` at a time."""
  n = g.shape[0]
  nb = _num_blocks(n, block_rows)
  # Zero padding to whole blocks: the rows of A past n meet zeros.
  gb = jnp.pad(g.astype(jnp.float32), (0, nb * block_rows - n)).reshape(nb, block_rows)

  def body(b, acc):
    return acc + jnp.matmul(gb[b], _block(a_key, b, block_rows, p), precision=_HIGHEST)
  return jax.lax.fori_loop(0, nb, body, jnp.zeros((p,), jnp.float32))


@functools.partial(jax.jit, static_argnames=("p", "block_rows"))
def _gram_block(a_key, b, x_block, valid, *, p, block_rows):
  blk = jnp.where(valid[:, None], _block(a_key, b, block_rows, p), 0.0)
  return (jnp.matmul(blk.T, blk, precision=_HIGHEST),
          jnp.matmul(x_block, blk, precision=_HIGHEST))


def subspace_pinv_apply(a_key: jax.Array, x: jax.Array, *, p: int,
                        block_rows: int) -> np.ndarray:
  """``A^+ x = (A^T A)^{-1} A^T x`` (float64 ``[p]``), ``p <= n``.

  The Gram matrix ``A^T A`` and ``A^T x`` are summed block by block on the
  device in float32 and across blocks in float64 on the host; the ``p x p``
  system is solved in float64 (``A^T A`` is well conditioned for a Gaussian
  ``A`` with ``n >> p``).
  """
  n = x.shape[0]
  if p > n:
    raise FlatjaxInputError(f"subspace_dim {p} exceeds the number of params {n}: A^T A "
                            f"would be singular")
  gram = np.zeros((p, p), np.float64)
  atx = np.zeros((p,), np.float64)
  nb = _num_blocks(n, block_rows)
  xp = jnp.pad(jnp.asarray(x, jnp.float32), (0, nb * block_rows - n))
  rows = np.arange(block_rows)
  for b in range(nb):
    g, v = _gram_block(a_key, b, jax.lax.dynamic_slice_in_dim(xp, b * block_rows, block_rows),
                       jnp.asarray(b * block_rows + rows < n), p=p, block_rows=block_rows)
    gram += np.asarray(g, np.float64)
    atx += np.asarray(v, np.float64)
  return np.linalg.solve(gram, atx)


def subspace_matrix(n: int, p: int, *, seed: int = 0, block_rows: int = 1 << 16) -> np.ndarray:
  """``A`` in R^{n x p} (float32) whole, exactly as :func:`keskar_sharpness`
  generates it for ``KeskarConfig(subspace_dim=p, seed=seed,
  block_rows=block_rows)``. For small ``n`` only (tests, inspection)."""
  n = _whole("n", n, 1)
  p = _whole("p", p, 1)
  block_rows = _whole("block_rows", block_rows, 1)
  a_key, _ = keys_from_seed(seed)
  blocks = [np.asarray(_block(a_key, b, block_rows, p)) for b in range(_num_blocks(n, block_rows))]
  return np.concatenate(blocks)[:n]


def keskar_sharpness(loss_fn: LossFn, params: Any,
                     config: KeskarConfig = KeskarConfig()) -> KeskarResult:
  """Keskar et al.'s epsilon-sharpness of ``loss_fn`` at ``params`` (module docstring).

  Args:
    loss_fn: a scalar function of the params pytree (e.g. a
      :func:`~flatjax.sharpness.hessian.batch_loss_mean` over fixed
      evaluation batches, dropout off); it must be deterministic.
    params: the point ``x``, a pytree of float arrays (all of them are
      perturbed; ``n`` is their total size).
    config: a :class:`KeskarConfig`.

  Returns:
    A :class:`KeskarResult`.
  """
  from scipy.optimize import Bounds, minimize  # scipy only where sharpness is measured

  if not isinstance(config, KeskarConfig):
    raise FlatjaxInputError(f"config must be a KeskarConfig, got {type(config).__name__}")
  params = canonical(params)
  x, unravel = ravel_pytree(params)
  if x.size == 0 or not jnp.issubdtype(x.dtype, jnp.floating):
    raise FlatjaxInputError(f"params must hold float arrays (got {x.size} values of {x.dtype})")
  n, eps, p = int(x.size), float(config.epsilon), config.subspace_dim
  a_key, init_key = keys_from_seed(config.seed)
  to_flat = jax.jit(lambda tree: ravel_pytree(tree)[0])

  if p is None:  # A = I: y lives in the params' own space
    center = np.abs(np.asarray(x, np.float64))
    point = jax.jit(lambda x, y: unravel(x + y.astype(x.dtype)))

    def grad_y(g):
      return to_flat(g)
  else:
    center = np.abs(subspace_pinv_apply(a_key, x, p=p, block_rows=config.block_rows))
    point = jax.jit(lambda x, y: unravel(
        x + subspace_matvec(a_key, y, n=n, block_rows=config.block_rows).astype(x.dtype)))

    def grad_y(g):
      return subspace_rmatvec(a_key, to_flat(g), p=p, block_rows=config.block_rows)
  radius = eps * (center + 1.0)
  del center

  loss0 = float(value_fn(loss_fn)(params))
  vg = value_and_grad_fn(loss_fn)
  seen = {"max": loss0, "evaluations": 0}

  def objective(y: np.ndarray) -> tuple[float, np.ndarray]:
    value, grad = vg(point(x, jnp.asarray(y, jnp.float32)))
    value = float(value)
    seen["evaluations"] += 1
    if value > seen["max"]:  # every point L-BFGS-B evaluates lies in C_eps
      seen["max"] = value
    return -value, -np.asarray(grad_y(grad), np.float64)

  if config.init == "zero":
    y0 = np.zeros_like(radius)
  else:
    u = jax.random.uniform(init_key, radius.shape, jnp.float32, -1.0, 1.0)
    y0 = np.asarray(u, np.float64) * radius
  res = minimize(objective, y0, jac=True, method="L-BFGS-B", bounds=Bounds(-radius, radius),
                 options={"maxiter": config.maxiter, "maxcor": config.maxcor})
  max_loss = seen["max"]
  return KeskarResult(sharpness_value(loss0, max_loss), loss0, max_loss, int(res.nit),
                      int(res.nfev), eps, p, n, str(res.message))
