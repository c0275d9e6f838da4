"""Curvature of a loss at given params: Hessian-vector products, the top
Hessian eigenvalue and the Hessian trace; and a loss averaged over batches.

Everything here takes a pure scalar ``loss_fn(params) -> scalar`` over a
params pytree; nothing forms the ``n x n`` Hessian or any ``n x k`` matrix
(``n`` is 22.7M for MiniLM). The Hessian enters only through

    H v = d/dt grad f(theta + t v) |_{t=0},

computed forward-over-reverse (:func:`hvp`: ``jax.jvp`` of ``jax.grad``),
which costs about two to three gradients and holds one gradient's memory.

* :func:`top_hessian_eigenvalue`: power iteration ``v <- H v / ||H v||``
  from a seeded Gaussian start; the estimate is the Rayleigh quotient
  ``lambda = v^T H v`` (``||v|| = 1``). It converges to the eigenvalue of
  largest *magnitude*, which at (or near) a minimum is the largest one.
* :func:`hutchinson_trace`: Hutchinson's estimator ``tr H = E[z^T H z]``
  with Rademacher probes ``z`` (entries +-1 with probability 1/2), whose
  variance per probe is ``2 sum_{i != j} H_ij^2``; the mean of ``m`` probes
  and its standard error ``std / sqrt(m)``.

A loss that is a mean over evaluation batches is best built with
:func:`batch_loss_mean`: its :class:`BatchMeanLoss` is an ordinary
differentiable ``loss_fn`` and also accumulates gradients and HVPs batch by
batch (one jitted per-batch function, one batch's activations in memory)
instead of tracing the loop over batches whole. Any ``loss_fn`` may provide
such methods (``value_and_grad(params)``, ``hvp(params, v)``); the functions
here and in :mod:`flatjax.sharpness.keskar` and
:mod:`flatjax.sharpness.surface` use them when present, and otherwise jit
``loss_fn`` whole.

References:
  Pearlmutter, *Fast Exact Multiplication by the Hessian*, Neural
  Computation 1994 (HVPs). Hutchinson, *A Stochastic Estimator of the Trace
  of the Influence Matrix for Laplacian Smoothing Splines*, 1990. Yao,
  Gholami, Keutzer & Mahoney, *PyHessian: Neural Networks Through the Lens
  of the Hessian*, IEEE BigData 2020 (power iteration and Hutchinson's trace
  for networks; its default ``maxIter=100, tol=1e-3``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flatjax.errors import FlatjaxInputError
from flatjax.errors import whole_number as _whole

LossFn = Callable[[Any], jax.Array]


def as_key(key: int | jax.Array) -> jax.Array:
  """A PRNG key: ``key`` itself, or ``jax.random.key(key)`` for an int seed."""
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key(int(key))
  if isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                     or (key.dtype == jnp.uint32 and key.shape == (2,))):
    return key
  raise FlatjaxInputError(f"key must be an int seed or a JAX PRNG key, got {key!r}")


# ---- pytree algebra ---------------------------------------------------------

@jax.jit
def tree_dot(a: Any, b: Any) -> jax.Array:
  """``sum_i a_i b_i`` over all leaves (float32)."""
  return sum((jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))),
             jnp.zeros((), jnp.float32))


@jax.jit
def tree_norm(a: Any) -> jax.Array:
  """The Euclidean norm of all leaves together."""
  return jnp.sqrt(tree_dot(a, a))


@jax.jit
def _tree_scale(a: Any, s: jax.Array) -> Any:
  return jax.tree.map(lambda x: (x * s).astype(x.dtype), a)


@jax.jit
def _tree_axpy(s: jax.Array, x: Any, y: Any) -> Any:
  """``y + s x`` leaf-wise, in ``y``'s dtypes."""
  return jax.tree.map(lambda u, v: (v + s * u).astype(v.dtype), x, y)


def canonical(params: Any) -> Any:
  """``params`` as JAX arrays of JAX's dtypes (numpy float64 becomes float32
  unless x64 is on), so that later casts to the params' dtypes are no-ops."""
  return jax.tree.map(jnp.asarray, params)


def _like(params: Any, v: Any) -> Any:
  """``v`` with ``params``' structure and dtypes (a clear error if the structures differ)."""
  try:
    return jax.tree.map(lambda p, x: jnp.asarray(x, jnp.result_type(p)), params, v)
  except ValueError as e:
    raise FlatjaxInputError(f"the vector's pytree does not match the params': {e}") from None


