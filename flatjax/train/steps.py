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

from flatjax.optim.grad_fn import GradFn
from flatjax.sparsity.masks import apply_mask
from flatjax.train.losses import MODEL_INPUTS, LossFn
from flatjax.train.state import TrainState, step_key


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformationExtraArgs,
                    schedule: optax.Schedule | None = None) -> Callable:
  """A pure ``train_step(state, batch) -> (state, metrics)`` (jit it yourself).

  The loss sees ``apply_mask(params, state.mask)``, so pruned weights get zero
  gradient. ``grad_fn`` handed to the optimizer (a :class:`flatjax.optim.GradFn`)
  evaluates the same masked loss on the same batch and dropout key at other
  params (what SAM needs). Every call is one step, whatever the optimizer, so
  schedules, evaluation and checkpoints count the same for all of them.

  ``metrics``: ``loss`` and ``grad_norm`` at ``state.params``, the ``aux`` of
  the loss, ``learning_rate`` when ``schedule`` is given, and
  ``perturbed_loss`` when the optimizer records one (SAM and its variants).
  """
  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = step_key(state)

    def masked_loss(params, batch=batch):
      return loss_fn(apply_mask(params, state.mask), batch, rng)

    grad_of = jax.value_and_grad(masked_loss, has_aux=True)
    (loss, aux), grads = grad_of(state.params)

    grad_fn = GradFn(grad_of, base_params=state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, grad_fn=grad_fn)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    perturbed = optax.tree.get_all_with_path(opt_state, "perturbed_loss")
    if perturbed:
      metrics["perturbed_loss"] = perturbed[0][1]
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics
  return train_step


def train_compiler_options(backend: str | None = None) -> dict[str, str]:
  """The XLA options flatjax compiles its train step with, for ``backend``
  (default: JAX's default backend).

  On CPU, XLA's memory-optimised scheduler: a step's scratch buffer (~1.3 GB for
  MiniLM at batch 32 x 128) is allocated afresh, and page-faulted in, on every
  call, and this schedule makes it ~15% smaller; ``benchmarks/step_time.py``
  measured the MiniLM step ~9% faster with it on a 2-core CPU. It reorders
  independent operations only. Other backends: none.
  """
  backend = backend or jax.default_backend()
  if backend == "cpu":
    return {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
  return {}


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
