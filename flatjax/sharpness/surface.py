"""Loss surfaces along filter-normalised random directions (Li et al. 2018).

A random Gaussian direction ``d`` in parameter space is rescaled filter by
filter to the norm of the weights' filter:

    d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||

(filter ``j`` of layer ``i``), which removes the scale invariance that makes
raw random directions incomparable between networks (e.g. SAM- and
Adam-trained BERTs). The surfaces are then

    1-D:  f(theta + a d)              for a in alphas
    2-D:  f(theta + a d1 + b d2)      for a in alphas, b in betas

with two independent directions ``d1, d2`` (nearly orthogonal in high
dimension).

What a filter is, per leaf (:func:`default_filter_axis`): the index along
one axis names the filter, the rest of the leaf is its contents.

* flax ``Dense`` kernels ``[in, out]`` and other >= 2-D leaves: the last axis
  (a filter is one output unit, a column; for a conv kernel ``[..., in,
  out]`` one output channel, as Li et al.'s PyTorch filters ``[out, ...]``);
* embeddings (a leaf named ``embedding``, ``[V, d]``): the first axis (a
  filter is one token's vector, a row);
* 1-D leaves (biases, LayerNorm scales and offsets) and scalars: no filters;
  by default their direction is zero (Li et al.'s ``--xignore biasbn``), or
  with ``one_d="copy"`` a copy of the weights (their code's alternative).

Evaluation jits the shifted params' computation and calls the loss once per
grid point (a :class:`~flatjax.sharpness.hessian.BatchMeanLoss` evaluates
batch by batch, anything else is jitted whole).

References:
  Li, Xu, Taylor, Studer & Goldstein, *Visualizing the Loss Landscape of
  Neural Nets*, NeurIPS 2018, Section 4, and its code
  ``tomgoldstein/loss-landscape`` (``net_plotter.py``:
  ``normalize_directions_for_weights``, ``ignore_biasbn``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flatjax import figures
from flatjax.errors import FlatjaxInputError
from flatjax.errors import whole_number as _whole
from flatjax.sharpness.hessian import LossFn, as_key, canonical, value_fn
from flatjax.sparsity.masks import path_str

ONE_D = ("zero", "copy")
FilterAxis = Callable[[str, Any], "int | None"]


def default_filter_axis(path: str, leaf: Any) -> int | None:
  """The axis indexing filters of the leaf at ``path`` (``/``-joined):
  None for scalars and 1-D leaves, 0 for embeddings (last path name
  ``embedding``, flax ``nn.Embed``'s ``[V, d]``), else the last axis."""
  ndim = np.ndim(leaf)
  if ndim <= 1:
    return None
  if path.rsplit("/", 1)[-1] == "embedding":
    return 0
  return ndim - 1


def _normalize_filters(d: jax.Array, w: jax.Array, axis: int) -> jax.Array:
  """``d`` with every slice along ``axis`` rescaled to the norm of ``w``'s."""
  others = tuple(i for i in range(d.ndim) if i != axis)
  d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=others, keepdims=True))
  w_norm = jnp.sqrt(jnp.sum(jnp.square(w), axis=others, keepdims=True))
  # A Gaussian filter is zero with probability 0; guard anyway (zero, not NaN).
  scale = jnp.where(d_norm > 0, w_norm / jnp.where(d_norm > 0, d_norm, 1.0), 0.0)
  return (d * scale).astype(w.dtype)


def filter_normalized_direction(key: int | jax.Array, params: Any, *, one_d: str = "zero",
                                filter_axis: FilterAxis = default_filter_axis) -> Any:
  """A random direction like ``params``, normalised filter-wise (Li et al. 2018).

  Each leaf draws ``N(0, 1)`` from its own key (``split(key, #leaves)`` in
  tree-leaf order), then each filter is rescaled to the norm of the
  corresponding filter of ``params``; leaves without filters get zeros
  (``one_d="zero"``) or a copy of the weights (``one_d="copy"``).

  Args:
    key: PRNG key or int seed.
    params: the point ``theta``, a pytree of float arrays.
    one_d: "zero" or "copy", for leaves whose ``filter_axis`` is None.
    filter_axis: ``(path, leaf) -> axis or None``; :func:`default_filter_axis`.

  Returns:
    A pytree like ``params`` (same dtypes).
  """
  if one_d not in ONE_D:
    raise FlatjaxInputError(f"one_d must be one of {ONE_D}, got {one_d!r}")
  flat, treedef = jax.tree_util.tree_flatten_with_path(canonical(params))
  keys = jax.random.split(as_key(key), max(len(flat), 1))
  out = []
  for k, (path, w) in zip(keys, flat):
    axis = filter_axis(path_str(path), w)
    if axis is None:
      out.append(jnp.zeros_like(w) if one_d == "zero" else w)
      continue
    if not -w.ndim <= axis < w.ndim:
      raise FlatjaxInputError(f"filter axis {axis} is out of range for {path_str(path)} of "
                              f"shape {w.shape}")
    out.append(_normalize_filters(jax.random.normal(k, w.shape, w.dtype), w, axis % w.ndim))
  return jax.tree.unflatten(treedef, out)


