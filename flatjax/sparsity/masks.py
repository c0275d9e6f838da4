"""Pruning masks as pytrees shaped like the params.

A mask has a boolean leaf (True: kept) for every param inside the pruning
scope and ``None`` for every param outside it; ``mask=None`` means no pruning
at all. Masks are applied functionally, ``apply_mask(params, mask)``, inside
the loss, so the forward pass sees the pruned network and pruned weights get
exactly zero gradient.

The scope is a tuple of regular expressions matched (``re.search``) against a
param's ``/``-joined path, e.g. ``bert/encoder/layer/3/attention/self/query/
kernel``. The default, :data:`BERT_SCOPE`, is Chen et al. (2020)'s and the
paper's: the Q, K, V, attention-output, intermediate and output kernels of
every encoder layer plus the pooler's kernel; never embeddings, biases,
LayerNorm or task heads.

Top-k selection (:func:`top_k_mask`) is exact and deterministic: it keeps the
``k`` largest scores, and among equal scores the ones first in the params'
flattened order (leaves in path order, row-major within a leaf). It finds the
k-th largest score by a radix select over the scores' 32-bit ordering keys
(two 65,536-bin histograms, no sort), so it runs under ``jit`` with a traced
``k``; a global mask over MiniLM's 10.8M prunable weights takes a fraction of
a train step (``benchmarks/mask_time.py``).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flatjax.errors import FlatjaxInputError

# Chen et al. 2020 / Na et al. 2022: every encoder layer's Q, K, V,
# attention-output, intermediate and output kernels, and the pooler's.
BERT_SCOPE: tuple[str, ...] = (
    r"(^|/)encoder/layer/\d+/attention/self/(query|key|value)/kernel$",
    r"(^|/)encoder/layer/\d+/attention/output/dense/kernel$",
    r"(^|/)encoder/layer/\d+/intermediate/dense/kernel$",
    r"(^|/)encoder/layer/\d+/output/dense/kernel$",
    r"(^|/)pooler/dense/kernel$",
)
# Named scopes for the CLI and experiments.
SCOPES: dict[str, tuple[str, ...]] = {
    "bert": BERT_SCOPE,
    "encoder": BERT_SCOPE[:4],                     # without the pooler
    "all_kernels": (r"(^|/)kernel$",),             # every dense kernel, heads included
}
#: How a sparsity is counted: over the whole scope or within each tensor; besides these,
#: an ``"N:M"`` pattern ("2:4": every group of 4 consecutive inputs of a kernel keeps 2,
#: the pattern sparse tensor cores run; :func:`n_m_mask`).
GRANULARITIES = ("global", "per_tensor")
_N_M = re.compile(r"^(\d+):(\d+)$")


def n_m(granularity: str) -> tuple[int, int] | None:
  """``(N, M)`` of an ``"N:M"`` granularity, None for :data:`GRANULARITIES`; anything
  else is a one-line error."""
  if granularity in GRANULARITIES:
    return None
  found = _N_M.match(str(granularity))
  if not found or not 0 < int(found.group(1)) < int(found.group(2)):
    raise FlatjaxInputError(f"granularity must be global, per_tensor or N:M with 0 < N < M "
                            f"(2:4, 4:8), got {granularity!r}")
  return int(found.group(1)), int(found.group(2))


def n_m_keep(granularity: str, sparsity: float) -> int:
  """Weights an N:M granularity keeps of every group of M at ``sparsity``, which must
  remove a whole number of each group and keep at least N."""
  n, m = n_m(granularity)
  pruned = sparsity * m
  if abs(pruned - round(pruned)) > 1e-6 or m - round(pruned) < n:
    steps = ", ".join(f"{k / m:g}" for k in range(1, m - n + 1))
    raise FlatjaxInputError(f"{granularity} sparsity removes whole weights of every group of "
                            f"{m}: one of {steps}, got {sparsity:g}")
  return m - int(round(pruned))


def check_granularity(granularity: str, sparsities: Iterable[float] = ()) -> None:
  """A one-line error, before anything runs, unless ``granularity`` is known and (N:M)
  each of ``sparsities`` a whole N:M step (:func:`n_m_keep`)."""
  if n_m(granularity) is not None:
    for sparsity in sparsities:
      n_m_keep(granularity, sparsity)


def n_m_mask(scores: jax.Array, keep: int | jax.Array, m: int,
             eligible: jax.Array | None = None) -> jax.Array:
  """Keeps the ``keep`` largest ``scores`` of every group of ``m`` consecutive entries
  along the input dimension (axis 0 of a Flax ``[in, out]`` kernel: a row of PyTorch's
  ``[out, in]`` weight, as sparse tensor cores group them); ties keep the earlier entry.
  ``eligible`` (bool, like ``scores``): only those can be kept. ``keep`` may be traced."""
  if scores.ndim != 2 or scores.shape[0] % m:
    raise FlatjaxInputError(f"an N:M mask needs a 2-D kernel whose input dimension divides "
                            f"into groups of {m}, got shape {tuple(scores.shape)}")
  key = _ordering_key(scores)
  if eligible is not None:
    key = jnp.where(eligible, key, jnp.uint32(0))
  groups = key.reshape(scores.shape[0] // m, m, scores.shape[1])     # [G, m, out]
  a, b = groups[:, :, None, :], groups[:, None, :, :]                # entry i vs entry j
  earlier = (jnp.arange(m)[None, :] < jnp.arange(m)[:, None])[None, :, :, None]
  rank = jnp.sum((b > a) | ((b == a) & earlier), axis=2)             # entries ranked above i
  kept = (rank < keep).reshape(scores.shape)
  return kept if eligible is None else kept & eligible


def is_none(x: Any) -> bool:
  """``is_leaf`` for trees with None leaves (masks, scores): None is a leaf, not empty."""
  return x is None


def path_str(path: Sequence[Any]) -> str:
  """``/``-joined names of a tree path (dict keys, sequence indices, attributes)."""
  parts = []
  for p in path:
    for attr in ("key", "idx", "name"):
      if hasattr(p, attr):
        parts.append(str(getattr(p, attr)))
        break
    else:
      parts.append(str(p))
  return "/".join(parts)


def resolve_scope(scope: str | Iterable[str] | None) -> tuple[str, ...]:
  """A scope name from :data:`SCOPES`, a regex, or regexes; None: :data:`BERT_SCOPE`."""
  if scope is None:
    return BERT_SCOPE
  if isinstance(scope, str):
    return SCOPES.get(scope, (scope,))
  return tuple(scope)


def scope_mask(params: Any, scope: str | Iterable[str] | None = None) -> Any:
  """A mask keeping every weight in ``scope`` (True leaves) and None elsewhere.

  Raises FlatjaxInputError when the scope selects no param at all (a typo in a
  pattern would otherwise prune nothing, silently).
  """
  try:
    patterns = [re.compile(p) for p in resolve_scope(scope)]
  except re.error as e:
    raise FlatjaxInputError(f"pruning scope {scope!r} is not a valid regular expression: "
                            f"{e}") from None

  def select(path, leaf):
    name = path_str(path)
    if any(p.search(name) for p in patterns):
      return jnp.ones(jnp.shape(leaf), bool)
    return None
  mask = jax.tree_util.tree_map_with_path(select, params)
  if not jax.tree.leaves(mask):
    raise FlatjaxInputError(f"pruning scope {resolve_scope(scope)} matches no parameter")
  return mask


def boolean_tree(mask: Any | None, params: Any) -> Any:
  """``mask`` as a bool array for every param (True: kept; all True outside the scope
  and for ``mask=None``), for code that maps over params and mask together
  (``jax.tree.map(lambda p, m: p * m, params, boolean_tree(mask, params))``), which a
  None leaf would break."""
  if mask is None:
    return jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
  return jax.tree.map(lambda m, p: jnp.ones(jnp.shape(p), bool) if m is None
                      else jnp.asarray(m, bool), mask, params, is_leaf=is_none)


def scoped_mask(tree: Any, scope: str | Iterable[str] | None = None) -> Any:
  """A full bool tree (one leaf per param) as a mask: its leaves in ``scope`` (see
  :func:`resolve_scope`), None elsewhere; :func:`boolean_tree`'s inverse on the scope."""
  selection = scope_mask(tree, scope)
  return jax.tree.map(lambda s, m: None if s is None else jnp.asarray(m, bool), selection,
                      tree, is_leaf=is_none)