# ---- derivatives --------------------------------------------------------------

def hvp(loss_fn: LossFn, params: Any, v: Any) -> Any:
  """The Hessian-vector product ``H v`` of ``loss_fn`` at ``params``.

  Forward-over-reverse: ``jax.jvp(jax.grad(loss_fn), (params,), (v,))``, i.e.
  the directional derivative of the gradient along ``v``; exact (no finite
  difference). Pure and jittable; :func:`make_hvp` gives the jitted (or
  batch-accumulating) version.

  Args:
    loss_fn: a scalar function of the params pytree.
    params: the point ``theta``.
    v: a pytree like ``params``.

  Returns:
    ``H v`` as a pytree like ``params``.
  """
  return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def value_fn(loss_fn: LossFn) -> LossFn:
  """``loss_fn`` ready to call many times: itself when it evaluates batch by
  batch (it has a ``value_and_grad`` method, as :class:`BatchMeanLoss`),
  else ``jax.jit(loss_fn)``."""
  return loss_fn if hasattr(loss_fn, "value_and_grad") else jax.jit(loss_fn)


def value_and_grad_fn(loss_fn: LossFn) -> Callable[[Any], tuple[jax.Array, Any]]:
  """``params -> (loss, grad)``: ``loss_fn``'s own ``value_and_grad`` method
  when it has one (:class:`BatchMeanLoss`), else ``jax.jit(jax.value_and_grad(loss_fn))``."""
  method = getattr(loss_fn, "value_and_grad", None)
  return method if method is not None else jax.jit(jax.value_and_grad(loss_fn))


def make_hvp(loss_fn: LossFn) -> Callable[[Any, Any], Any]:
  """``(params, v) -> H v``: ``loss_fn``'s own ``hvp`` method when it has one
  (:class:`BatchMeanLoss`), else :func:`hvp` jitted (compiled once per params
  structure)."""
  method = getattr(loss_fn, "hvp", None)
  return method if method is not None else jax.jit(lambda p, v: hvp(loss_fn, p, _like(p, v)))


# ---- a loss averaged over batches ---------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class BatchMeanLoss:
  """``f(theta) = sum_b w_b L_b(theta) / sum_b w_b``: a per-batch loss
  averaged over fixed batches (build it with :func:`batch_loss_mean`).

  Calling it gives the loss (differentiable and jittable, a Python loop over
  one jitted per-batch function). :meth:`value_and_grad` and :meth:`hvp`
  accumulate the per-batch gradients and HVPs (linear in the loss), one
  batch at a time, so memory holds one batch's activations however many
  batches there are, and each per-batch program compiles once per batch shape.

  Attributes:
    per_batch_loss: ``(params, batch) -> scalar``, pure (dropout off).
    batches: the batches, pytrees of arrays, on the device.
    weights: ``w_b / sum_b w_b``, float, one per batch.
  """
  per_batch_loss: Callable[[Any, Any], jax.Array]
  batches: tuple[Any, ...]
  weights: tuple[float, ...]

  def __post_init__(self):
    f = self.per_batch_loss

    def vg_step(params, batch, w, acc_value, acc_grad):
      value, grad = jax.value_and_grad(f)(params, batch)
      return acc_value + w * value, jax.tree.map(lambda a, g: a + w * g, acc_grad, grad)

    def hvp_step(params, v, batch, w, acc):
      out = hvp(lambda p: f(p, batch), params, v)
      return jax.tree.map(lambda a, h: a + w * h, acc, out)

    # Frozen dataclass: the jitted programs are derived state, set once here.
    object.__setattr__(self, "_loss", jax.jit(f))
    object.__setattr__(self, "_vg_step", jax.jit(vg_step))
    object.__setattr__(self, "_hvp_step", jax.jit(hvp_step))

  def __call__(self, params: Any) -> jax.Array:
    total = jnp.zeros((), jnp.float32)
    for batch, w in zip(self.batches, self.weights):
      total = total + jnp.float32(w) * self._loss(params, batch)
    return total

  def value_and_grad(self, params: Any) -> tuple[jax.Array, Any]:
    """``(f(theta), grad f(theta))`` accumulated batch by batch."""
    value = jnp.zeros((), jnp.float32)
    grad = jax.tree.map(jnp.zeros_like, params)
    for batch, w in zip(self.batches, self.weights):
      value, grad = self._vg_step(params, batch, jnp.float32(w), value, grad)
    return value, grad

  def hvp(self, params: Any, v: Any) -> Any:
    """``H v`` of the mean loss, accumulated batch by batch."""
    v = _like(params, v)
    out = jax.tree.map(jnp.zeros_like, params)
    for batch, w in zip(self.batches, self.weights):
      out = self._hvp_step(params, v, batch, jnp.float32(w), out)
    return out


