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
# Functions, not modules: flatjax.optim's names gsam/looksam/sam are the transforms.
from flatjax.optim.gsam import gsam as gsam_transform
from flatjax.optim.gsam import rho_schedule_from_lr
from flatjax.optim.looksam import looksam as looksam_transform
from flatjax.optim.sam import sam as sam_transform
from flatjax.optim.swa import SWAConfig


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
  # Stochastic weight averaging on top of the optimizer (None: off).
  swa: SWAConfig | None = None

  def get(self, key: str, default: float) -> float:
    return dict(self.extra).get(key, default)


Factory = Callable[[OptimizerConfig, int], optax.GradientTransformationExtraArgs]
_REGISTRY: dict[str, Factory] = {}
# Each optimizer's own settings and their defaults, as registered.
SETTINGS: dict[str, dict[str, float]] = {}


def register(name: str, settings: dict[str, float] | None = None
             ) -> Callable[[Factory], Factory]:
  """Decorator adding a factory under ``name``; ``settings``: the optimizer-specific
  settings it takes (``--opt-arg NAME=VALUE``) with their defaults, written only here."""
  def add(factory: Factory) -> Factory:
    if name in _REGISTRY:
      raise ValueError(f"optimizer {name!r} is already registered")
    _REGISTRY[name] = factory
    SETTINGS[name] = dict(settings or {})
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


def base_optimizer(config: OptimizerConfig, total_steps: int,
                   adamw: bool = False) -> optax.GradientTransformation:
  """Adam on the linear schedule (AdamW when ``adamw`` or ``weight_decay`` is
  set), after optional global-norm clipping."""
  lr = linear_schedule(config, total_steps)
  if adamw or config.weight_decay:
    base = optax.adamw(lr, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=config.weight_decay)
  else:
    base = optax.adam(lr, b1=config.b1, b2=config.b2, eps=config.eps)
  clip = [] if config.clip_norm is None else [optax.clip_by_global_norm(config.clip_norm)]
  return optax.chain(*clip, base)


def settings(name: str) -> dict[str, float]:
  """The settings optimizer ``name`` takes, with their defaults (none for an optimizer
  registered without an entry in :data:`SETTINGS`)."""
  return dict(SETTINGS.get(name, {}))


def resolved_settings(config: OptimizerConfig) -> dict[str, float]:
  """``config``'s optimizer settings: ``config.extra`` over the registered defaults; a
  key the optimizer does not take is an error."""
  return _settings(config, settings(config.name))


def _settings(config: OptimizerConfig, defaults: dict[str, float]) -> dict[str, float]:
  """``config.extra`` over ``defaults``; a key the optimizer does not take is an error."""
  unknown = sorted(set(dict(config.extra)) - set(defaults))
  if unknown:
    takes = ", ".join(sorted(defaults)) or "none"
    raise FlatjaxInputError(f"optimizer {config.name!r} has no setting {', '.join(unknown)} "
                            f"(it takes: {takes})")
  return {k: config.get(k, v) for k, v in defaults.items()}


def _positive(name: str, settings: dict[str, float], *keys: str) -> None:
  for key in keys:
    if not settings[key] > 0:
      raise FlatjaxInputError(f"{name}: {key} must be positive, got {settings[key]}")


@register("adamw")
def adamw(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """AdamW (decoupled weight decay, Loshchilov & Hutter 2019) on the linear schedule."""
  _settings(config, SETTINGS["adamw"])
  return base_optimizer(config, total_steps, adamw=True)


@register("adam")
def adam(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """The paper's baseline: Adam with weight decay 0 (a nonzero ``weight_decay`` is an error)."""
  if config.weight_decay:
    raise FlatjaxInputError("optimizer 'adam' has no weight decay; use 'adamw' for weight_decay")
  _settings(config, SETTINGS["adam"])
  return base_optimizer(config, total_steps)


@register("sam", {"rho": 0.05})
def sam(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """The paper's method: SAM (rho 0.05) on Adam (Na et al. 2022; Foret et al. 2021)."""
  s = _settings(config, SETTINGS["sam"])
  _positive("sam", s, "rho")
  return optax.chain(sam_transform(s["rho"]), base_optimizer(config, total_steps))


@register("asam", {"rho": 0.5, "eta": 0.01})
def asam(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """ASAM (Kwon et al. 2021) on Adam; rho 0.5 (10x SAM's, as its authors advise), eta 0.01."""
  s = _settings(config, SETTINGS["asam"])
  _positive("asam", s, "rho")
  return optax.chain(sam_transform(s["rho"], adaptive=True, eta=s["eta"]),
                     base_optimizer(config, total_steps))


@register("gsam", {"rho": 0.05, "rho_min": 0.0, "alpha": 0.1})
def gsam(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """GSAM (Zhuang et al. 2022) on Adam: alpha 0.1, rho following the lr from
  ``rho`` (0.05, at the peak lr) down to ``rho_min`` (0.0, at lr 0)."""
  s = _settings(config, SETTINGS["gsam"])
  _positive("gsam", s, "rho")
  if not 0 <= s["rho_min"] <= s["rho"]:
    raise FlatjaxInputError(f"gsam: need 0 <= rho_min <= rho, got {s['rho_min']}, {s['rho']}")
  rho = rho_schedule_from_lr(linear_schedule(config, total_steps), rho_max=s["rho"],
                             rho_min=s["rho_min"], lr_max=config.learning_rate)
  return optax.chain(gsam_transform(rho, s["alpha"]), base_optimizer(config, total_steps))


@register("looksam", {"rho": 0.05, "k": 5, "alpha": 0.7})
def looksam(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """LookSAM (Liu et al. 2022) on Adam: exact SAM (rho 0.05) every k = 5 steps, alpha 0.7."""
  s = _settings(config, SETTINGS["looksam"])
  _positive("looksam", s, "rho", "k")
  if s["k"] != int(s["k"]):
    raise FlatjaxInputError(f"looksam: k must be a whole number, got {s['k']}")
  return optax.chain(looksam_transform(s["rho"], int(s["k"]), s["alpha"]),
                     base_optimizer(config, total_steps))


def make_optimizer(config: OptimizerConfig, total_steps: int,
                   steps_per_epoch: int | None = None) -> optax.GradientTransformationExtraArgs:
  """The registered optimizer ``config.name`` for a run of ``total_steps`` steps,
  followed by SWA when ``config.swa`` is set (its default period, one epoch, is
  ``steps_per_epoch``)."""
  if config.name not in _REGISTRY:
    raise FlatjaxInputError(
        f"unknown optimizer {config.name!r}; registered: {', '.join(names())}")
  if config.learning_rate <= 0:
    raise FlatjaxInputError(f"learning rate must be positive, got {config.learning_rate}")
  tx = _REGISTRY[config.name](config, total_steps)
  if config.swa is None:
    return tx
  try:
    average = config.swa.transform(total_steps, steps_per_epoch or total_steps)
  except ValueError as e:
    raise FlatjaxInputError(str(e)) from None
  return optax.chain(tx, average)