def in_scope(mask: Any) -> Any:
  """One Python bool per param: whether ``mask`` prunes in it (a bool leaf) or not (None),
  the per-leaf selection ``optax.masked`` takes: ``optax.masked(tx, in_scope(mask))``."""
  return jax.tree.map(lambda m: m is not None, mask, is_leaf=is_none)


class FullyPrunedWarning(UserWarning):
  """A mask removes every weight of a tensor (the model may have become constant)."""


def warn_fully_pruned(mask: Any, sparsity: float) -> None:
  """Warns (:class:`FullyPrunedWarning`) naming the tensors ``mask`` empties; silent under
  ``jit``, where the mask's values are not known."""
  if any(isinstance(m, jax.core.Tracer) for m in jax.tree.leaves(mask)):
    return
  emptied = fully_pruned(sparsity_report(mask))
  if emptied:
    # Global magnitude ranking removes a tensor whose weights are all small (e.g. an
    # untrained pooler) first; once it is gone, the model may be constant.
    warnings.warn(f"sparsity {sparsity:.0%} prunes all of {', '.join(emptied)}",
                  FullyPrunedWarning, stacklevel=3)


def apply_mask(params: Any, mask: Any | None) -> Any:
  """``params * mask`` leaf-wise; leaves whose mask is ``None`` pass through.

  Used inside the loss, so pruned weights receive exactly zero gradient.
  """
  if mask is None:
    return params
  return jax.tree.map(lambda m, p: p if m is None else jnp.where(m, p, jnp.zeros_like(p)),
                      mask, params, is_leaf=is_none)


