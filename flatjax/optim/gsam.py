"""GSAM: surrogate-gap guided SAM as an optax gradient transformation.

Zhuang et al. (2022) note that SAM's perturbed loss ``f_p(w) = L(w + e(w))``
can be minimised without flattening: the surrogate gap ``h = f_p - L`` also
needs to shrink. GSAM descends on ``f_p`` and, with the part of the clean
gradient ``g`` orthogonal to the perturbed gradient ``g_p``, *ascends* on ``L``
(which lowers ``h`` without changing the ``f_p`` descent direction):

    g_perp = g - (<g, g_p> / ||g_p||^2) g_p
    d      = g_p - alpha * g_perp

With ``alpha = 0`` and a constant rho, ``d = g_p``: GSAM is SAM. GSAM ties
rho to the learning rate (:func:`rho_schedule_from_lr`):
``rho_t = rho_min + (rho_max - rho_min) (lr_t - lr_min) / (lr_max - lr_min)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import optax

from flatjax.optim.sam import (SAMState, ScalarOrSchedule, init_sam_state, perturbed_gradient,
                               resolve)


def rho_schedule_from_lr(lr_schedule: optax.Schedule, *, rho_max: float, rho_min: float,
                         lr_max: float, lr_min: float = 0.0) -> optax.Schedule:
  """GSAM's rho, proportional to the learning rate between the two bounds."""
  if lr_max <= lr_min:
    raise ValueError(f"lr_max ({lr_max}) must exceed lr_min ({lr_min})")

  def schedule(count):
    frac = (lr_schedule(count) - lr_min) / (lr_max - lr_min)
    return rho_min + (rho_max - rho_min) * frac
  return schedule


def gsam(rho: ScalarOrSchedule = 0.05, alpha: float = 0.1, *, adaptive: bool = False,
         eta: float = 0.01, eps: float = 1e-12,
         batch_axis_name: str | None = None) -> optax.GradientTransformationExtraArgs:
  """GSAM (Zhuang et al. 2022): ``g_p - alpha * g_perp`` (module docstring).

  Args:
    rho: radius, a float or a schedule ``count -> rho``; GSAM's recipe is
      :func:`rho_schedule_from_lr`.
    alpha: weight of the ascent along the clean gradient's component orthogonal
      to the perturbed gradient; 0 gives SAM.
    adaptive, eta, eps: as in :func:`flatjax.optim.sam`.
    batch_axis_name: m-sharpness, as in :func:`flatjax.optim.sam`: the
      decomposition is per shard, the direction is averaged over the axis.

  References:
    Zhuang et al., *Surrogate Gap Guided Sharpness-Aware Minimization*, ICLR 2022.
  """
  def update_fn(updates, state, params=None, *, grad_fn: Callable | None = None,
                **extra_args):
    del extra_args
    if params is None:
      raise ValueError("gsam needs params: tx.update(grads, state, params, grad_fn=...)")
    g = updates
    g_p, loss = perturbed_gradient(g, params, grad_fn, resolve(rho, state.count),
                                   adaptive=adaptive, eta=eta, eps=eps)
    coef = optax.tree.vdot(g, g_p) / (optax.tree.vdot(g_p, g_p) + eps)
    direction = jax.tree.map(
        lambda gp, gc: (gp - alpha * (gc - coef * gp)).astype(gp.dtype), g_p, g)
    if batch_axis_name is not None:
      direction = jax.lax.pmean(direction, batch_axis_name)
      loss = jax.lax.pmean(loss, batch_axis_name)
    return direction, SAMState(count=optax.safe_increment(state.count), perturbed_loss=loss)

  return optax.GradientTransformationExtraArgs(init_sam_state, update_fn)
