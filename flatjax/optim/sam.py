"""SAM and ASAM as an optax gradient transformation.

Sharpness-aware minimization (Foret et al. 2021) minimises
``max_{||e|| <= rho} L(w + e)``; to first order the inner maximum is at

    e(w) = rho * g / (||g|| + eps),                   g = grad L(w)

and SAM descends along ``grad L(w + e(w))``. ASAM (Kwon et al. 2021) makes the
neighbourhood scale-invariant with ``T_w = |w| + eta`` (element-wise):

    e(w) = rho * T_w^2 g / (||T_w g|| + eps).

:func:`sam` turns the clean gradient into that perturbed gradient, so any optax
optimizer after it in a chain is SAM's base optimizer. *Train Flat, Then
Compress* (Na et al. 2022) fine-tunes with SAM on Adam, rho = 0.05::

    tx = optax.chain(flatjax.optim.sam(0.05), optax.adam(2e-5))
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)

Unlike ``optax.contrib.sam`` it adds ``eps`` to the norm (a zero gradient gives
a zero perturbation, not NaN), needs no inner optimizer or sync period, and
records the perturbed loss when ``grad_fn`` reports it (:mod:`.grad_fn`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flatjax.optim.grad_fn import loss_and_grads, restrict_like

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class SAMState(NamedTuple):
  """``count``: updates so far (steps a ``rho`` schedule); ``perturbed_loss``:
  ``L(w + e)`` of the last update (NaN when ``grad_fn`` does not report it)."""
  count: jax.Array
  perturbed_loss: jax.Array


def init_sam_state(params: Any) -> SAMState:
  """SAM's (and GSAM's) initial state: count 0, no perturbed loss yet (NaN)."""
  del params
  return SAMState(count=jnp.zeros((), jnp.int32),
                  perturbed_loss=jnp.full((), jnp.nan, jnp.float32))


def resolve(value: ScalarOrSchedule, count: jax.Array) -> jax.Array:
  """A hyperparameter's value at update ``count`` (constant or schedule)."""
  return value(count) if callable(value) else jnp.asarray(value)


def sam_perturbation(grads: Any, params: Any, rho: ScalarOrSchedule | jax.Array, *,
                     adaptive: bool = False, eta: float = 0.01,
                     eps: float = 1e-12) -> Any:
  """SAM's ascent step ``e`` (a tree like ``grads``).

  ``rho * g / (||g|| + eps)``, or with ``adaptive`` ASAM's
  ``rho * T^2 g / (||T g|| + eps)``, ``T = |w| + eta``. Norms are global (over
  every leaf). Leaves with zero gradient (e.g. pruned weights under a masked
  forward pass) get zero perturbation in both forms.
  """
  if adaptive:
    scale = jax.tree.map(lambda w: jnp.abs(w) + eta, params)
    scaled = jax.tree.map(lambda t, g: t * g, scale, grads)
    norm = optax.tree.norm(scaled)
    factor = rho / (norm + eps)
    return jax.tree.map(lambda t, g: (factor * t * t * g).astype(g.dtype), scale, grads)
  factor = rho / (optax.tree.norm(grads) + eps)
  return jax.tree.map(lambda g: (factor * g).astype(g.dtype), grads)


def perturbed_gradient(grads: Any, params: Any, grad_fn: Callable, rho, *,
                       adaptive: bool = False, eta: float = 0.01, eps: float = 1e-12,
                       perturb: Any = None) -> tuple[Any, jax.Array]:
  """``(grad L(w + e), L(w + e))`` with ``e`` from :func:`sam_perturbation`.

  ``perturb``: a bool per leaf; only those leaves are perturbed, ``e`` computed from
  their gradient alone (SAM-ON), while the perturbed gradient is taken for every leaf.
  The loss is NaN where ``grad_fn`` does not report it. The gradient has ``grads``'
  structure (partial under ``optax.masked``).
  """
  ascent = grads if perturb is None else jax.tree.map(
      lambda g, on: g if on else jnp.zeros_like(g), grads, perturb)
  e = sam_perturbation(ascent, params, rho, adaptive=adaptive, eta=eta, eps=eps)
  loss, g_adv = loss_and_grads(grad_fn, optax.tree.add(params, e))
  loss = jnp.full((), jnp.nan, jnp.float32) if loss is None else loss.astype(jnp.float32)
  return restrict_like(grads, g_adv), loss


