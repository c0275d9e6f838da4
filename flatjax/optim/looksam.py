"""LookSAM: exact SAM every k steps, a reused direction in between.

Liu et al. (2022) observe that the component of SAM's gradient orthogonal to
the clean gradient changes slowly. Every ``k`` updates LookSAM computes the
exact SAM gradient ``g_s = grad L(w + e)`` and stores that component,

    g_v = g_s - (<g, g_s> / ||g||^2) g,

and in between it takes one clean forward-backward pass and reuses it:

    g_s ~= g + alpha * (||g|| / ||g_v||) g_v.

With ``k = 1`` every update is exact: LookSAM is SAM. Its extra state is the
one param-sized buffer ``g_v``; under ``jax.jit`` the in-between updates run
only the cheap branch of a ``lax.cond``, so a step costs about
``1 + 1/k`` clean passes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flatjax.optim.sam import ScalarOrSchedule, perturbed_gradient, resolve


class LookSAMState(NamedTuple):
  """``count``: updates so far; ``g_v``: the stored orthogonal component;
  ``perturbed_loss``: ``L(w + e)`` of the last exact update."""
  count: jax.Array
  g_v: Any
  perturbed_loss: jax.Array


def looksam(rho: ScalarOrSchedule = 0.05, k: int = 5, alpha: float = 0.7, *,
            adaptive: bool = False, eta: float = 0.01, eps: float = 1e-12,
            batch_axis_name: str | None = None) -> optax.GradientTransformationExtraArgs:
  """LookSAM (Liu et al. 2022; module docstring).

  Args:
    rho: radius, a float or a schedule ``count -> rho``.
    k: an exact SAM gradient every ``k`` updates (the first update is exact).
    alpha: weight of the reused orthogonal component (the paper's 0.7).
    adaptive, eta, eps: as in :func:`flatjax.optim.sam`.
    batch_axis_name: m-sharpness, as in :func:`flatjax.optim.sam`; ``g_v`` is
      kept per shard, the returned gradient is averaged over the axis.

  References:
    Liu et al., *Towards Efficient and Scalable Sharpness-Aware Minimization*,
    CVPR 2022.
  """
  k = int(k)
  if k < 1:
    raise ValueError(f"looksam: k must be >= 1, got {k}")

  def init_fn(params):
    return LookSAMState(count=jnp.zeros((), jnp.int32), g_v=optax.tree.zeros_like(params),
                        perturbed_loss=jnp.full((), jnp.nan, jnp.float32))

  def update_fn(updates, state, params=None, *, grad_fn: Callable | None = None,
                **extra_args):
    del extra_args
    if params is None:
      raise ValueError("looksam needs params: tx.update(grads, state, params, grad_fn=...)")
    g = updates

    def exact(_):
      g_s, loss = perturbed_gradient(g, params, grad_fn, resolve(rho, state.count),
                                     adaptive=adaptive, eta=eta, eps=eps)
      coef = optax.tree.vdot(g, g_s) / (optax.tree.vdot(g, g) + eps)
      g_v = jax.tree.map(lambda s, c: (s - coef * c).astype(s.dtype), g_s, g)
      return g_s, g_v, loss

    def reuse(_):
      scale = alpha * optax.tree.norm(g) / (optax.tree.norm(state.g_v) + eps)
      g_s = jax.tree.map(lambda c, v: (c + scale * v).astype(c.dtype), g, state.g_v)
      return g_s, state.g_v, state.perturbed_loss

    if k == 1:
      g_s, g_v, loss = exact(None)
    else:
      g_s, g_v, loss = jax.lax.cond(state.count % k == 0, exact, reuse, None)
    if batch_axis_name is not None:
      g_s = jax.lax.pmean(g_s, batch_axis_name)
    return g_s, LookSAMState(count=optax.safe_increment(state.count), g_v=g_v,
                             perturbed_loss=loss)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
