"""The train state: one pytree that is jitted, sharded and checkpointed whole."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from flatjax.errors import FlatjaxInputError
from flatjax.sparsity.masks import apply_mask


def _available(impl: str) -> bool:
  try:  # abstract evaluation only: resolves the name, starts no backend
    jax.eval_shape(lambda: jax.random.key(0, impl=impl))
    return True
  except Exception:  # unknown name on this JAX version
    return False


# The dropout PRNG. ``threefry4x32`` (Threefry-4x32-20, Salmon et al. 2011: the
# family of JAX's default ``threefry2x32``, 128-bit key, counter based: each
# word a hash of key and position, like threefry2x32 and unlike ``rbg``) as the
# dropout masks are ~58M random words per MiniLM step (batch 32 x 128) and
# on CPU ``threefry2x32`` is lowered as a rolled loop that streams its whole
# state through memory five times: ~13 ns a word, single threaded, ~0.4 s of
# a ~5 s single-core step. threefry4x32's unrolled lowering fuses into the
# dropout mask at ~2.5 ns a word. ``rbg`` is no cheaper here: XLA:CPU expands
# RngBitGenerator into Philox and, fused with the mask's consumer, recomputes
# each 4-word block per element (measured slower than threefry2x32). JAX
# versions without threefry4x32 fall back to threefry2x32. ``rng`` holds this
# impl's key data (4 words; 2 for threefry2x32): resume with the same impl.
DEFAULT_PRNG_IMPL = "threefry4x32" if _available("threefry4x32") else "threefry2x32"


@struct.dataclass
class TrainState:
  """``params``, the optimizer's state, the pruning ``mask`` (None: dense),
  the ``step`` count and ``rng``, raw PRNG key data (uint32) so that orbax
  stores it like any array; :func:`step_key` turns it into this step's key.
  ``pruning``: the state of a pruner that learns the mask during training
  (:mod:`flatjax.sparsity.pruner`), None without one.
  """
  params: Any
  opt_state: Any
  mask: Any
  step: jax.Array
  rng: jax.Array
  pruning: Any = None
  prng_impl: str = struct.field(pytree_node=False, default=DEFAULT_PRNG_IMPL)


def create(params: Any, tx: optax.GradientTransformation, seed: int, mask: Any = None,
           prng_impl: str = DEFAULT_PRNG_IMPL, pruner: Any = None) -> TrainState:
  """The state at step 0, its params with the weights ``mask`` prunes set to 0 (so that
  they are 0 in every checkpoint and to any optimizer, not only in the masked forward
  pass). With a ``pruner`` (a :class:`flatjax.sparsity.pruner.Pruner`) its state is
  initialised and ``mask`` defaults to keeping every weight in the pruner's scope; a
  given ``mask`` must cover the same params."""
  key = jax.random.key(seed, impl=prng_impl)
  pruning = None
  if pruner is not None:
    pruning = pruner.init(params)
    start = pruner.init_mask(params)
    if mask is None:
      mask = start
    elif jax.tree.structure(mask) != jax.tree.structure(start):
      raise FlatjaxInputError("the mask does not cover the same params as the pruner's scope")
  params = apply_mask(params, mask)
  return TrainState(params=params, opt_state=tx.init(params), mask=mask,
                    step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(key),
                    pruning=pruning, prng_impl=prng_impl)


def step_key(state: TrainState) -> jax.Array:
  """This step's key: the run's key folded with the step count, so a resumed
  run draws the same dropout masks as an uninterrupted one."""
  key = jax.random.wrap_key_data(state.rng, impl=state.prng_impl)
  return jax.random.fold_in(key, state.step)
