"""Pruning masks as pytrees shaped like the params.

A mask has boolean leaves where a param is pruned-or-kept and ``None`` where a
param is outside the pruning scope; ``mask=None`` means no pruning at all.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def apply_mask(params: Any, mask: Any | None) -> Any:
  """``params * mask`` leaf-wise; leaves whose mask is ``None`` pass through.

  Used inside the loss, so pruned weights receive exactly zero gradient.
  """
  if mask is None:
    return params
  return jax.tree.map(lambda m, p: p if m is None else jnp.where(m, p, jnp.zeros_like(p)),
                      mask, params, is_leaf=lambda x: x is None)
