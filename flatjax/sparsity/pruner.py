"""One interface for every pruning method: a scoring rule plus a sparsity schedule.

As jaxpruner's updaters, a method is only its *scores* (higher = kept); what it
prunes at a given sparsity is the top-k of those scores within its scope,
counted over the whole scope ("global") or per tensor. A :class:`Scoring` is
used three ways:

- once, at a fixed sparsity (:func:`prune_once`): one-shot pruning and each
  round of iterative magnitude pruning (IMP);
- gradually during fine-tuning (:func:`scheduled`): the mask is re-chosen from
  the scores as a :func:`cubic_sparsity_schedule` rises, and the result is a
  :class:`Pruner` the train step runs (movement pruning, gradual magnitude
  pruning);
- for structured pruning, CoFi's hard-concrete gates are the same pattern
  over heads, neurons and hidden dimensions: their scores are the learned
  log-alphas, their schedule the Lagrangian's target warm-up
  (:func:`flatjax.sparsity.hardconcrete.target_sparsity_at`) and their mask
  the top-k of :func:`~flatjax.sparsity.hardconcrete.deterministic_gates`.

The methods by name (``"magnitude"``, ``"movement"``, ``"random"``) are in
:mod:`flatjax.sparsity.methods`; a new one is one ``register`` call there
(docs/extending.md).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp

from flatjax.errors import FlatjaxInputError
from flatjax.errors import whole_number as _whole
from flatjax.sparsity.masks import (apply_mask, check_granularity, is_none, n_m, n_m_mask,
                                    score_mask, scope_mask, top_k_mask)


class Scoring(NamedTuple):
  """How a pruning method ranks the weights in its scope; all pure and jittable.

  Attributes:
    init: ``in_scope -> state``: ``in_scope`` is the params with None outside
      the pruning scope; the state the scores start from.
    update: ``(state, params, dense_grads) -> state`` after each train step,
      with the params that step used and the gradient with respect to the
      masked weights.
    scores: ``(state, params) -> scores``, a tree like ``in_scope`` (None
      outside the scope) of float scores; the highest are kept. In training,
      ``params`` are the updated ones as the forward pass sees them (pruned
      weights 0).
    trained: whether the scores need training steps (movement's do); such a
      method is used only gradually, never by :func:`prune_once`.
  """
  init: Callable[[Any], Any]
  update: Callable[[Any, Any, Any], Any]
  scores: Callable[[Any, Any], Any]
  trained: bool = False


class Pruner(NamedTuple):
  """A mask learned during training, as the train step runs it; every
  function is pure and jittable.

  Attributes:
    init: ``params -> state``.
    init_mask: ``params -> mask``, the mask of step 0 (every weight in the
      pruner's scope kept; None outside it).
    update: ``(state, params, dense_grads, step, mask, next_params) ->
      (state, new_mask)``, called after step ``step`` with that step's params,
      the gradient with respect to the masked weights, the mask it used and
      the params it produced; ``new_mask`` is the mask of step ``step + 1``
      (same tree structure as ``mask``).
    sparsity_at: ``step -> target sparsity`` of the mask used at ``step``.
    final_sparsity: the target at the end of the schedule.
  """
  init: Callable[[Any], Any]
  init_mask: Callable[[Any], Any]
  update: Callable[[Any, Any, Any, jax.Array, Any, Any], tuple[Any, Any]]
  sparsity_at: Callable[[jax.Array], jax.Array]
  final_sparsity: float


def in_scope(params: Any, selection: Any) -> Any:
  """``params`` with None where ``selection`` (a mask's structure) is None."""
  return jax.tree.map(lambda m, p: None if m is None else p, selection, params,
                      is_leaf=is_none)


def prune_once(scoring: Scoring, params: Any, sparsity: float, *,
               scope: str | Iterable[str] | None = None, granularity: str = "global",
               previous: Any | None = None) -> Any:
  """The mask that prunes the ``sparsity`` fraction of lowest-scored weights.

  ``previous``: an earlier mask whose pruned weights stay pruned (IMP; it
  defines the scope then). The count is ``round(sparsity * n)`` over the
  scope ("global") or each tensor ("per_tensor"), as
  :func:`flatjax.sparsity.masks.score_mask`.
  """
  if scoring.trained:
    raise FlatjaxInputError("this pruning method's scores come from training; use it while "
                            "fine-tuning (flatjax train --pruning), not on a trained model")
  selection = scope_mask(params, scope) if previous is None else previous
  weights = in_scope(params, selection)
  scores = scoring.scores(scoring.init(weights), weights)
  return score_mask(scores, sparsity, granularity=granularity, previous=previous)


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


def _choose(scores: Any, sparsity: jax.Array, granularity: str) -> Any:
  pattern = n_m(granularity)
  if pattern is not None:
    # On the way to the final N:M, every group of M drops a weight at each 1/M of sparsity.
    n, m = pattern
    keep = jnp.clip(m - jnp.round(sparsity * m).astype(jnp.int32), n, m)
    return jax.tree.map(lambda x: None if x is None else n_m_mask(x, keep, m), scores,
                        is_leaf=is_none)
  if granularity == "global":
    total = sum(int(x.size) for x in jax.tree.leaves(scores))
    return top_k_mask(scores, _keep_count(total, sparsity))
  return jax.tree.map(lambda x: None if x is None else top_k_mask(x, _keep_count(x.size, sparsity)),
                      scores, is_leaf=is_none)


def scheduled(scoring: Scoring, sparsity: float, *, begin_step: int, end_step: int,
              scope: str | Iterable[str] | None = None, granularity: str = "per_tensor",
              update_every: int = 1, initial_sparsity: float = 0.0) -> Pruner:
  """``scoring`` applied gradually while fine-tuning: the train step's :class:`Pruner`.

  Args:
    scoring: the method's scores (updated after every step).
    sparsity: final fraction of the weights in scope to prune.
    begin_step, end_step: the cubic schedule rises from ``initial_sparsity``
      at ``begin_step`` to ``sparsity`` at ``end_step``
      (:func:`cubic_sparsity_schedule`); the mask keeps being re-chosen from
      the scores after ``end_step``, at the final sparsity.
    scope: which params are pruned (:func:`flatjax.sparsity.masks.resolve_scope`;
      None: BERT's encoder and pooler kernels).
    granularity: "per_tensor" (default) keeps ``size - round(s * size)``
      weights of every tensor, as Sanh et al. do (their TopK is taken within
      each weight matrix); "global" ranks all scores in scope together; "N:M"
      ends at N of every M inputs, dropping one weight of each group per 1/M
      of the schedule's sparsity on the way.
    update_every: re-choose the mask after steps ``t`` with ``(t + 1) %
      update_every == 0`` and after ``t + 1 == end_step`` (so the final
      sparsity is reached on time); other steps keep the mask and skip the
      top-k. Scores are updated every step.
    initial_sparsity: the schedule's start (0: keep everything at first).

  Sparsity targets are float32, so ``round(s * size)`` is taken on float32
  ``s``; ties among equal scores keep the earlier weights (:func:`top_k_mask`).
  Pruned weights are not zeroed by the pruner: the forward pass masks them,
  and a weight whose score recovers comes back.
  """
  schedule = cubic_sparsity_schedule(sparsity, begin_step, end_step, initial_sparsity)
  check_granularity(granularity, [sparsity])     # an N:M run ends on a whole N:M
  update_every = _whole("update_every", update_every, 1)

  def init_mask(params):
    return scope_mask(params, scope)

  def init_fn(params):
    return scoring.init(in_scope(params, init_mask(params)))

  def update_fn(state, params, dense_grads, step, mask, next_params):
    state = scoring.update(state, in_scope(params, mask), dense_grads)
    following = jnp.asarray(step, jnp.int32) + 1
    refresh = (following % update_every == 0) | (following == end_step)
    # cond, not where: steps that keep the mask skip the top-k's 32 counting passes.
    # Scores see the weights as the forward pass does: pruned ones are 0.
    new_mask = jax.lax.cond(
        refresh, lambda: _choose(scoring.scores(state, in_scope(
            apply_mask(next_params, mask), mask)), schedule(following), granularity),
        lambda: mask)
    return state, new_mask

  return Pruner(init=init_fn, init_mask=init_mask, update=update_fn, sparsity_at=schedule,
                final_sparsity=_fraction("sparsity", sparsity))
