"""The ``grad_fn`` contract between a train step and the transforms that use it.

Transforms that re-evaluate the gradient (SAM and its variants) receive a
``grad_fn`` keyword from ``tx.update(grads, state, params, grad_fn=...)``, the
gradient of the same loss, on the same batch and dropout key, at other params:

* optax's convention: ``grad_fn(params, *unused) -> grads`` (``optax.contrib.sam``
  passes its adversarial step index as a second argument, which is ignored);
* flatjax's :class:`GradFn` adds ``grad_fn.value_and_grad(params) ->
  ((loss, aux), grads)``, so SAM can report the perturbed loss without another
  forward pass; plain callables work too, without that report;
* under ``optax.masked`` a transform sees only part of the params: the other
  leaves are :class:`optax.MaskedNode`. :class:`GradFn` fills them with
  ``base_params`` (the params the step started from), so a masked SAM perturbs
  only its own leaves and is handed full gradients, which it cuts back with
  :func:`restrict_like`.
"""

from __future__ import annotations

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
  """``grad_fn`` for the optax transforms: gradient of a loss at other params.

  Args:
    value_and_grad_fn: ``params -> ((loss, aux), grads)``, e.g.
      ``jax.value_and_grad(loss, has_aux=True)`` with the batch bound.
    base_params: params that fill :class:`optax.MaskedNode` leaves of a partial
      params tree (see the module docstring); ``None``: only full trees.
  """

  def __init__(self, value_and_grad_fn: Callable[[Any], tuple[tuple[Any, Any], Any]],
               base_params: Any = None):
    self._value_and_grad = value_and_grad_fn
    self._base_params = base_params

  def value_and_grad(self, params: Any) -> tuple[tuple[jax.Array, Any], Any]:
    if self._base_params is not None:
      params = fill_masked(params, self._base_params)
    return self._value_and_grad(params)

  def __call__(self, params: Any, *unused: Any) -> Any:
    return self.value_and_grad(params)[1]


def loss_and_grads(grad_fn: Callable, params: Any) -> tuple[jax.Array | None, Any]:
  """``(loss, grads)`` at ``params`` from any ``grad_fn``; ``loss`` is None where
  ``grad_fn`` is a plain optax-style callable that returns gradients only."""
  if grad_fn is None:
    raise ValueError("this transform re-evaluates the gradient: call "
                     "tx.update(grads, state, params, grad_fn=...)")
  value_and_grad = getattr(grad_fn, "value_and_grad", None)
  if value_and_grad is None:
    return None, grad_fn(params)
  (loss, _), grads = value_and_grad(params)
  return loss, grads