def _ordering_key(x: jax.Array) -> jax.Array:
  """uint32 keys ordered like the float32 values (-inf < ... < 0 < ... < inf;
  -0.0 and +0.0 are one value; NaNs above +inf, -NaNs below -inf)."""
  x = x.astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(jnp.where(x == 0, jnp.float32(0), x), jnp.uint32)
  negative = (bits >> 31) == 1
  return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def _kth_largest_key(keys: jax.Array, k: jax.Array) -> jax.Array:
  """The k-th largest of the nonzero uint32 ``keys`` (k >= 1), exactly, by a
  two-level radix select: a 65,536-bin histogram of the high 16 bits finds
  the k-th's bucket, a second one of the low 16 bits within that bucket its
  value. Two counting passes instead of a sort (or 32 bisection passes, ~2x
  slower on CPU)."""
  bins = 1 << 16
  eligible = (keys > 0).astype(jnp.int32)
  high = (keys >> 16).astype(jnp.int32)

  def select(hist, rank):
    at_least = jnp.cumsum(hist[::-1])[::-1]            # entries in bins >= b
    b = jnp.sum(at_least >= rank, dtype=jnp.int32) - 1
    return b, rank - (at_least[b] - hist[b])           # rank within bin b
  high_hist = jnp.bincount(high, weights=eligible, length=bins)
  bucket, rank = select(high_hist, k)
  low = (keys & jnp.uint32(bins - 1)).astype(jnp.int32)
  low_hist = jnp.bincount(low, weights=eligible * (high == bucket), length=bins)
  value, _ = select(low_hist, rank)
  return (bucket.astype(jnp.uint32) << 16) | value.astype(jnp.uint32)