# ---- grids and surfaces -------------------------------------------------------

def grid(low: float, high: float, num: int) -> np.ndarray:
  """``num`` evenly spaced coefficients from ``low`` to ``high`` (float64);
  Li et al. plot [-1, 1] with 51 points."""
  num = _whole("num", num, 2)
  low, high = float(low), float(high)
  if not (math.isfinite(low) and math.isfinite(high) and low < high):
    raise FlatjaxInputError(f"a grid needs finite low < high, got [{low}, {high}]")
  return np.linspace(low, high, num)


def _check_grid(name: str, values: Any) -> np.ndarray:
  try:
    a = np.asarray(values, np.float64)
  except (TypeError, ValueError):
    raise FlatjaxInputError(f"{name} must be a 1-D array of numbers, got {values!r}") from None
  if a.ndim != 1 or a.size < 1:
    raise FlatjaxInputError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
  if not np.all(np.isfinite(a)):
    raise FlatjaxInputError(f"{name} must be finite, got {a}")
  if np.any(np.diff(a) <= 0):
    raise FlatjaxInputError(f"{name} must be strictly increasing, got {a}")
  return a


class Surface1D(NamedTuple):
  """``losses[i] = f(theta + alphas[i] d)`` (float64 arrays)."""
  alphas: np.ndarray
  losses: np.ndarray


class Surface2D(NamedTuple):
  """``losses[i, j] = f(theta + alphas[i] d1 + betas[j] d2)`` (float64 arrays)."""
  alphas: np.ndarray
  betas: np.ndarray
  losses: np.ndarray


@jax.jit
def _shift(params: Any, a: jax.Array, d1: Any, b: jax.Array, d2: Any) -> Any:
  return jax.tree.map(lambda p, u, v: (p + a * u + b * v).astype(p.dtype), params, d1, d2)


def _check_direction(params: Any, d: Any, name: str) -> Any:
  if jax.tree.structure(d) != jax.tree.structure(params):
    raise FlatjaxInputError(f"{name}'s pytree does not match the params'")
  bad = [i for i, (p, u) in enumerate(zip(jax.tree.leaves(params), jax.tree.leaves(d)))
         if np.shape(p) != np.shape(u)]
  if bad:
    raise FlatjaxInputError(f"{name}'s leaves {bad} have other shapes than the params'")
  return d


def loss_surface_1d(loss_fn: LossFn, params: Any, direction: Any, alphas: Sequence[float],
                    *, callback: Callable[[int, float], None] | None = None) -> Surface1D:
  """``f(theta + a d)`` for each ``a`` in ``alphas`` (strictly increasing).

  Args:
    loss_fn: a scalar function of the params pytree.
    params: ``theta``.
    direction: ``d``, a pytree like ``params`` (e.g.
      :func:`filter_normalized_direction`).
    alphas: the grid, e.g. :func:`grid` (-1, 1, 51).
    callback: called as ``callback(i, loss_i)`` after each point.
  """
  alphas = _check_grid("alphas", alphas)
  params = canonical(params)
  direction = canonical(_check_direction(params, direction, "direction"))
  f = value_fn(loss_fn)
  zero = jnp.float32(0)
  losses = np.empty(alphas.size, np.float64)
  for i, a in enumerate(alphas):
    losses[i] = float(f(_shift(params, jnp.float32(a), direction, zero, direction)))
    if callback is not None:
      callback(i, losses[i])
  return Surface1D(alphas, losses)


