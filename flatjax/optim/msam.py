"""Momentum-SAM: SAM's flatness without its second gradient.

Becker et al. (2024) perturb the weights along the accumulated momentum instead of the
current gradient, so the gradient the step computes anyway is the perturbed one. With
SGD with momentum ``mu`` and learning rate ``eta`` (their Algorithm 1), the model holds
the perturbed weights ``w~_t`` and

    g_t     = grad L(w~_t)                        the one forward-backward pass
    w_t     = w~_t + rho v_t / ||v_t||            remove the last perturbation
    v_{t+1} = mu v_t + g_t
    w_{t+1} = w_t - eta v_{t+1}
    w~_{t+1} = w_{t+1} - rho v_{t+1} / ||v_{t+1}||

:func:`msam` wraps any base optimizer whose update ``u_t`` is its step: the perturbation
is ``rho u / ||u||`` (for SGD with momentum ``u = -eta v``, the rule above; on Adam it
follows Adam's step). The params the loop holds are ``w~``; :func:`unperturbed` gives
``w`` for evaluation and saving (flatjax's trainer does this).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax


class MSAMState(NamedTuple):
  """``inner``: the base optimizer's state; ``offset``: the perturbation the held params
  carry (``w~ = w + offset``), zero before the first update."""
  inner: Any
  offset: Any


def msam(inner: optax.GradientTransformation, rho: float = 0.05, *,
         eps: float = 1e-12) -> optax.GradientTransformationExtraArgs:
  """Momentum-SAM (Becker et al. 2024) around the base optimizer ``inner``.

  Args:
    inner: the base optimizer (the whole chain, learning rate included): its update
      is the step whose direction the perturbation follows.
    rho: the perturbation's length.
    eps: added to the norm (a zero step gives a zero perturbation).

  ``update(grads, state, params)``: ``grads`` taken at the held (perturbed) params;
  the update moves them to the next perturbed point, ``w_{t+1} + offset_{t+1}``.

  References:
    Becker, Altrock, Risse, *Momentum-SAM: Sharpness Aware Minimization without
    Computational Overhead*, 2024.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return MSAMState(inner=inner.init(params), offset=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("msam needs params: tx.update(grads, state, params)")
    w = optax.tree.sub(params, state.offset)
    step, inner_state = inner.update(updates, state.inner, w, **extra_args)
    factor = rho / (optax.tree.norm(step) + eps)
    offset = jax.tree.map(lambda u: (factor * u).astype(u.dtype), step)
    new = jax.tree.map(lambda u, o, before: u + o - before, step, offset, state.offset)
    return new, MSAMState(inner=inner_state, offset=offset)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def unperturbed(params: Any, opt_state: Any) -> Any:
  """The weights ``w`` behind the held params: ``params`` less the perturbation every
  :class:`MSAMState` in ``opt_state`` carries (``params`` itself without one)."""
  is_msam = lambda x: isinstance(x, MSAMState)  # noqa: E731
  for state in jax.tree.leaves(opt_state, is_leaf=is_msam):
    if is_msam(state):
      params = optax.tree.sub(params, state.offset)
  return params