def top_k_mask(scores: Any, k: int | jax.Array, eligible: Any | None = None) -> Any:
  """Keeps exactly the ``k`` largest ``scores`` over the whole tree.

  Args:
    scores: a tree of float arrays, ``None`` for leaves outside the selection.
    k: how many to keep (0 <= k <= number of eligible entries); may be traced.
    eligible: optional bool tree like ``scores``: only True entries can be
      kept (e.g. the survivors of a previous mask).

  Returns:
    A bool tree like ``scores`` (None where ``scores`` is None) with exactly
    ``k`` True entries: the largest scores, ties broken by position in the
    flattened tree (earlier first). NaN counts as larger than +inf, so a
    diverged weight is kept, not silently pruned.
  """
  leaves, treedef = jax.tree.flatten(scores, is_leaf=is_none)
  present = [i for i, s in enumerate(leaves) if s is not None]
  el = None if eligible is None else treedef.flatten_up_to(eligible)
  # One flat key vector (one histogram pass, not one per leaf). Key 0 (below
  # every float's key but the all-ones -NaN) marks entries that may not be kept.
  keys = jnp.concatenate([
      (_ordering_key(jnp.asarray(leaves[i])) if el is None else
       jnp.where(jnp.asarray(el[i], bool), _ordering_key(jnp.asarray(leaves[i])),
                 jnp.uint32(0))).reshape(-1) for i in present])
  k = jnp.asarray(k, jnp.int32)
  kth = _kth_largest_key(keys, k)

  def count_above(t):
    return jnp.sum(keys > t, dtype=jnp.int32)

  # All keys above the k-th, then the first of those equal to it; k == 0 keeps none.
  above = count_above(kth)
  tie = (keys == kth) & (kth > 0)

  def first_ties():  # a prefix sum over all entries: only when a tie is split
    rank = jnp.cumsum(tie, dtype=jnp.int32)           # 1-based among ties, in order
    return (keys > kth) | (tie & (rank <= k - above))
  keep = jax.lax.cond(above + jnp.sum(tie, dtype=jnp.int32) == k,
                      lambda: (keys > kth) | tie, first_ties) & (k > 0)
  full, offset = list(leaves), 0
  for i in present:
    size = int(np.size(leaves[i]))
    full[i] = keep[offset:offset + size].reshape(jnp.shape(leaves[i]))
    offset += size
  return jax.tree.unflatten(treedef, full)


# Compiled once per tree shape: IMP calls masks eagerly, once per round.
_top_k_mask_jit = jax.jit(top_k_mask)


def _check_sparsity(sparsity: float) -> None:
  if not 0.0 <= sparsity <= 1.0 or math.isnan(sparsity):
    raise FlatjaxInputError(f"sparsity must be in [0, 1], got {sparsity}")


def num_to_prune(total: int, sparsity: float) -> int:
  """How many of ``total`` weights a ``sparsity`` removes: ``round(sparsity *
  total)``, halves to even (Python's ``round``)."""
  return int(round(sparsity * total))


def score_mask(scores: Any, sparsity: float, *, granularity: str = "global",
               previous: Any | None = None) -> Any:
  """Prunes the lowest ``sparsity`` fraction of ``scores`` (a tree with None
  outside the scope): globally over all leaves, within each leaf, or in every group of
  M inputs of each kernel (``"N:M"``, :func:`n_m_mask`; the sparsity must remove a whole
  number of each group and keep at least N).

  ``sparsity`` counts all weights in scope, so a ``previous`` mask's pruned
  weights count towards it and stay pruned; asking for less sparsity than
  ``previous`` already has is an error.
  """
  _check_sparsity(sparsity)
  pattern = n_m(granularity)
  leaves, treedef = jax.tree.flatten(scores, is_leaf=is_none)
  prev = None if previous is None else treedef.flatten_up_to(previous)

  def keep_count(size: int, kept_before: int, where: str) -> int:
    keep = size - num_to_prune(size, sparsity)
    if keep > kept_before:
      raise FlatjaxInputError(
          f"sparsity {sparsity} keeps {keep} weights{where} but the previous mask keeps only "
          f"{kept_before}: masks can only remove more")
    return keep

  def kept(i):
    return int(np.sum(np.asarray(prev[i]))) if prev is not None else int(np.size(leaves[i]))

  present = [i for i, s in enumerate(leaves) if s is not None]
  names = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(scores, is_leaf=is_none)[0]]
  if granularity == "global":
    total = sum(int(np.size(leaves[i])) for i in present)
    k = keep_count(total, sum(kept(i) for i in present), "")
    mask = _top_k_mask_jit(scores, k, previous)
  elif pattern is not None:
    keep, m = n_m_keep(granularity, sparsity), pattern[1]
    full = list(leaves)
    for i in present:
      before = None if prev is None else jnp.asarray(prev[i], bool)
      full[i] = n_m_mask(jnp.asarray(leaves[i]), keep, m, before)
      if before is not None and int(jnp.sum(full[i])) != keep * int(np.size(leaves[i])) // m:
        raise FlatjaxInputError(f"{granularity} at sparsity {sparsity:g} keeps {keep} of every "
                                f"{m} weights in {names[i]}, but the previous mask keeps fewer "
                                f"in some group: masks can only remove more")
    mask = jax.tree.unflatten(treedef, full)
  else:
    full = list(leaves)
    for i in present:
      k = keep_count(int(np.size(leaves[i])), kept(i), f" in {names[i]}")
      full[i] = _top_k_mask_jit(leaves[i], k, None if prev is None else prev[i])
    mask = jax.tree.unflatten(treedef, full)
  warn_fully_pruned(mask, sparsity)
  return mask