def batch_loss_mean(per_batch_loss: Callable[[Any, Any], jax.Array], batches: Iterable[Any],
                    *, weight_key: str | None = "example_weight") -> BatchMeanLoss:
  """The mean of ``per_batch_loss`` over ``batches``, as a ``loss_fn(params)``.

      f(theta) = sum_b W_b L_b(theta) / sum_b W_b,   W_b = sum(batch_b[weight_key])

  With flatjax's batches (``example_weight`` 1 for real rows and 0 for
  padding rows) and a ``per_batch_loss`` that is the weighted mean over a
  batch's real rows (:func:`flatjax.train.losses.task_loss`), ``f`` is the
  mean over every real example, whatever the batch sizes. A batch without
  ``weight_key`` (or ``weight_key=None``) counts ``W_b = 1``.

  Args:
    per_batch_loss: ``(params, batch) -> scalar``; pure and deterministic
      (dropout off: e.g. ``lambda p, b: loss_fn(p, b, key)[0]`` with a loss
      made by ``make_loss_fn(module, task, deterministic=True)``).
    batches: dicts (pytrees) of arrays, fixed (and seeded, if sampled) by
      the caller; they are put on the device once.
    weight_key: the batch entry holding per-example weights.

  Returns:
    A :class:`BatchMeanLoss`.

  Raises:
    FlatjaxInputError: no batches, or weights that are negative, not finite
      or sum to zero.
  """
  batches = tuple(batches)
  if not batches:
    raise FlatjaxInputError("batch_loss_mean needs at least one batch")
  totals = []
  for i, batch in enumerate(batches):
    has = weight_key is not None and isinstance(batch, dict) and weight_key in batch
    w = float(np.sum(np.asarray(batch[weight_key], np.float64))) if has else 1.0
    if not math.isfinite(w) or w < 0:
      raise FlatjaxInputError(f"batch {i}'s weights sum to {w}; they must be >= 0 and finite")
    totals.append(w)
  total = sum(totals)
  if total <= 0:
    raise FlatjaxInputError(f"the batches' {weight_key!r} weights sum to 0: no example counts")
  return BatchMeanLoss(per_batch_loss, tuple(jax.device_put(b) for b in batches),
                       tuple(w / total for w in totals))


# ---- top eigenvalue -----------------------------------------------------------

class PowerIterationResult(NamedTuple):
  """The top Hessian eigenpair from :func:`top_hessian_eigenvalue`.

  Attributes:
    eigenvalue: the last Rayleigh quotient ``v^T H v``.
    eigenvector: ``v``, a unit-norm pytree like the params.
    iterations: HVPs computed.
    history: the Rayleigh quotient after each iteration (float64 array).
    converged: whether the relative change fell below ``tol``.
    residual: ``||H v - lambda v||`` (0 for an exact eigenpair; compare
      with ``|lambda|``).
  """
  eigenvalue: float
  eigenvector: Any
  iterations: int
  history: np.ndarray
  converged: bool
  residual: float


def _random_normal_like(key: jax.Array, params: Any) -> Any:
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
                                      for k, x in zip(keys, leaves)])


