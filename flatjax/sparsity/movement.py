"""Movement pruning (Sanh et al. 2020) as a pluggable pruner of the train step.

A *pruner* learns the mask during fine-tuning. The train step hands it, after
every step, the dense params ``W``, the gradient ``g = dL/dW'`` of the loss
with respect to the masked weights ``W' = W * M`` (nonzero for pruned weights
too), the step and the mask it used; it returns its new state and the mask
for the next step.

Movement pruning keeps the weights that move away from zero. Each weight has a
score ``S``; the forward pass uses ``W' = W * TopK(S)`` and the scores are
trained with the straight-through estimator, ``dL/dS = dL/dW' * W``; by
gradient descent, after T steps ``S = -alpha_S sum_t (dL/dW')_t W_t`` (Sanh et
al., Sec. 4). Only the order of the scores matters to TopK, so
:func:`movement_pruning` drops the learning rate ``alpha_S`` and keeps:

    S_0 = 0,    S_{t+1} = S_t - W_t * g_t,    g_t = dL/dW'_t
    M_{t+1} = TopK(S_{t+1}, keep = 1 - s(t + 1))

with the cubic sparsity schedule ``s`` of Zhu & Gupta (2017)
(:func:`cubic_sparsity_schedule`), as Sanh et al. use. Pruned weights are not
zeroed: their scores keep moving, so they can come back.

    pruner = movement_pruning(0.9, begin_step=100, end_step=1000)
    step = make_train_step(loss_fn, tx, pruner=pruner)
    state = train_state.create(params, tx, seed, pruner=pruner)

Pruners by name: :data:`PRUNERS`, :func:`make_pruner`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp

from flatjax.errors import FlatjaxInputError
from flatjax.errors import whole_number as _whole
from flatjax.sparsity.masks import GRANULARITIES, scope_mask, top_k_mask


def _is_none(x: Any) -> bool:
  return x is None


class Pruner(NamedTuple):
  """A mask learned during training; every function is pure and jittable.

  Attributes:
    init: ``params -> state``.
    init_mask: ``params -> mask``, the mask of step 0 (every weight in the
      pruner's scope kept; None outside it).
    update: ``(state, params, dense_grads, step, mask) -> (state, new_mask)``,
      called after step ``step`` with that step's params, the gradient with
      respect to the masked weights and the mask it used; ``new_mask`` is the
      mask of step ``step + 1`` (same tree structure as ``mask``).
    sparsity_at: ``step -> target sparsity`` of the mask used at ``step``.
    final_sparsity: the target at the end of the schedule.
  """
  init: Callable[[Any], Any]
  init_mask: Callable[[Any], Any]
  update: Callable[[Any, Any, Any, jax.Array, Any], tuple[Any, Any]]
  sparsity_at: Callable[[jax.Array], jax.Array]
  final_sparsity: float


class MovementState(NamedTuple):
  """``scores``: ``-sum_t W_t * g_t`` so far, float32, a tree like the params
  with None outside the pruning scope."""
  scores: Any


def _fraction(name: str, value: Any) -> float:
  try:
    out = float(value)
  except (TypeError, ValueError):
    out = math.nan
  if not 0.0 <= out <= 1.0:  # NaN fails too
    raise FlatjaxInputError(f"{name} must be in [0, 1], got {value!r}")
  return out


def cubic_sparsity_schedule(final_sparsity: float, begin_step: int, end_step: int,
                            initial_sparsity: float = 0.0) -> Callable[[jax.Array], jax.Array]:
  """The cubic sparsity schedule of Zhu & Gupta (2017), ``step -> sparsity``:

      s(t) = s_i                                       t < begin
      s(t) = s_f + (s_i - s_f) (1 - (t - begin) / (end - begin))^3
                                                       begin <= t <= end
      s(t) = s_f                                       t > end

  Pruning is fast early, while many redundant weights remain, and slow near the
  target. Returns float32 (``step`` may be traced).

  References:
    Zhu & Gupta, *To prune, or not to prune: exploring the efficacy of pruning
    for model compression*, 2017. Sanh et al., *Movement Pruning: Adaptive
    Sparsity by Fine-Tuning*, NeurIPS 2020 (who prune on this schedule).
  """
  s_f = _fraction("final sparsity", final_sparsity)
  s_i = _fraction("initial sparsity", initial_sparsity)
  begin_step = _whole("begin step", begin_step, 0)
  end_step = _whole("end step", end_step, 0)
  if not begin_step < end_step:
    raise FlatjaxInputError(f"sparsity schedule: need begin step < end step, got "
                            f"{begin_step} and {end_step}")

  def schedule(step):
    # Clipping the progress to [0, 1] gives s_i before begin and s_f after end.
    t = jnp.asarray(step, jnp.float32)
    progress = jnp.clip((t - begin_step) / (end_step - begin_step), 0.0, 1.0)
    return jnp.asarray(s_f + (s_i - s_f) * (1.0 - progress) ** 3, jnp.float32)
  return schedule


def _keep_count(size: int, sparsity: jax.Array) -> jax.Array:
  """``size - round(sparsity * size)`` (as :func:`flatjax.sparsity.masks.num_to_prune`,
  half to even, but from a traced float32 sparsity), clipped to ``[0, size]``."""
  pruned = jnp.round(sparsity * jnp.float32(size)).astype(jnp.int32)
  return jnp.clip(jnp.int32(size) - pruned, 0, size)


def movement_pruning(sparsity: float, *, begin_step: int, end_step: int,
                     scope: str | Iterable[str] | None = None,
                     granularity: str = "per_tensor", update_every: int = 1,
                     initial_sparsity: float = 0.0) -> Pruner:
  """Movement pruning: keep the weights with the largest ``-sum_t W_t g_t``.

  Args:
    sparsity: final fraction of the weights in scope to prune.
    begin_step, end_step: the cubic schedule rises from ``initial_sparsity``
      at ``begin_step`` to ``sparsity`` at ``end_step``
      (:func:`cubic_sparsity_schedule`); the mask keeps being re-chosen from
      the scores after ``end_step``, at the final sparsity.
    scope: which params are pruned (:func:`flatjax.sparsity.masks.resolve_scope`;
      None: BERT's encoder and pooler kernels).
    granularity: "per_tensor" (default) keeps ``size - round(s * size)``
      weights of every tensor, as Sanh et al. do (their TopK is taken within
      each weight matrix); "global" ranks all scores in scope together.
    update_every: re-choose the mask after steps ``t`` with ``(t + 1) %
      update_every == 0`` and after ``t + 1 == end_step`` (so the final
      sparsity is reached on time); other steps keep the mask and skip the
      top-k. Scores are accumulated every step.
    initial_sparsity: the schedule's start (0: keep everything at first).

  Sparsity targets are float32, so ``round(s * size)`` is taken on float32
  ``s``; ties among equal scores keep the earlier weights (:func:`top_k_mask`).

  References:
    Sanh, Wolf & Rush, *Movement Pruning: Adaptive Sparsity by Fine-Tuning*,
    NeurIPS 2020.
  """
  schedule = cubic_sparsity_schedule(sparsity, begin_step, end_step, initial_sparsity)
  if granularity not in GRANULARITIES:
    raise FlatjaxInputError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
  update_every = _whole("update_every", update_every, 1)

  def init_mask(params):
    return scope_mask(params, scope)

  def init_fn(params):
    return MovementState(scores=jax.tree.map(
        lambda m, p: None if m is None else jnp.zeros(jnp.shape(p), jnp.float32),
        init_mask(params), params, is_leaf=_is_none))

  def choose(scores, s):
    if granularity == "global":
      total = sum(int(x.size) for x in jax.tree.leaves(scores))
      return top_k_mask(scores, _keep_count(total, s))
    return jax.tree.map(lambda x: None if x is None else top_k_mask(x, _keep_count(x.size, s)),
                        scores, is_leaf=_is_none)

  def update_fn(state, params, dense_grads, step, mask):
    # Straight-through: dL/dS = dL/dW' * W, summed without a learning rate.
    scores = jax.tree.map(
        lambda s, w, g: None if s is None else s - w.astype(jnp.float32) * g.astype(jnp.float32),
        state.scores, params, dense_grads, is_leaf=_is_none)
    following = jnp.asarray(step, jnp.int32) + 1
    refresh = (following % update_every == 0) | (following == end_step)
    # cond, not where: steps that keep the mask skip the top-k's 32 counting passes.
    new_mask = jax.lax.cond(refresh, lambda: choose(scores, schedule(following)), lambda: mask)
    return MovementState(scores=scores), new_mask

  return Pruner(init=init_fn, init_mask=init_mask, update=update_fn, sparsity_at=schedule,
                final_sparsity=_fraction("sparsity", sparsity))


PRUNERS: dict[str, Callable[..., Pruner]] = {"movement": movement_pruning}


def make_pruner(name: str, **kwargs: Any) -> Pruner:
  """The pruner ``name`` from :data:`PRUNERS`, built with ``kwargs``."""
  if name not in PRUNERS:
    raise FlatjaxInputError(f"unknown pruner {name!r}; registered: {', '.join(sorted(PRUNERS))}")
  return PRUNERS[name](**kwargs)
