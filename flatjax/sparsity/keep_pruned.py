"""An optimizer that keeps pruned weights at exactly zero, whatever the forward pass does.

flatjax's own train step masks the forward pass (``apply_mask`` inside the loss), so
pruned weights get zero gradient. A user's loop that applies a mask once and then trains
an unmasked forward pass revives them: their gradient is not zero, and weight decay or a
SAM perturbation moves them too. :func:`keep_pruned` wraps any optax transformation (a
SAM chain included) so that, with ``m`` the mask (1 kept, 0 pruned):

    g      <- m * g                  the gradient the inner optimizer sees
    grad_fn(w) <- m * grad_fn(m * w) what SAM and its variants re-evaluate
    u      <- m * u - (1 - m) * w    the update: pruned weights land on exactly 0

so the inner optimizer's moments, SAM's perturbation (its norm included) and weight decay
see only the kept weights, and after ``optax.apply_updates`` a pruned weight is 0.0 even
if it was not zero before. The mask lives in the optimizer state
(:class:`KeepPrunedState`), so a loop that prunes again (IMP) replaces it there::

    tx = flatjax.sparsity.keep_pruned(optax.chain(flatjax.sam(0.05), optax.adamw(2e-5)), mask)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)
    opt_state = opt_state._replace(mask=new_mask)     # after pruning more

Like jaxpruner's ``wrap_optax`` (Lee et al. 2023), for masks as flatjax writes them (bool
leaves in the pruning scope, None elsewhere).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flatjax.optim.grad_fn import GradFn, loss_and_grads
from flatjax.sparsity.masks import apply_mask, boolean_tree


class KeepPrunedState(NamedTuple):
  """``inner``: the wrapped optimizer's state; ``mask``: the mask as a full bool tree
  (:func:`~flatjax.sparsity.masks.boolean_tree`)."""
  inner: Any
  mask: Any


def _masked_grad_fn(grad_fn: Callable | None, mask: Any) -> GradFn | None:
  if grad_fn is None:
    return None

  def fn(params):
    loss, grads = loss_and_grads(grad_fn, apply_mask(params, mask))
    grads = apply_mask(grads, mask)
    return grads if loss is None else (loss, grads)
  return GradFn(fn)


def keep_pruned(inner: optax.GradientTransformation,
                mask: Any | None) -> optax.GradientTransformationExtraArgs:
  """``inner`` with the pruned weights of ``mask`` kept at exactly 0 (module docstring).

  Args:
    inner: any optax transformation (extra args such as ``grad_fn`` are passed on).
    mask: a flatjax mask (bool leaves, None outside the scope) or a full bool tree;
      ``None`` keeps every weight.

  ``update(updates, state, params, **extra_args)`` needs ``params``.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    full = boolean_tree(mask, params)
    return KeepPrunedState(inner=inner.init(apply_mask(params, full)), mask=full)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("keep_pruned needs params: tx.update(grads, state, params, ...)")
    m = state.mask
    if "grad_fn" in extra_args:
      extra_args["grad_fn"] = _masked_grad_fn(extra_args["grad_fn"], m)
    new, inner_state = inner.update(apply_mask(updates, m), state.inner, apply_mask(params, m),
                                    **extra_args)
    new = jax.tree.map(lambda u, p, k: jnp.where(k, u, -p).astype(u.dtype), new, params, m)
    return new, KeepPrunedState(inner=inner_state, mask=m)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
