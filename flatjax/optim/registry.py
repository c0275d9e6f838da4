"""Optimizers by name: the CLI and experiments pick one with ``--optimizer``.

A registry entry is a factory ``(OptimizerConfig, settings, total_steps) ->
optax.GradientTransformationExtraArgs`` and the dataclass of its own settings
(SAM's rho, ...), typed and with their defaults. The train step always calls
``tx.update(grads, opt_state, params, grad_fn=...)``; transforms that need to
re-evaluate the gradient (SAM and its variants) use ``grad_fn``, the rest
ignore it, so adding an optimizer never touches the loop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import optax

from flatjax.errors import FlatjaxInputError
# Functions, not modules: flatjax.optim's names gsam/looksam/sam are the transforms.
from flatjax.optim.gsam import gsam as gsam_transform
from flatjax.optim.gsam import rho_schedule_from_lr
from flatjax.optim.looksam import looksam as looksam_transform
from flatjax.optim.msam import msam as msam_transform
from flatjax.optim.sam import sam as sam_transform
from flatjax.optim.swa import SWAConfig, parse_swa


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """The optimizer section of a run's configuration.

  The defaults are the paper's GLUE recipe (Na et al. 2022, Sec. 3): Adam,
  lr 2e-5 decayed linearly to 0, no warmup, no weight decay, no clipping.
  """
  name: str = "adam"
  """a registered optimizer: adam, adamw, sam, asam, gsam, looksam, ..."""
  learning_rate: float = 2e-5
  """peak learning rate, reached after the warmup and decayed linearly to 0"""
  weight_decay: float = 0.0
  """decoupled weight decay (adamw and the SAM variants; adam takes none)"""
  warmup_steps: int = 0
  """steps of linear warmup from 0"""
  schedule: str = "linear"
  """the learning rate after the warmup: linear (decay to 0), cosine (decay to 0) or
  constant"""
  clip_norm: float | None = None
  """clip the gradient to this global norm (null: no clipping)"""
  b1: float = 0.9
  """Adam's first-moment decay"""
  b2: float = 0.999
  """Adam's second-moment decay"""
  eps: float = 1e-8
  """Adam's epsilon"""
  settings: dict[str, float] = dataclasses.field(default_factory=dict)
  """the optimizer's own settings over its registered defaults, e.g. {rho: 0.1} for sam"""
  swa: str | None = None
  """also average the weights (SWA): paper, FRACTION or FRACTION:STEPS (null: off)"""

  def validate(self) -> None:
    """Checks every field and the optimizer's settings (one-line errors)."""
    if self.name not in _REGISTRY:
      raise FlatjaxInputError(
          f"unknown optimizer {self.name!r}; registered: {', '.join(names())}")
    if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
      raise FlatjaxInputError(f"learning rate must be positive, got {self.learning_rate}")
    if self.schedule not in SCHEDULES:
      raise FlatjaxInputError(f"unknown schedule {self.schedule!r}; known: "
                              f"{', '.join(SCHEDULES)}")
    if self.warmup_steps < 0:
      raise FlatjaxInputError(f"warmup steps must be non-negative, got {self.warmup_steps}")
    if self.clip_norm is not None and not self.clip_norm > 0:
      raise FlatjaxInputError(f"clip norm must be positive, got {self.clip_norm}")
    if not 0 <= self.weight_decay < math.inf:
      raise FlatjaxInputError(f"weight decay must be non-negative, got {self.weight_decay}")
    if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1 and self.eps > 0):
      raise FlatjaxInputError(f"Adam needs 0 <= b1, b2 < 1 and eps > 0, got {self.b1}, "
                              f"{self.b2}, {self.eps}")
    resolved_settings(self)
    self.swa_config()

  def swa_config(self) -> SWAConfig | None:
    try:
      return None if self.swa is None else parse_swa(self.swa)
    except ValueError as e:
      raise FlatjaxInputError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class NoSettings:
  """An optimizer without settings of its own."""


Factory = Callable[[OptimizerConfig, Any, int], optax.GradientTransformationExtraArgs]
_REGISTRY: dict[str, Factory] = {}
# Each optimizer's settings type: a frozen dataclass whose fields (typed, with
# defaults) are the settings and whose __post_init__ checks them.
SETTINGS: dict[str, type] = {}