def magnitude_mask(params: Any, sparsity: float, *, scope: str | Iterable[str] | None = None,
                   granularity: str = "global", previous: Any | None = None) -> Any:
  """Magnitude pruning: removes the ``sparsity`` fraction of smallest ``|w|``.

  Args:
    params: the params tree (e.g. a fine-tuned model's).
    sparsity: fraction of the weights in scope to remove, counted over the
      whole scope ("global", Chen et al. 2020) or within each tensor
      ("per_tensor"); the number removed is ``round(sparsity * n)``.
    scope: which params are prunable (see :func:`resolve_scope`); ignored
      when ``previous`` is given, whose leaves define it.
    granularity: "global", "per_tensor" or "N:M" (e.g. "2:4" at sparsity 0.5).
    previous: an earlier mask; its pruned weights stay pruned, so iterative
      pruning only ever removes more (IMP).

  Returns:
    A mask: bool leaves in scope, None elsewhere. A tensor it empties entirely is named
    in a :class:`FullyPrunedWarning`.
  """
  selection = scope_mask(params, scope) if previous is None else previous
  scores = jax.tree.map(lambda m, p: None if m is None else jnp.abs(p), selection, params,
                        is_leaf=is_none)
  return score_mask(scores, sparsity, granularity=granularity, previous=previous)


def random_mask(like: Any, key: jax.Array) -> Any:
  """A uniformly random mask with the same number of kept weights in every
  tensor as ``like`` (the paper's random-ticket control, Table 6)."""
  leaves, treedef = jax.tree.flatten(like, is_leaf=is_none)
  keys = jax.random.split(key, len(leaves))
  full = [None if m is None else top_k_mask(jax.random.uniform(kk, jnp.shape(m)),
                                            int(np.sum(np.asarray(m))))
          for m, kk in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, full)


def mask_leaves(mask: Any) -> list[tuple[str, np.ndarray]]:
  """``(path, bool array)`` for every in-scope leaf, in flattened order."""
  flat = jax.tree_util.tree_flatten_with_path(mask, is_leaf=is_none)[0]
  return [(path_str(p), np.asarray(m, bool)) for p, m in flat if m is not None]


def sparsity(mask: Any) -> float:
  """Fraction of the in-scope weights that ``mask`` prunes (0.0 for None)."""
  if mask is None:
    return 0.0
  leaves = mask_leaves(mask)
  total = sum(m.size for _, m in leaves)
  return 1.0 - sum(int(m.sum()) for _, m in leaves) / max(total, 1)


_LAYER = re.compile(r"(^|/)layer/(\d+)/")


def sparsity_report(mask: Any) -> dict[str, Any]:
  """Sparsity per tensor, per encoder layer and overall.

  Returns ``{"overall": {...}, "layers": {name: {...}}, "tensors": {path:
  {...}}}`` where each entry is ``{"size", "kept", "sparsity"}``. Tensors
  outside encoder layers (the pooler) form their own group under their path.
  """
  def entry(size: int, kept: int) -> dict[str, Any]:
    return {"size": size, "kept": kept, "sparsity": 1.0 - kept / size if size else 0.0}
  tensors, layers = {}, {}
  for path, m in mask_leaves(mask):
    tensors[path] = entry(m.size, int(m.sum()))
    found = _LAYER.search(path)
    group = f"layer {found.group(2)}" if found else path.rsplit("/", 1)[0]
    size, kept = layers.get(group, (0, 0))
    layers[group] = (size + m.size, kept + int(m.sum()))
  total = sum(t["size"] for t in tensors.values())
  kept = sum(t["kept"] for t in tensors.values())
  return {"overall": entry(total, kept),
          "layers": {g: entry(*v) for g, v in layers.items()}, "tensors": tensors}


