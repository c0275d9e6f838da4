"""The train and eval steps on a device mesh: the same pure steps, jitted with NamedShardings.

``train_step(state, batch) -> (state, metrics)`` is unchanged (pjit is jit
now): :func:`jit_train_step` gives ``jax.jit`` the state's shardings
(:func:`flatjax.parallel.rules.state_shardings`) for input and output and the
batch's (split over ``data``), and XLA partitions the whole step, SAM's second
forward and backward included. SAM's perturbation is then the global one
(Foret et al.'s SAM): the gradient is all-reduced before it is normalised.
Per-shard perturbations (m-sharpness) are :func:`jit_train_step_m_sharpness`.

Multi-host: every process runs the same program; :func:`shard_batch` builds
each global batch from the rows this process holds
(``jax.make_array_from_process_local_data``), so each host reads only its
share of every batch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from flatjax.parallel import rules as rules_lib
from flatjax.parallel.mesh import DATA
from flatjax.runtime import train_compiler_options


def shard_state(state: Any, params_like: Any, mesh: Mesh,
                rules: rules_lib.Rules = rules_lib.BERT_RULES) -> tuple[Any, Any]:
  """``(state on the mesh, its shardings)``: every leaf placed as the rules say.

  Always fresh buffers (a jitted identity, not ``device_put``, which may reuse
  the input's buffer as one of the shards): the sharded step donates its
  state, and must not free the caller's arrays (its params are often the
  loaded ones).
  """
  shardings = rules_lib.state_shardings(state, params_like, mesh, rules)
  return jax.jit(lambda s: s, out_shardings=shardings)(state), shardings


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """A global batch split over ``data`` from this process's rows.

  On one process ``batch`` is the whole batch; on several, each passes its own
  consecutive share (``process_rows``) and the global batch is their
  concatenation in process order.
  """
  sharding = rules_lib.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def process_rows(batch_size: int) -> slice:
  """The rows of each global batch that this process reads: its equal share."""
  per, index = batch_size // jax.process_count(), jax.process_index()
  return slice(index * per, (index + 1) * per)


def host_fed(step: Callable, batch_size: int, mesh: Mesh) -> Callable:
  """``step(*args, batch)`` on a mesh, called with the global host batch (numpy
  arrays, ``batch_size`` rows) as its last argument: this process takes its
  rows of it (:func:`process_rows`) and puts them on the mesh."""
  rows = process_rows(batch_size)

  def fed(*args):
    *rest, batch = args
    return step(*rest, shard_batch({k: v[rows] for k, v in batch.items()}, mesh))
  return fed


def jit_train_step(train_step: Callable, state_shardings: Any, mesh: Mesh) -> Callable:
  """``jax.jit(train_step)`` with the state's shardings in and out, the batch
  split over ``data``, metrics replicated; the state is donated."""
  return jax.jit(train_step,
                 in_shardings=(state_shardings, rules_lib.batch_sharding(mesh)),
                 out_shardings=(state_shardings, rules_lib.replicated(mesh)),
                 donate_argnums=0,
                 compiler_options=train_compiler_options() or None)


def jit_eval_step(eval_step: Callable, param_shardings: Any, mask_shardings: Any,
                  mesh: Mesh) -> Callable:
  """``jax.jit(eval_step)``: params and mask as sharded, the batch over ``data``,
  logits gathered (replicated) for the host."""
  return jax.jit(eval_step,
                 in_shardings=(param_shardings, mask_shardings, rules_lib.batch_sharding(mesh)),
                 out_shardings=rules_lib.replicated(mesh))


def jit_train_step_m_sharpness(make_step: Callable[[], Callable], state_shardings: Any,
                               mesh: Mesh) -> Callable:
  """A train step whose SAM perturbation is per data shard (m-sharpness).

  ``make_step()`` builds the train step with an optimizer made with
  ``batch_axis_name="data"`` (e.g. ``flatjax.sam(rho, batch_axis_name="data")``):
  inside ``jax.shard_map`` over ``data`` each shard computes its gradient on
  its own rows, perturbs with it, and the perturbed gradients are averaged
  (``lax.pmean``), so the update is the same on every shard. The base
  gradient, loss and metrics are averaged over ``data`` too. The ``model``
  axis stays automatic (XLA partitions the kernels as in the global step).
  With m = batch / data rows per shard this is Foret et al.'s m-sharpness.
  """
  step = make_step()

  def per_shard(state, batch):
    # Each shard draws its own dropout masks: the run's key folded with the shard index.
    key = jax.random.wrap_key_data(state.rng, impl=state.prng_impl)
    own = jax.random.key_data(jax.random.fold_in(key, jax.lax.axis_index(DATA)))
    new, metrics = step(state.replace(rng=own), batch)
    return new.replace(rng=state.rng), jax.tree.map(lambda x: jax.lax.pmean(x, DATA), metrics)

  # Manual over ``data`` only: the state is whole on every data shard (its
  # ``model`` split stays XLA's, from the jit shardings), the batch is split.
  state_specs = jax.tree.map(lambda _: P(), state_shardings)
  mapped = jax.shard_map(per_shard, mesh=mesh, in_specs=(state_specs, P(DATA)),
                         out_specs=(state_specs, P()), axis_names={DATA}, check_vma=False)
  return jax.jit(mapped, in_shardings=(state_shardings, rules_lib.batch_sharding(mesh)),
                 out_shardings=(state_shardings, rules_lib.replicated(mesh)), donate_argnums=0)


def bytes_per_device(tree: Any) -> dict[int, int]:
  """Bytes each device holds of ``tree``'s arrays (its addressable shards)."""
  out: dict[int, int] = {}
  for leaf in jax.tree.leaves(tree):
    for shard in leaf.addressable_shards:
      out[shard.device.id] = out.get(shard.device.id, 0) + shard.data.nbytes
  return out


def gather_to_host(tree: Any) -> Any:
  """``tree``'s arrays whole on this host (numpy): ``jax.device_get`` on one
  process; on several, every process must call it (an all-gather)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
