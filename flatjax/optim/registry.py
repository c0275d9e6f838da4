"""Optimizers by name: the CLI and experiments pick one with ``--optimizer``.

A registry entry is a factory ``(OptimizerConfig, total_steps) ->
optax.GradientTransformationExtraArgs``. The train step always calls
``tx.update(grads, opt_state, params, grad_fn=...)``; transforms that need to
re-evaluate the gradient (SAM and its variants) use ``grad_fn``, the rest
ignore it, so adding an optimizer never touches the loop.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import optax

from flatjax.errors import FlatjaxInputError


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Hyperparameters shared by the registry's optimizers.

  The defaults are the paper's GLUE recipe (Na et al. 2022, Sec. 3): Adam,
  lr 2e-5 decayed linearly to 0, no warmup, no weight decay, no clipping.
  """
  name: str = "adam"
  learning_rate: float = 2e-5
  weight_decay: float = 0.0
  warmup_steps: int = 0
  clip_norm: float | None = None
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  # Extra per-optimizer settings (e.g. SAM's rho); each factory reads its own.
  extra: tuple[tuple[str, float], ...] = ()

  def get(self, key: str, default: float) -> float:
    return dict(self.extra).get(key, default)


Factory = Callable[[OptimizerConfig, int], optax.GradientTransformationExtraArgs]
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
  """Decorator adding a factory under ``name``."""
  def add(factory: Factory) -> Factory:
    if name in _REGISTRY:
      raise ValueError(f"optimizer {name!r} is already registered")
    _REGISTRY[name] = factory
    return factory
  return add


def names() -> list[str]:
  return sorted(_REGISTRY)


def linear_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
  if total_steps <= 0:
    raise FlatjaxInputError(f"total_steps must be positive, got {total_steps}")
  warmup = min(config.warmup_steps, total_steps)
  decay = optax.linear_schedule(config.learning_rate, 0.0, max(total_steps - warmup, 1))
  if warmup == 0:
    return decay
  rise = optax.linear_schedule(0.0, config.learning_rate, warmup)
  return optax.join_schedules([rise, decay], [warmup])


def _with_clipping(config: OptimizerConfig, tx: optax.GradientTransformation):
  parts = [] if config.clip_norm is None else [optax.clip_by_global_norm(config.clip_norm)]
  return optax.chain(*parts, tx)


@register("adamw")
def adamw(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """AdamW (decoupled weight decay, Loshchilov & Hutter 2019) on the linear schedule."""
  return _with_clipping(config, optax.adamw(
      linear_schedule(config, total_steps), b1=config.b1, b2=config.b2, eps=config.eps,
      weight_decay=config.weight_decay))


@register("adam")
def adam(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """The paper's baseline: Adam with weight decay 0 (a nonzero ``weight_decay`` is an error)."""
  if config.weight_decay:
    raise FlatjaxInputError("optimizer 'adam' has no weight decay; use 'adamw' for weight_decay")
  return _with_clipping(config, optax.adam(
      linear_schedule(config, total_steps), b1=config.b1, b2=config.b2, eps=config.eps))


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """The registered optimizer ``config.name`` for a run of ``total_steps`` steps."""
  if config.name not in _REGISTRY:
    raise FlatjaxInputError(
        f"unknown optimizer {config.name!r}; registered: {', '.join(names())}")
  if config.learning_rate <= 0:
    raise FlatjaxInputError(f"learning rate must be positive, got {config.learning_rate}")
  return _REGISTRY[config.name](config, total_steps)