def fully_pruned(report: dict[str, Any]) -> list[str]:
  """The tensors of a :func:`sparsity_report` with no weight left."""
  return [path for path, e in report["tensors"].items() if e["size"] and e["kept"] == 0]


def format_report(report: dict[str, Any]) -> str:
  """The report as a short text table (per layer and overall)."""
  lines = [f"{'group':<28}{'weights':>12}{'kept':>12}{'sparsity':>10}"]
  for name, e in [*report["layers"].items(), ("overall", report["overall"])]:
    lines.append(f"{name:<28}{e['size']:>12}{e['kept']:>12}{e['sparsity']:>10.2%}")
  return "\n".join(lines)


MASK_FILE = "mask.safetensors"


def save_mask(path: str | Path, mask: Any, metadata: dict[str, str] | None = None) -> Path:
  """Writes the in-scope leaves as bool tensors named by path (safetensors) to
  ``path``: a ``.safetensors`` file, else a folder (made if need be) that gets
  :data:`MASK_FILE` inside it. ``metadata``: extra strings kept
  in the file's header (where the mask came from). Returns the file written."""
  from safetensors.numpy import save_file
  path = Path(path)
  if path.is_dir() or path.suffix != ".safetensors":  # a folder, made if need be
    path = path / MASK_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  save_file(dict(mask_leaves(mask)), str(tmp),
            metadata={**(metadata or {}), "format": "flatjax-mask",
                      "sparsity": f"{sparsity(mask):.6f}",
                      "encoder_layers": str(encoder_layers(mask))})
  tmp.replace(path)  # never a half-written mask next to a checkpoint
  return path


def mask_metadata(path: str | Path) -> dict[str, str]:
  """The header strings :func:`save_mask` wrote (``sparsity``, ``task`` ...)."""
  from safetensors import SafetensorError, safe_open
  path = Path(path)
  path = path / MASK_FILE if path.is_dir() else path
  try:
    with safe_open(str(path), "numpy") as f:
      return dict(f.metadata() or {})
  except (SafetensorError, OSError) as e:
    raise FlatjaxInputError(f"{path} is not a mask file: {e}") from None


def load_mask(path: str | Path, params: Any) -> Any:
  """Reads a mask written by :func:`save_mask` into a tree shaped like
  ``params`` (None for params it does not name). A tensor the params lack or
  whose shape differs, or a mask made for a model with another number of
  encoder layers, is an input error naming it."""
  from safetensors import SafetensorError, safe_open
  path = Path(path)
  if path.is_dir():
    path = path / MASK_FILE
  if not path.is_file():
    raise FlatjaxInputError(f"mask file {path} does not exist")
  try:
    with safe_open(str(path), "numpy") as f:
      layers = (f.metadata() or {}).get("encoder_layers")
      stored = {name: f.get_tensor(name) for name in f.keys()}
  except (SafetensorError, OSError) as e:
    raise FlatjaxInputError(f"{path} is not a mask file: {e}") from None
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for p, leaf in flat:
    name = path_str(p)
    m = stored.pop(name, None)
    if m is not None and tuple(m.shape) != tuple(np.shape(leaf)):
      raise FlatjaxInputError(f"mask {path}: {name} has shape {tuple(m.shape)}, the model's "
                              f"is {tuple(np.shape(leaf))}")
    out.append(None if m is None else jnp.asarray(m, bool))
  if stored:
    raise FlatjaxInputError(f"mask {path} names tensors the model lacks: "
                            f"{', '.join(sorted(stored)[:5])}")
  if all(m is None for m in out):
    raise FlatjaxInputError(f"mask {path} holds no tensor")
  if layers is not None and layers != str(encoder_layers(params)):
    # its tensors fit, but the model's extra layers would stay dense
    raise FlatjaxInputError(f"mask {path} was made for a model with {layers} encoder layers; "
                            f"this one has {encoder_layers(params)}")
  return jax.tree.unflatten(treedef, out)


def encoder_layers(tree: Any) -> int:
  """How many encoder layers (``.../layer/N/...``) a params-shaped tree has."""
  paths = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
  return len({m.group(1) for p, _ in paths
              for m in [re.search(r"layer/(\d+)/", path_str(p))] if m})
