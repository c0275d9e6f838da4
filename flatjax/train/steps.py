"""The jitted train and eval steps.

``train_step(state, batch) -> (state, metrics)`` is the spine every later
feature plugs into: pruning changes ``state.mask``, SAM changes the optimizer,
sharding changes the shardings given to ``jax.jit``; the step stays the same.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import optax

from flatjax.optim.accumulate import microbatched, weighted_rows
from flatjax.optim.grad_fn import GradFn
from flatjax.sparsity.masks import apply_mask
from flatjax.sparsity.pruner import Pruner
from flatjax.models.bert import MODEL_INPUTS
from flatjax.runtime import train_compiler_options
from flatjax.train.losses import LossFn
from flatjax.train.state import TrainState, step_key


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformationExtraArgs,
                    schedule: optax.Schedule | None = None,
                    pruner: Pruner | None = None, micro_batches: int = 1) -> Callable:
  """A pure ``train_step(state, batch) -> (state, metrics)`` (jit it yourself).

  The loss sees ``apply_mask(params, state.mask)``, so pruned weights get zero
  gradient. ``grad_fn`` handed to the optimizer (a :class:`flatjax.optim.GradFn`)
  evaluates the same masked loss on the same batch and dropout key at other
  params (what SAM needs). Every call is one step, whatever the optimizer, so
  schedules, evaluation and checkpoints count the same for all of them.

  With a ``pruner`` (:mod:`flatjax.sparsity.pruner`; the state made by
  ``create(..., pruner=pruner)``) the gradient is taken with respect to the
  masked weights ``W'``: the pruner gets that dense ``dL/dW'`` (nonzero for
  pruned weights, which movement pruning scores need), the optimizer gets it
  masked, which equals the gradient through ``apply_mask``. After the update
  the pruner sets ``state.mask`` for the next step. Weights are not zeroed
  when pruned: the forward pass masks them, so they can come back.

  ``metrics``: ``loss`` and ``grad_norm`` at ``state.params``, the ``aux`` of
  the loss, ``learning_rate`` when ``schedule`` is given, ``perturbed_loss``
  when the optimizer records one (SAM and its variants), and ``sparsity``, the
  pruner's target for this step's mask, with a pruner.

  With ``micro_batches`` K > 1 every gradient (the clean one and each one the optimizer
  asks ``grad_fn`` for) is taken over the batch's K micro-batches in turn
  (:func:`flatjax.optim.microbatched`, weighted by their real rows): the whole batch's
  step, with one micro-batch's activations in memory. Micro-batch ``i``'s dropout key is
  ``fold_in(key, i)``.
  """
  def value_and_grad(loss):
    return microbatched(loss, micro_batches, has_aux=True, weight_fn=weighted_rows())

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = step_key(state)

    def masked_loss(params, batch, rng):
      return loss_fn(apply_mask(params, state.mask), batch, rng)

    grad_of = lambda params: value_and_grad(masked_loss)(params, batch, rng)  # noqa: E731
    if pruner is None:
      (loss, aux), grads = grad_of(state.params)
    else:
      if state.mask is None or state.pruning is None:
        raise ValueError("a train step with a pruner needs a state made by "
                         "create(..., pruner=pruner)")
      (loss, aux), dense = value_and_grad(loss_fn)(apply_mask(state.params, state.mask), batch,
                                                   rng)
      grads = apply_mask(dense, state.mask)  # = the gradient through apply_mask

    grad_fn = GradFn(grad_of, base_params=state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, grad_fn=grad_fn)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    perturbed = optax.tree.get_all_with_path(opt_state, "perturbed_loss")
    if perturbed:
      metrics["perturbed_loss"] = perturbed[0][1]
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step)
    new = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
    if pruner is not None:
      # Scored with this step's params and gradient, the W_t and g_t of S -= W_t g_t.
      pruning, mask = pruner.update(state.pruning, state.params, dense, state.step, state.mask,
                                    params)
      new = new.replace(pruning=pruning, mask=mask)
      metrics["sparsity"] = pruner.sparsity_at(state.step)
    return new, metrics
  return train_step


def jit_train_step(train_step: Callable) -> Callable:
  """``jax.jit`` of a train step as the loop runs it: the state donated, compiled
  with :func:`train_compiler_options`."""
  return jax.jit(train_step, donate_argnums=0, compiler_options=train_compiler_options() or None)


def make_eval_step(module: nn.Module) -> Callable:
  """``eval_step(params, mask, batch) -> outputs`` with dropout off; only the
  logits are returned so the host copies little."""
  def eval_step(params: Any, mask: Any, batch: dict) -> dict:
    out = module.apply({"params": apply_mask(params, mask)},
                       *(batch[k] for k in MODEL_INPUTS), deterministic=True)
    return {k: v for k, v in out.items() if k.endswith("logits")}
  return eval_step