def register(name: str, settings: type = NoSettings) -> Callable[[Factory], Factory]:
  """Decorator adding ``factory(config, settings, total_steps)`` under ``name``;
  ``settings``: the dataclass of the settings it takes (its fields' defaults are
  the only place those defaults are written)."""
  def add(factory: Factory) -> Factory:
    if name in _REGISTRY:
      raise ValueError(f"optimizer {name!r} is already registered")
    _REGISTRY[name] = factory
    SETTINGS[name] = settings
    return factory
  return add


def names() -> list[str]:
  return sorted(_REGISTRY)


#: The learning-rate schedules after the warmup, by name (OptimizerConfig.schedule).
SCHEDULES = ("linear", "cosine", "constant")


def lr_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 over ``warmup_steps`` to the peak ``learning_rate``, then
  ``config.schedule`` to ``total_steps``: ``linear`` decay to 0 (the paper's),
  ``cosine`` decay to 0, ``lr (1 + cos(pi t / T)) / 2`` over the ``T`` steps after the
  warmup, or ``constant``."""
  if total_steps <= 0:
    raise FlatjaxInputError(f"total_steps must be positive, got {total_steps}")
  warmup = min(config.warmup_steps, total_steps)
  rest, peak = max(total_steps - warmup, 1), config.learning_rate
  after = {"linear": lambda: optax.linear_schedule(peak, 0.0, rest),
           "cosine": lambda: optax.cosine_decay_schedule(peak, rest),
           "constant": lambda: optax.constant_schedule(peak)}[config.schedule]()
  if warmup == 0:
    return after
  rise = optax.linear_schedule(0.0, peak, warmup)
  return optax.join_schedules([rise, after], [warmup])


def base_optimizer(config: OptimizerConfig, total_steps: int,
                   adamw: bool = False) -> optax.GradientTransformation:
  """Adam on the run's learning-rate schedule (AdamW when ``adamw`` or ``weight_decay`` is
  set), after optional global-norm clipping."""
  lr = lr_schedule(config, total_steps)
  if adamw or config.weight_decay:
    base = optax.adamw(lr, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=config.weight_decay)
  else:
    base = optax.adam(lr, b1=config.b1, b2=config.b2, eps=config.eps)
  clip = [] if config.clip_norm is None else [optax.clip_by_global_norm(config.clip_norm)]
  return optax.chain(*clip, base)


def settings(name: str) -> dict[str, float]:
  """The settings optimizer ``name`` takes, with their defaults."""
  return dataclasses.asdict(SETTINGS.get(name, NoSettings)())


def switched(config: OptimizerConfig, name: str) -> OptimizerConfig:
  """``config`` for optimizer ``name``, keeping only the settings ``name`` takes:
  one section with ``rho`` serves a comparison of adam and sam."""
  takes = settings(name)
  return dataclasses.replace(config, name=name,
                             settings={k: v for k, v in config.settings.items() if k in takes})


def setting_names() -> list[str]:
  """Every setting some registered optimizer takes."""
  return sorted({f.name for kind in SETTINGS.values() for f in dataclasses.fields(kind)})


def resolved_settings(config: OptimizerConfig) -> Any:
  """``config.settings`` over the registered defaults, as the optimizer's typed
  settings; a key it does not take, or a value its type refuses, is an error."""
  kind = SETTINGS.get(config.name, NoSettings)
  fields = {f.name: f for f in dataclasses.fields(kind)}
  unknown = sorted(set(config.settings) - set(fields))
  if unknown:
    takes = ", ".join(sorted(fields)) or "none"
    raise FlatjaxInputError(f"optimizer {config.name!r} has no setting {', '.join(unknown)} "
                            f"(it takes: {takes})")
  values = {}
  for key, value in config.settings.items():
    if fields[key].type in (int, "int"):
      if not float(value).is_integer():   # NaN and infinities included
        raise FlatjaxInputError(f"{config.name}: {key} must be a whole number, got {value}")
      value = int(value)
    values[key] = value
  return kind(**values)


def _positive(name: str, settings: Any, *keys: str) -> None:
  for key in keys:
    if not getattr(settings, key) > 0:
      raise FlatjaxInputError(f"{name}: {key} must be positive, got {getattr(settings, key)}")


def _non_negative(name: str, settings: Any, *keys: str) -> None:
  for key in keys:
    if not 0 <= getattr(settings, key) < math.inf:
      raise FlatjaxInputError(f"{name}: {key} must be non-negative, got {getattr(settings, key)}")


@dataclasses.dataclass(frozen=True)
class SAMSettings:
  """SAM's (Foret et al. 2021)."""
  rho: float = 0.05
  """neighbourhood radius"""

  def __post_init__(self):
    _positive("sam", self, "rho")