def top_hessian_eigenvalue(loss_fn: LossFn, params: Any, *, key: int | jax.Array = 0,
                           max_iterations: int = 100, tol: float = 1e-3,
                           callback: Callable[[int, float], None] | None = None
                           ) -> PowerIterationResult:
  """The top eigenvalue of the Hessian of ``loss_fn`` at ``params``, by power iteration.

      v_0 = g / ||g||, g ~ N(0, I) (seeded)
      lambda_k = v_{k-1}^T H v_{k-1},  v_k = H v_{k-1} / ||H v_{k-1}||

  stopping after ``max_iterations`` HVPs or once
  ``|lambda_k - lambda_{k-1}| / (|lambda_k| + 1e-6) < tol`` (PyHessian's
  rule). Converges to the eigenvalue of largest magnitude (the largest one
  where the Hessian is positive semi-definite, e.g. at a minimum) at the rate
  ``(|lambda_2| / |lambda_1|)^(2k)`` for the Rayleigh quotient.

  Args:
    loss_fn: a scalar function of the params pytree (or a
      :class:`BatchMeanLoss`).
    params: the point.
    key: PRNG key or int seed of the start vector.
    max_iterations: at most this many HVPs, >= 1.
    tol: relative-change threshold, >= 0; 0 runs all ``max_iterations``.
    callback: called as ``callback(k, lambda_k)`` after each iteration
      (progress output).

  Returns:
    A :class:`PowerIterationResult`; ``eigenvector`` is the ``v`` whose
    Rayleigh quotient is ``eigenvalue``.
  """
  max_iterations = _whole("max_iterations", max_iterations, 1)
  tol = float(tol)
  if not tol >= 0 or math.isinf(tol):
    raise FlatjaxInputError(f"tol must be a finite number >= 0, got {tol!r}")
  hv_fn = make_hvp(loss_fn)
  params = canonical(params)
  v = _random_normal_like(as_key(key), params)
  v = _tree_scale(v, 1.0 / tree_norm(v))
  history: list[float] = []
  converged, residual = False, math.nan
  for k in range(1, max_iterations + 1):
    hv = hv_fn(params, v)
    lam = float(tree_dot(v, hv))
    hv_norm = float(tree_norm(hv))
    residual = float(tree_norm(_tree_axpy(jnp.float32(-lam), v, hv)))
    history.append(lam)
    if callback is not None:
      callback(k, lam)
    if hv_norm == 0.0:  # H v = 0: v is an eigenvector of eigenvalue 0
      converged = True
      break
    if k > 1 and abs(lam - history[-2]) / (abs(lam) + 1e-6) < tol:
      converged = True
      break
    if k < max_iterations:  # keep v paired with its Rayleigh quotient on the way out
      v = _tree_scale(hv, 1.0 / hv_norm)
  return PowerIterationResult(history[-1], v, len(history), np.asarray(history, np.float64),
                              converged, residual)


# ---- trace ------------------------------------------------------------------

class TraceResult(NamedTuple):
  """Hutchinson's estimate of the Hessian trace (:func:`hutchinson_trace`).

  Attributes:
    trace: the mean of the samples.
    stderr: their standard deviation (ddof=1) over ``sqrt(num_samples)``.
    samples: each probe's ``z^T H z`` (float64 array).
    num_samples: how many probes.
  """
  trace: float
  stderr: float
  samples: np.ndarray
  num_samples: int


def _rademacher_like(key: jax.Array, params: Any) -> Any:
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [
      jax.random.rademacher(k, jnp.shape(x), jnp.int8).astype(jnp.result_type(x))
      for k, x in zip(keys, leaves)])


_rademacher_like_jit = jax.jit(_rademacher_like)


def hutchinson_trace(loss_fn: LossFn, params: Any, *, key: int | jax.Array = 0,
                     num_samples: int = 100,
                     callback: Callable[[int, float], None] | None = None) -> TraceResult:
  """The trace of the Hessian of ``loss_fn`` at ``params``, by Hutchinson's estimator.

      tr H ~= (1/m) sum_{j=1}^m z_j^T H z_j,   z_j iid Rademacher (+-1)

  Unbiased, with per-probe variance ``2 sum_{i != j} H_ij^2`` (the diagonal
  contributes nothing: ``z_i^2 = 1``); the standard error reported is the
  sample estimate ``std(z^T H z) / sqrt(m)``.

  Args:
    loss_fn: a scalar function of the params pytree (or a
      :class:`BatchMeanLoss`).
    params: the point.
    key: PRNG key or int seed; probe ``j`` uses ``fold_in(key, j)``, so the
      first probes do not depend on ``num_samples``.
    num_samples: probes ``m`` (one HVP each), >= 2 (for a standard error).
    callback: called as ``callback(j, z_j^T H z_j)`` after each probe.

  Returns:
    A :class:`TraceResult`.
  """
  num_samples = _whole("num_samples", num_samples, 2)
  hv_fn = make_hvp(loss_fn)
  params = canonical(params)
  key = as_key(key)
  samples = []
  for j in range(num_samples):
    z = _rademacher_like_jit(jax.random.fold_in(key, j), params)
    samples.append(float(tree_dot(z, hv_fn(params, z))))
    if callback is not None:
      callback(j + 1, samples[-1])
  s = np.asarray(samples, np.float64)
  return TraceResult(float(s.mean()), float(s.std(ddof=1) / math.sqrt(len(s))), s, len(s))
