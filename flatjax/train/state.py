"""The train state: one pytree that is jitted, sharded and checkpointed whole."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

DEFAULT_PRNG_IMPL = "threefry2x32"


@struct.dataclass
class TrainState:
  """``params``, the optimizer's state, the pruning ``mask`` (None: dense),
  the ``step`` count and ``rng``, raw PRNG key data (uint32) so that orbax
  stores it like any array; :func:`step_key` turns it into this step's key.
  """
  params: Any
  opt_state: Any
  mask: Any
  step: jax.Array
  rng: jax.Array
  prng_impl: str = struct.field(pytree_node=False, default=DEFAULT_PRNG_IMPL)


def create(params: Any, tx: optax.GradientTransformation, seed: int, mask: Any = None,
           prng_impl: str = DEFAULT_PRNG_IMPL) -> TrainState:
  key = jax.random.key(seed, impl=prng_impl)
  return TrainState(params=params, opt_state=tx.init(params), mask=mask,
                    step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(key),
                    prng_impl=prng_impl)


def step_key(state: TrainState) -> jax.Array:
  """This step's key: the run's key folded with the step count, so a resumed
  run draws the same dropout masks as an uninterrupted one."""
  key = jax.random.wrap_key_data(state.rng, impl=state.prng_impl)
  return jax.random.fold_in(key, state.step)
