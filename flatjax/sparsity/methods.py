"""The pruning methods by name, each a :class:`~flatjax.sparsity.pruner.Scoring`.

- ``"magnitude"``: ``|w|`` (Han et al. 2015; Chen et al. 2020's IMP). Once:
  one-shot and IMP; gradually: Zhu & Gupta's (2017) gradual magnitude pruning.
- ``"movement"``: ``-sum_t W_t g_t`` (Sanh et al. 2020), gradually only.
- ``"random"``: scores drawn once at random, the control.

:func:`register` adds one; :func:`make_pruner` builds the train step's
:class:`~flatjax.sparsity.pruner.Pruner` of a method on the cubic schedule.

Movement pruning, in Sanh et al.'s terms: each weight has a score ``S``; the
forward pass uses ``W' = W * TopK(S)`` and the scores are trained with the
straight-through estimator, ``dL/dS = dL/dW' * W``; by gradient descent, after
T steps ``S = -alpha_S sum_t (dL/dW')_t W_t`` (Sec. 4). Only the order of the
scores matters to TopK, so the learning rate ``alpha_S`` is dropped:

    S_0 = 0,    S_{t+1} = S_t - W_t * g_t,    g_t = dL/dW'_t
    M_{t+1} = TopK(S_{t+1}, keep = 1 - s(t + 1))

Pruned weights are not zeroed: their scores keep moving, so they can come back.

    pruner = movement_pruning(0.9, begin_step=100, end_step=1000)
    step = make_train_step(loss_fn, tx, pruner=pruner)
    state = train_state.create(params, tx, seed, pruner=pruner)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp

from flatjax.errors import FlatjaxInputError
from flatjax.sparsity.masks import is_none
from flatjax.sparsity.pruner import Pruner, Scoring, scheduled


def _keep_state(state: Any, params: Any, dense_grads: Any) -> Any:
  del params, dense_grads
  return state


def magnitude_scoring() -> Scoring:
  """``|w|``: the largest weights are kept (Han et al. 2015; Chen et al. 2020's IMP)."""
  return Scoring(init=lambda in_scope: (), update=_keep_state,
                 scores=lambda state, params: jax.tree.map(
                     lambda p: None if p is None else jnp.abs(p), params, is_leaf=is_none))


class MovementState(NamedTuple):
  """``scores``: ``-sum_t W_t * g_t`` so far, float32, a tree like the params
  with None outside the pruning scope."""
  scores: Any


def movement_scoring() -> Scoring:
  """``-sum_t W_t g_t``: the weights moving away from zero are kept (Sanh et
  al. 2020; the straight-through gradient of the scores without a learning
  rate, which only rescales them)."""
  def init(in_scope):
    return MovementState(jax.tree.map(
        lambda p: None if p is None else jnp.zeros(jnp.shape(p), jnp.float32), in_scope,
        is_leaf=is_none))

  def update(state, params, dense_grads):
    return MovementState(jax.tree.map(
        lambda s, w, g: None if s is None else s - w.astype(jnp.float32) * g.astype(jnp.float32),
        state.scores, params, dense_grads, is_leaf=is_none))
  return Scoring(init=init, update=update, scores=lambda state, params: state.scores,
                 trained=True)


def random_scoring(seed: int = 0) -> Scoring:
  """Uniform random scores drawn once: the random-pruning control."""
  def init(in_scope):
    leaves, treedef = jax.tree.flatten(in_scope, is_leaf=is_none)
    keys = iter(jax.random.split(jax.random.key(seed), max(1, len(leaves))))
    return jax.tree.unflatten(treedef, [
        None if p is None else jax.random.uniform(next(keys), jnp.shape(p)) for p in leaves])
  return Scoring(init=init, update=_keep_state, scores=lambda state, params: state)


SCORINGS: dict[str, Callable[..., Scoring]] = {
    "magnitude": magnitude_scoring, "movement": movement_scoring, "random": random_scoring}


def register(name: str, factory: Callable[..., Scoring]) -> None:
  """Adds a pruning method by name: ``flatjax train --pruning NAME`` then
  learns its mask while fine-tuning, and IMP and one-shot pruning (for scores
  that need no training) can use it."""
  SCORINGS[name] = factory


def get_scoring(name: str, **kwargs: Any) -> Scoring:
  """The method ``name`` of :data:`SCORINGS`, built with ``kwargs``."""
  if name not in SCORINGS:
    raise FlatjaxInputError(f"unknown pruning method {name!r}; registered: "
                            f"{', '.join(sorted(SCORINGS))}")
  return SCORINGS[name](**kwargs)


def untrained_scoring(name: str, **kwargs: Any) -> Scoring:
  """The method ``name`` for pruning a trained model once (one-shot, IMP's
  rounds): refused when its scores come from training (movement)."""
  scoring = get_scoring(name, **kwargs)
  if scoring.trained:
    raise FlatjaxInputError(f"{name!r} scores come from training: use it while fine-tuning "
                            "(flatjax train --pruning), not on a trained model")
  return scoring


def make_pruner(name: str, *, sparsity: float, **kwargs: Any) -> Pruner:
  """The method ``name`` applied gradually while fine-tuning
  (:func:`flatjax.sparsity.pruner.scheduled`, its keyword arguments)."""
  return scheduled(get_scoring(name), sparsity, **kwargs)


def movement_pruning(sparsity: float, *, begin_step: int, end_step: int,
                     scope: str | Iterable[str] | None = None, granularity: str = "per_tensor",
                     update_every: int = 1, initial_sparsity: float = 0.0) -> Pruner:
  """Movement pruning (Sanh, Wolf & Rush, NeurIPS 2020): keep the weights with
  the largest ``-sum_t W_t g_t`` on the cubic schedule; the arguments are
  :func:`flatjax.sparsity.pruner.scheduled`'s."""
  return scheduled(movement_scoring(), sparsity, begin_step=begin_step, end_step=end_step,
                   scope=scope, granularity=granularity, update_every=update_every,
                   initial_sparsity=initial_sparsity)