def loss_surface_2d(loss_fn: LossFn, params: Any, directions: tuple[Any, Any],
                    alphas: Sequence[float], betas: Sequence[float], *,
                    callback: Callable[[int, float], None] | None = None) -> Surface2D:
  """``f(theta + a d1 + b d2)`` on the grid ``alphas x betas`` (each strictly increasing).

  Args:
    loss_fn: a scalar function of the params pytree.
    params: ``theta``.
    directions: ``(d1, d2)``, pytrees like ``params`` (e.g. two
      :func:`filter_normalized_direction` with different keys).
    alphas: coefficients of ``d1`` (rows of ``losses``).
    betas: coefficients of ``d2`` (columns of ``losses``).
    callback: called as ``callback(k, loss_k)`` after each point, ``k``
      counting row-major.
  """
  alphas = _check_grid("alphas", alphas)
  betas = _check_grid("betas", betas)
  if len(directions) != 2:
    raise FlatjaxInputError(f"directions must be a pair (d1, d2), got {len(directions)}")
  params = canonical(params)
  d1 = canonical(_check_direction(params, directions[0], "directions[0]"))
  d2 = canonical(_check_direction(params, directions[1], "directions[1]"))
  f = value_fn(loss_fn)
  losses = np.empty((alphas.size, betas.size), np.float64)
  for i, a in enumerate(alphas):
    for j, b in enumerate(betas):
      losses[i, j] = float(f(_shift(params, jnp.float32(a), d1, jnp.float32(b), d2)))
      if callback is not None:
        callback(i * betas.size + j, losses[i, j])
  return Surface2D(alphas, betas, losses)


# ---- plots --------------------------------------------------------------------

def plot_surface_1d(curves: Surface1D | Mapping[str, Surface1D], out: str | Path, *,
                    title: str = "", ylabel: str = "loss", log: bool = False) -> Path:
  """Loss against the step ``a`` along the direction, one line per curve
  (e.g. ``{"Adam": s1, "SAM": s2}``), the origin (the trained params) marked;
  writes the PNG ``out`` and returns its path."""
  if isinstance(curves, Surface1D):
    curves = {"": curves}
  if not curves:
    raise FlatjaxInputError("plot_surface_1d needs at least one curve")
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for i, (label, s) in enumerate(curves.items()):
    alphas, losses = np.asarray(s.alphas), np.asarray(s.losses)
    ax.plot(alphas, losses, "-", color=f"C{i}", label=label or None)
    if alphas.size and alphas[0] <= 0 <= alphas[-1]:  # the loss at theta itself
      ax.plot([0.0], [np.interp(0.0, alphas, losses)], "o", color=f"C{i}")
  ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
  if log:
    ax.set_yscale("log")
  ax.set(xlabel="step along the filter-normalised direction", ylabel=ylabel, title=title)
  ax.grid(alpha=0.3)
  if any(curves):
    ax.legend(fontsize=8)
  return figures.save(fig, out)


def plot_surface_2d(surface: Surface2D, out: str | Path, *, title: str = "",
                    levels: int | Sequence[float] = 20, label: str = "loss") -> Path:
  """A filled contour of the 2-D surface with labelled contour lines, the
  origin (the trained params) marked; writes the PNG ``out`` and returns its
  path. Needs at least 2 points along each axis."""
  alphas, betas = np.asarray(surface.alphas), np.asarray(surface.betas)
  losses = np.asarray(surface.losses)
  if alphas.size < 2 or betas.size < 2 or losses.shape != (alphas.size, betas.size):
    raise FlatjaxInputError(f"a contour needs a grid of at least 2 x 2 points with losses "
                            f"[len(alphas), len(betas)], got {alphas.size} x {betas.size} and "
                            f"{losses.shape}")
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(5.6, 4.8))
  # losses[i, j] is at (alphas[i], betas[j]): contour wants Z[y, x].
  filled = ax.contourf(alphas, betas, losses.T, levels=levels, cmap="viridis")
  lines = ax.contour(alphas, betas, losses.T, levels=filled.levels, colors="k",
                     linewidths=0.5)
  ax.clabel(lines, lines.levels[::2], inline=True, fontsize=7, fmt="%.3g")
  fig.colorbar(filled, ax=ax, label=label)
  ax.plot([0.0], [0.0], "r*", ms=10, label="trained params")
  ax.set(xlabel="direction 1", ylabel="direction 2", title=title)
  ax.legend(fontsize=8, loc="upper right")
  return figures.save(fig, out)