def sam(rho: ScalarOrSchedule = 0.05, *, adaptive: bool = False, eta: float = 0.01,
        eps: float = 1e-12, batch_axis_name: str | None = None,
        perturb: Any | Callable[[Any], Any] | None = None,
        active: Callable[[jax.Array], jax.Array] | None = None,
        ) -> optax.GradientTransformationExtraArgs:
  """SAM (or ASAM with ``adaptive=True``): replaces the gradient by ``grad L(w + e)``.

  Args:
    rho: neighbourhood radius, a float or a schedule ``count -> rho``
      (``optax.inject_hyperparams(sam)(rho=...)`` works too). The paper uses
      0.05; ASAM's authors use about 10x SAM's rho.
    adaptive: ASAM's scale-invariant neighbourhood, ``T_w = |w| + eta``.
    eta: ASAM's offset, so zero weights can still be perturbed.
    eps: added to the norm; a zero gradient yields a zero perturbation.
    batch_axis_name: m-sharpness (Foret et al. 2021, Sec. 4.1). Inside
      ``shard_map``/``vmap`` over this axis, pass each shard's *local* gradient:
      each shard perturbs with its own gradient and the perturbed gradients are
      averaged with ``lax.pmean`` over the axis. Under ``shard_map``, params
      replicated over the axis get their gradient summed over it: differentiate
      at ``jax.lax.pcast(params, axis, to="varying")`` to keep it local.
    perturb: SAM-ON (Mueller et al. 2023): which leaves the ascent step moves, a bool
      per leaf or ``params -> that`` (e.g. the normalization layers'); ``e`` is
      computed from their gradient alone, and the perturbed gradient of every leaf
      is returned. None: every leaf.
    active: late-phase SAM (Zhou et al. 2024): ``count -> bool``, on which updates
      SAM runs; on the others the gradient passes through and, under ``jit``, the
      extra pass is skipped (a ``lax.cond``). None: every update.

  ``update(grads, state, params, *, grad_fn)`` needs ``params`` and ``grad_fn``
  (see :mod:`flatjax.optim.grad_fn`); it evaluates ``grad_fn`` once.

  References:
    Foret et al., *Sharpness-Aware Minimization for Efficiently Improving
    Generalization*, ICLR 2021. Kwon et al., *ASAM: Adaptive Sharpness-Aware
    Minimization for Scale-Invariant Learning of Deep Neural Networks*, ICML
    2021. Na et al., *Train Flat, Then Compress*, Findings of EMNLP 2022.
    Mueller et al., *Normalization Layers Are All That Sharpness-Aware Minimization
    Needs*, NeurIPS 2023. Zhou et al., *Sharpness-Aware Minimization Efficiently
    Selects Flatter Minima Late in Training*, 2024.
  """
  def update_fn(updates, state, params=None, *, grad_fn=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("sam needs params: tx.update(grads, state, params, grad_fn=...)")
    r = resolve(rho, state.count)
    selection = perturb(params) if callable(perturb) else perturb

    def on(_):
      g_adv, loss = perturbed_gradient(updates, params, grad_fn, r, adaptive=adaptive,
                                       eta=eta, eps=eps, perturb=selection)
      return jax.tree.map(lambda g, u: g.astype(u.dtype), g_adv, updates), loss

    def off(_):
      return updates, jnp.full((), jnp.nan, jnp.float32)
    if active is None:
      g_adv, loss = on(None)
    else:
      g_adv, loss = jax.lax.cond(active(state.count), on, off, None)
    if batch_axis_name is not None:
      g_adv = jax.lax.pmean(g_adv, batch_axis_name)
      loss = jax.lax.pmean(loss, batch_axis_name)
    return g_adv, SAMState(count=optax.safe_increment(state.count), perturbed_loss=loss)

  return optax.GradientTransformationExtraArgs(init_sam_state, update_fn)
