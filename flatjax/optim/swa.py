"""Stochastic weight averaging (SWA) as an optax transform.

SWA (Izmailov et al. 2018) evaluates the average of the params visited late in
training instead of the last params. *Train Flat, Then Compress* (Na et al.
2022) uses it as a flat-minimum baseline: "the average of the last 50% of
checkpoints". Put :func:`swa` last in a chain; it passes the updates through
unchanged and keeps, in its state, the running mean of the params that the
updates produce at the sampled steps:

    step s = 1, 2, ... (params after s updates) is sampled when
    s > start_step and s % every == 0
    mean_{n+1} = mean_n + (w_s - mean_n) / (n + 1)

:func:`averaged_params` reads the mean back from any (nested) optimizer state.
The paper's recipe by name: :data:`SWA_RECIPES` ``["paper"]`` averages the
end-of-epoch params of the second half of training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class SWAState(NamedTuple):
  """``count``: updates so far; ``swa_count``: params averaged so far;
  ``swa_params``: their mean (equal to the initial params until the first sample)."""
  count: jax.Array
  swa_count: jax.Array
  swa_params: Any


def swa(start_step: int, every: int = 1) -> optax.GradientTransformation:
  """Running mean of the params after update ``s`` for ``s > start_step`` with
  ``s % every == 0``; updates pass through unchanged.

  Args:
    start_step: updates before the first sample (e.g. half the run).
    every: sampling period in updates (1: every step; steps per epoch: the
      end-of-epoch "checkpoints").

  References:
    Izmailov et al., *Averaging Weights Leads to Wider Optima and Better
    Generalization*, UAI 2018.
  """
  if start_step < 0 or every < 1:
    raise ValueError(f"swa: need start_step >= 0 and every >= 1, got {start_step}, {every}")

  def init_fn(params):
    return SWAState(count=jnp.zeros((), jnp.int32), swa_count=jnp.zeros((), jnp.int32),
                    swa_params=jax.tree.map(jnp.array, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("swa needs params: tx.update(grads, state, params)")
    step = state.count + 1
    sampled = (step > start_step) & (step % every == 0)
    n = state.swa_count
    weight = jnp.where(sampled, 1.0 / (n + 1).astype(jnp.float32), 0.0)
    new_params = optax.apply_updates(params, updates)
    mean = jax.tree.map(lambda m, w: (m + weight * (w - m)).astype(m.dtype),
                        state.swa_params, new_params)
    return updates, SWAState(count=optax.safe_increment(state.count),
                             swa_count=n + sampled.astype(jnp.int32), swa_params=mean)

  return optax.GradientTransformation(init_fn, update_fn)


def averaged_params(opt_state: Any) -> tuple[Any, jax.Array] | None:
  """``(mean params, how many were averaged)`` from the :func:`swa` state inside
  ``opt_state`` (chains, ``inject_hyperparams`` ...), or None if it has none."""
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, SWAState))
           if isinstance(s, SWAState)]
  if not found:
    return None
  if len(found) > 1:
    raise ValueError("optimizer state holds more than one swa state")
  return found[0].swa_params, found[0].swa_count


@dataclasses.dataclass(frozen=True)
class SWAConfig:
  """When to average: from ``start_fraction`` of the run, every ``every`` steps
  (``None``: every epoch, at the end-of-epoch params)."""
  start_fraction: float = 0.5
  every: int | None = None

  def transform(self, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
    if not 0.0 <= self.start_fraction < 1.0:
      raise ValueError(f"swa start fraction must be in [0, 1), got {self.start_fraction}")
    every = self.every or steps_per_epoch
    start = int(round(self.start_fraction * total_steps))
    first = (start // every + 1) * every
    if first > total_steps:
      raise ValueError(f"swa would average nothing: its first sample, step {first}, comes "
                       f"after the run's last, step {total_steps}")
    return swa(start, every)


# The paper's SWA baseline: "the average of the last 50% of checkpoints",
# checkpoints taken each epoch (Na et al. 2022, Sec. 3).
SWA_RECIPES = {"paper": SWAConfig(start_fraction=0.5, every=None)}


def parse_swa(spec: str) -> SWAConfig:
  """``"paper"`` (a recipe name), ``"FRACTION"`` (every epoch from that fraction
  of the run) or ``"FRACTION:EVERY"`` (every EVERY steps)."""
  if spec in SWA_RECIPES:
    return SWA_RECIPES[spec]
  start, _, every = spec.partition(":")
  try:
    config = SWAConfig(float(start), int(every) if every else None)
  except ValueError:
    raise ValueError(f"swa: expected {', '.join(SWA_RECIPES)}, FRACTION or FRACTION:STEPS, "
                     f"got {spec!r}") from None
  if not 0.0 <= config.start_fraction < 1.0 or (config.every is not None and config.every < 1):
    raise ValueError(f"swa: need 0 <= FRACTION < 1 and STEPS >= 1, got {spec!r}")
  return config