@dataclasses.dataclass(frozen=True)
class ASAMSettings:
  """ASAM's (Kwon et al. 2021): rho 10x SAM's, as its authors advise."""
  rho: float = 0.5
  """neighbourhood radius, scaled by |w| + eta"""
  eta: float = 0.01
  """offset of the adaptive scale"""

  def __post_init__(self):
    _positive("asam", self, "rho")
    _non_negative("asam", self, "eta")


@dataclasses.dataclass(frozen=True)
class GSAMSettings:
  """GSAM's (Zhuang et al. 2022): rho follows the learning rate."""
  rho: float = 0.05
  """neighbourhood radius at the peak learning rate"""
  rho_min: float = 0.0
  """radius at learning rate 0"""
  alpha: float = 0.1
  """surrogate-gap ascent weight"""

  def __post_init__(self):
    _positive("gsam", self, "rho")
    _non_negative("gsam", self, "alpha")
    if not 0 <= self.rho_min <= self.rho:
      raise FlatjaxInputError(f"gsam: need 0 <= rho_min <= rho, got {self.rho_min}, {self.rho}")


@dataclasses.dataclass(frozen=True)
class LookSAMSettings:
  """LookSAM's (Liu et al. 2022)."""
  rho: float = 0.05
  """neighbourhood radius of the exact SAM steps"""
  k: int = 5
  """an exact SAM gradient every k steps"""
  alpha: float = 0.7
  """weight of the reused gradient component"""

  def __post_init__(self):
    _positive("looksam", self, "rho", "k")
    _non_negative("looksam", self, "alpha")


@dataclasses.dataclass(frozen=True)
class MSAMSettings:
  """Momentum-SAM's (Becker et al. 2024)."""
  rho: float = 0.05
  """length of the perturbation along the step (SAM's radius, for a like-for-like
  comparison; its authors tune it per task)"""

  def __post_init__(self):
    _positive("msam", self, "rho")


@dataclasses.dataclass(frozen=True)
class LateSAMSettings:
  """Late-phase SAM's (Zhou et al. 2024)."""
  rho: float = 0.05
  """neighbourhood radius once SAM is on"""
  start: float = 0.8
  """SAM from this fraction of the run's steps on, plain Adam before"""

  def __post_init__(self):
    _positive("latesam", self, "rho")
    if not 0 <= self.start < 1:
      raise FlatjaxInputError(f"latesam: start must be in [0, 1), got {self.start}")


@dataclasses.dataclass(frozen=True)
class SAMONSettings:
  """SAM-ON's (Mueller et al. 2023): only the normalization layers are perturbed."""
  rho: float = 0.5
  """neighbourhood radius in the normalization params (a tiny subspace: its authors'
  radii are larger than SAM's)"""

  def __post_init__(self):
    _positive("samon", self, "rho")


def normalization_leaves(params: Any) -> Any:
  """True for every param of a LayerNorm (its scale and bias), False elsewhere."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "LayerNorm" in jax.tree_util.keystr(path), params)


@register("adamw")
def adamw(config: OptimizerConfig, settings: NoSettings,
          total_steps: int) -> optax.GradientTransformationExtraArgs:
  """AdamW (decoupled weight decay, Loshchilov & Hutter 2019) on the run's schedule."""
  return base_optimizer(config, total_steps, adamw=True)


@register("adam")
def adam(config: OptimizerConfig, settings: NoSettings,
         total_steps: int) -> optax.GradientTransformationExtraArgs:
  """The paper's baseline: Adam with weight decay 0 (a nonzero ``weight_decay`` is an error)."""
  if config.weight_decay:
    raise FlatjaxInputError("optimizer 'adam' has no weight decay; use 'adamw' for weight_decay")
  return base_optimizer(config, total_steps)


