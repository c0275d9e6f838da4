"""Which mesh axis splits which dimension of each BERT param (and of the whole train state).

Megatron-LM's tensor parallelism (Shoeybi et al. 2019) over the ``model`` axis:

* column sharding (the output dimension of an ``[in, out]`` kernel, and its
  bias) of the attention's query, key and value kernels and of the FFN's
  intermediate kernel: each device holds some heads' or neurons' columns;
* row sharding (the input dimension) of the attention-output and FFN-output
  kernels, which consume those columns: their partial products are summed
  across ``model`` (XLA inserts the all-reduce);
* the vocabulary dimension of the word embeddings, when the vocabulary
  divides by the axis size (BERT's 30,522 = 2 x 3 x 5,087 splits over 2
  devices, not 4 or 8), else its hidden dimension;
* every other param (LayerNorms, biases of row-sharded kernels, position and
  token-type embeddings, pooler, head) replicated: they are small.

A rule lists candidate specs in order of preference; the first whose split
dimensions divide evenly by their axis sizes is used (JAX shards evenly only),
and a param that fits none is replicated. Batches split their leading
dimension over ``data``.

The train state is sharded like the params wherever it holds a param-shaped
leaf: the optimizer's moments, SAM's and SWA's copies, the pruning mask,
movement scores. A state leaf is matched to a param by the trailing keys of
its path (``opt_state[0].mu['bert']['encoder']...['kernel']`` ends with the
param's path) and its shape; everything else (step counts, the PRNG key,
scalars) is replicated.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from flatjax.errors import FlatjaxInputError
from flatjax.parallel.mesh import DATA, MODEL

Rules = Sequence[tuple[str, Sequence[P]]]

#: BERT's rules: ``(regex on the "/"-joined param path, candidate specs)``.
BERT_RULES: Rules = (
    (r"attention/self/(query|key|value)/kernel$", (P(None, MODEL),)),
    (r"attention/self/(query|key|value)/bias$", (P(MODEL),)),
    (r"intermediate/dense/kernel$", (P(None, MODEL),)),
    (r"intermediate/dense/bias$", (P(MODEL),)),
    (r"attention/output/dense/kernel$", (P(MODEL, None),)),
    (r"layer/\d+/output/dense/kernel$", (P(MODEL, None),)),
    (r"word_embeddings/embedding$", (P(MODEL, None), P(None, MODEL))),
)


def _path_keys(path: tuple) -> tuple[str, ...]:
  """The dict keys (and attribute names) of a pytree path, as strings."""
  keys = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      keys.append(str(k.key))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      keys.append(k.name)
    elif isinstance(k, jax.tree_util.SequenceKey):
      keys.append(str(k.idx))
    else:
      keys.append(str(k))
  return tuple(keys)


def fits(spec: P, shape: Sequence[int], mesh: Mesh) -> bool:
  """Whether every dimension ``spec`` splits divides evenly by its axes' sizes."""
  if len(spec) > len(shape):
    return False
  for dim, axes in zip(shape, spec):
    if axes is None:
      continue
    size = int(np.prod([mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes)]))
    if dim % size:
      return False
  return True


def spec_for(name: str, shape: Sequence[int], mesh: Mesh, rules: Rules = BERT_RULES) -> P:
  """The spec of the param at ``name`` (``"/"``-joined path) with ``shape``."""
  for pattern, candidates in rules:
    if re.search(pattern, name):
      for spec in candidates:
        if fits(spec, shape, mesh):
          return spec
      return P()
  return P()


def param_specs(params: Any, mesh: Mesh, rules: Rules = BERT_RULES) -> Any:
  """A tree like ``params`` of :class:`PartitionSpec` (shapes or arrays accepted)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: spec_for("/".join(_path_keys(path)), np.shape(x), mesh, rules), params)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_shardings(params: Any, mesh: Mesh, rules: Rules = BERT_RULES) -> Any:
  return jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs(params, mesh, rules))


def state_shardings(state: Any, params: Any, mesh: Mesh, rules: Rules = BERT_RULES) -> Any:
  """A tree like ``state`` (a TrainState, or any pytree holding param-shaped
  leaves) of NamedShardings: param-shaped leaves as their param, the rest
  replicated. ``state`` may hold arrays or ``ShapeDtypeStruct``s."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  by_path = {_path_keys(p): (np.shape(x), spec_for("/".join(_path_keys(p)), np.shape(x),
                                                    mesh, rules)) for p, x in flat}
  depths = sorted({len(k) for k in by_path}, reverse=True)

  def sharding(path, leaf):
    keys, shape = _path_keys(path), np.shape(leaf)
    for n in depths:
      hit = by_path.get(keys[-n:]) if len(keys) >= n else None
      if hit is not None and hit[0] == shape:
        return NamedSharding(mesh, hit[1])
    return NamedSharding(mesh, P())
  return jax.tree_util.tree_map_with_path(sharding, state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Every batch array's leading (example) dimension over ``data``."""
  return NamedSharding(mesh, P(DATA))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """A batch must split evenly over the data axis (and, across hosts, over the processes)."""
  data = mesh.shape[DATA]
  if batch_size % data:
    raise FlatjaxInputError(f"batch size {batch_size} does not divide over the mesh's data "
                            f"axis of size {data}")
  processes = jax.process_count()
  if batch_size % processes:
    raise FlatjaxInputError(f"batch size {batch_size} does not divide over {processes} hosts")
