"""The ``grad_fn`` contract between a train step and the transforms that use it.

Transforms that re-evaluate the gradient (SAM and its variants) receive a
``grad_fn`` keyword from ``tx.update(grads, state, params, grad_fn=...)``, the
gradient of the same loss, on the same batch and dropout key, at other params.
Any of these forms works:

* ``grad_fn(params) -> grads``, e.g. ``jax.grad(lambda p: loss(p, batch))``;
* optax's ``grad_fn(params, i) -> grads`` (``optax.contrib.sam`` passes its
  adversarial step index; a function that requires it gets ``i = 0``);
* ``jax.value_and_grad`` forms, ``grad_fn(params) -> (loss, grads)`` or, with
  ``has_aux``, ``((loss, aux), grads)``: SAM then records the perturbed loss
  without another forward pass;
* flatjax's :class:`GradFn`, which wraps any of the above.

Under ``optax.masked`` a transform sees only part of the params: the other
leaves are :class:`optax.MaskedNode`, and a plain function cannot be evaluated
without them. :class:`GradFn` fills them with ``base_params`` (the params the
step started from), so a masked SAM perturbs only its own leaves and is handed
full gradients, which it cuts back with :func:`restrict_like`::

    tx = optax.chain(optax.masked(flatjax.sam(0.05), selected), optax.adam(2e-5))
    grad_fn = flatjax.optim.GradFn(jax.grad(lambda p: loss(p, batch)), base_params=params)
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import optax


def is_masked_node(x: Any) -> bool:
  return isinstance(x, optax.MaskedNode)


def fill_masked(partial: Any, full: Any) -> Any:
  """``partial`` with every :class:`optax.MaskedNode` leaf taken from ``full``."""
  return jax.tree.map(lambda p, f: f if is_masked_node(p) else p, partial, full,
                      is_leaf=is_masked_node)


def restrict_like(template: Any, tree: Any) -> Any:
  """``tree`` cut to ``template``'s structure: MaskedNode where ``template`` has one.

  A no-op (same structure) when ``template`` holds no MaskedNode.
  """
  if jax.tree.structure(template) == jax.tree.structure(tree):
    return tree
  return jax.tree.map(lambda t, x: t if is_masked_node(t) else x, template, tree,
                      is_leaf=is_masked_node)


class GradFn:
  """``grad_fn`` for the optax transforms: gradient (and loss) of a loss at other params.

  Args:
    fn: any form of the module docstring: ``params -> grads``, optax's
      ``(params, i) -> grads``, or a ``jax.value_and_grad`` (with or without aux)
      with the batch bound.
    base_params: params that fill :class:`optax.MaskedNode` leaves of a partial
      params tree (see the module docstring); ``None``: only full trees.
  """

  def __init__(self, fn: Callable, base_params: Any = None):
    self._fn = fn
    self._base_params = base_params

  def value_and_grad(self, params: Any) -> tuple[jax.Array | None, Any]:
    """``(loss, grads)`` at ``params``; ``loss`` None where ``fn`` gives gradients only."""
    if self._base_params is not None:
      params = fill_masked(params, self._base_params)
    elif has_masked_nodes(params):
      raise ValueError("under optax.masked the transform sees only its own params: pass "
                       "grad_fn=flatjax.optim.GradFn(grad_fn, base_params=params)")
    return split_output(call(self._fn, params), params)

  def __call__(self, params: Any, *unused: Any) -> Any:
    return self.value_and_grad(params)[1]


def has_masked_nodes(tree: Any) -> bool:
  return any(is_masked_node(x) for x in jax.tree.leaves(tree, is_leaf=is_masked_node))


def call(fn: Callable, params: Any) -> Any:
  """``fn(params)``, or ``fn(params, 0)`` where ``fn`` requires optax's step index."""
  try:
    inspect.signature(fn).bind(params)
  except TypeError:
    return fn(params, 0)
  except ValueError:      # no signature to read (some builtins): the one-argument form
    pass
  return fn(params)


def split_output(out: Any, params: Any) -> tuple[jax.Array | None, Any]:
  """``(loss or None, grads)`` from what a ``grad_fn`` returned: gradients shaped like
  ``params``, ``(loss, grads)`` or ``((loss, aux), grads)``."""
  shape = jax.tree.structure(params, is_leaf=is_masked_node)
  like_params = lambda tree: jax.tree.structure(tree, is_leaf=is_masked_node) == shape
  if like_params(out):
    return None, out
  if isinstance(out, tuple) and len(out) == 2 and like_params(out[1]):
    value = out[0]
    return (value[0] if isinstance(value, tuple) else value), out[1]
  raise ValueError("grad_fn returned neither gradients shaped like the params nor "
                   "(loss, gradients) as jax.value_and_grad does")


def loss_and_grads(grad_fn: Callable, params: Any) -> tuple[jax.Array | None, Any]:
  """``(loss, grads)`` at ``params`` from any form of ``grad_fn``; ``loss`` is None
  where it returns gradients only."""
  if grad_fn is None:
    raise ValueError("this transform re-evaluates the gradient: call "
                     "tx.update(grads, state, params, grad_fn=...)")
  fn = grad_fn if isinstance(grad_fn, GradFn) else GradFn(grad_fn)
  return fn.value_and_grad(params)