@register("sam", SAMSettings)
def sam(config: OptimizerConfig, settings: SAMSettings,
        total_steps: int) -> optax.GradientTransformationExtraArgs:
  """The paper's method: SAM (rho 0.05) on Adam (Na et al. 2022; Foret et al. 2021)."""
  return optax.chain(sam_transform(settings.rho), base_optimizer(config, total_steps))


@register("asam", ASAMSettings)
def asam(config: OptimizerConfig, settings: ASAMSettings,
         total_steps: int) -> optax.GradientTransformationExtraArgs:
  """ASAM (Kwon et al. 2021) on Adam; rho 0.5 (10x SAM's, as its authors advise), eta 0.01."""
  return optax.chain(sam_transform(settings.rho, adaptive=True, eta=settings.eta),
                     base_optimizer(config, total_steps))


@register("gsam", GSAMSettings)
def gsam(config: OptimizerConfig, settings: GSAMSettings,
         total_steps: int) -> optax.GradientTransformationExtraArgs:
  """GSAM (Zhuang et al. 2022) on Adam: alpha 0.1, rho following the lr from
  ``rho`` (0.05, at the peak lr) down to ``rho_min`` (0.0, at lr 0)."""
  rho = rho_schedule_from_lr(lr_schedule(config, total_steps), rho_max=settings.rho,
                             rho_min=settings.rho_min, lr_max=config.learning_rate)
  return optax.chain(gsam_transform(rho, settings.alpha), base_optimizer(config, total_steps))


@register("looksam", LookSAMSettings)
def looksam(config: OptimizerConfig, settings: LookSAMSettings,
            total_steps: int) -> optax.GradientTransformationExtraArgs:
  """LookSAM (Liu et al. 2022) on Adam: exact SAM (rho 0.05) every k = 5 steps, alpha 0.7."""
  return optax.chain(looksam_transform(settings.rho, settings.k, settings.alpha),
                     base_optimizer(config, total_steps))


@register("msam", MSAMSettings)
def msam(config: OptimizerConfig, settings: MSAMSettings,
         total_steps: int) -> optax.GradientTransformationExtraArgs:
  """Momentum-SAM (Becker et al. 2024) around Adam: the held weights are perturbed by rho
  along Adam's last step, so the step's one gradient is the perturbed one."""
  return msam_transform(base_optimizer(config, total_steps), settings.rho)


@register("latesam", LateSAMSettings)
def latesam(config: OptimizerConfig, settings: LateSAMSettings,
            total_steps: int) -> optax.GradientTransformationExtraArgs:
  """Late-phase SAM (Zhou et al. 2024) on Adam: plain Adam, then SAM (rho 0.05) for the
  last 20% of the steps."""
  begin = int(round(settings.start * total_steps))
  return optax.chain(sam_transform(settings.rho, active=lambda count: count >= begin),
                     base_optimizer(config, total_steps))


@register("samon", SAMONSettings)
def samon(config: OptimizerConfig, settings: SAMONSettings,
          total_steps: int) -> optax.GradientTransformationExtraArgs:
  """SAM-ON (Mueller et al. 2023) on Adam: SAM's ascent step moves only the LayerNorm
  params (rho 0.5 there); every param descends along the perturbed gradient."""
  return optax.chain(sam_transform(settings.rho, perturb=normalization_leaves),
                     base_optimizer(config, total_steps))


def make_optimizer(config: OptimizerConfig, total_steps: int,
                   steps_per_epoch: int | None = None) -> optax.GradientTransformationExtraArgs:
  """The registered optimizer ``config.name`` for a run of ``total_steps`` steps,
  followed by SWA when ``config.swa`` is set (its default period, one epoch, is
  ``steps_per_epoch``)."""
  config.validate()
  tx = _REGISTRY[config.name](config, resolved_settings(config), total_steps)
  swa = config.swa_config()
  if swa is None:
    return tx
  try:
    average = swa.transform(total_steps, steps_per_epoch or total_steps)
  except ValueError as e:
    raise FlatjaxInputError(str(e)) from None
  return optax.chain(tx, average)
