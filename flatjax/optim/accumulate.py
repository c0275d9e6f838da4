"""Gradient accumulation that keeps SAM exact: one batch, K micro-batches, one update.

A batch too large for memory is split into ``K`` micro-batches along its leading axis
and :func:`microbatched` scans them (``jax.lax.scan``: one micro-batch's activations
live at a time), returning what ``jax.value_and_grad`` of the whole batch returns:

    L(w) = sum_i s_i L_i(w),    grad L(w) = sum_i s_i grad L_i(w),

with ``L_i`` the loss on micro-batch ``i`` and ``s_i`` its share of the batch
(``1/K``, or ``W_i / sum_j W_j`` with a ``weight_fn`` giving micro-batch ``i``'s
weight ``W_i``, e.g. its count of real, unpadded rows when the loss is a weighted
mean). Handed to SAM as its ``grad_fn`` (wrapped in :class:`~flatjax.optim.GradFn`),
the same scan evaluates the perturbed gradient, so every SAM variant takes the
whole-batch step: the perturbation from the whole batch's clean gradient, the
perturbed gradient averaged over the same micro-batches::

    value_and_grad = flatjax.optim.microbatched(loss, 4, has_aux=True)
    (loss_value, aux), grads = value_and_grad(params, batch)
    grad_fn = flatjax.optim.GradFn(lambda p: value_and_grad(p, batch))
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)

``optax.MultiSteps(optax.chain(sam(...), adam(...)), k)`` does something else: it
averages the clean gradients of ``k`` calls, then hands SAM that mean with the
``grad_fn`` of the last call only, so the perturbed gradient is the last
micro-batch's, not the batch's; and it evaluates SAM's extra forward-backward pass
on every micro-batch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def split_batch(batch: Any, num_micro_batches: int) -> Any:
  """``batch`` with every leaf ``[B, ...]`` reshaped to ``[K, B / K, ...]``."""
  def split(x):
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[0] % num_micro_batches:
      raise ValueError(f"a batch of {x.shape[0] if x.ndim else 'no'} rows does not split into "
                       f"{num_micro_batches} equal micro-batches")
    return x.reshape(num_micro_batches, x.shape[0] // num_micro_batches, *x.shape[1:])
  return jax.tree.map(split, batch)


def microbatched(loss_fn: Callable, num_micro_batches: int, *, has_aux: bool = False,
                 weight_fn: Callable[[Any], jax.Array] | None = None) -> Callable:
  """``jax.value_and_grad(loss_fn)`` of a whole batch, computed micro-batch by micro-batch.

  Args:
    loss_fn: ``loss_fn(params, batch) -> loss`` (or ``(loss, aux)`` with ``has_aux``),
      the batch's mean loss; with a key, ``loss_fn(params, batch, key)``.
    num_micro_batches: ``K``; every leaf of a batch must have a leading axis divisible
      by it. ``K = 1`` is ``jax.value_and_grad`` itself.
    has_aux: ``loss_fn`` returns ``(loss, aux)``; ``aux`` is averaged like the loss.
    weight_fn: ``micro_batch -> W_i``, the micro-batch's weight in the batch's mean
      (default: equal shares). A loss that averages over real rows only needs the
      count of real rows here to be exact when padding falls unevenly.

  Returns:
    ``value_and_grad(params, batch[, key])`` with ``jax.value_and_grad``'s output;
    with a ``key``, micro-batch ``i`` gets ``jax.random.fold_in(key, i)``.
  """
  k = int(num_micro_batches)
  if k < 1:
    raise ValueError(f"num_micro_batches must be >= 1, got {num_micro_batches}")
  one = jax.value_and_grad(loss_fn, has_aux=has_aux)
  if k == 1:
    return one

  def value_and_grad(params, batch, *key):
    micro = split_batch(batch, k)
    if weight_fn is None:
      shares = jnp.full((k,), 1.0 / k, jnp.float32)
    else:
      weights = jax.vmap(weight_fn)(micro).astype(jnp.float32)
      shares = weights / jnp.maximum(jnp.sum(weights), jnp.finfo(jnp.float32).tiny)

    def at(i, micro_batch):
      keys = (jax.random.fold_in(key[0], i),) if key else ()
      return one(params, micro_batch, *keys)

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(lambda b: at(0, b), first))

    def body(total, xs):
      i, share, micro_batch = xs
      out = at(i, micro_batch)
      return jax.tree.map(lambda t, x: t + (share * x).astype(t.dtype), total, out), None

    total, _ = jax.lax.scan(body, zeros, (jnp.arange(k), shares, micro))
    return total

  return value_and_grad


def weighted_rows(key: str = "example_weight") -> Callable[[Any], jax.Array]:
  """A ``weight_fn`` for batches whose ``key`` leaf weights each row (1 real, 0
  padding), as flatjax's batches do."""
  return lambda micro_batch: jnp.sum(micro_batch[key])
